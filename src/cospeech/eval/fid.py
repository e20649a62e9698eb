"""FID (Heusel et al. 2017) between two sets of images or video frames, as pytorch-fid.

Each set is a folder of images and / or videos, or one video file. Every image is one
sample; every video gives ``frames_per_video`` frames spread evenly over it (first and
last included). Samples go through FID's Inception-v3
(:mod:`cospeech.eval.networks.inception`: bilinear resize to 299 x 299, [-1, 1], pool3
features ``[N, 2048]``) and the score is the squared Frechet distance of the two Gaussians
fitted to those features (:mod:`cospeech.eval.frechet`).

The helpers that list a set's files and run a network over its samples in batches are
shared with :mod:`cospeech.eval.fvd`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cospeech.data.prepare import VIDEO_SUFFIXES
from cospeech.device import resolve_device
from cospeech.errors import InputError, check_range, count
from cospeech.eval.frechet import frechet_distance_of_features
from cospeech.eval.networks.inception import FIDInceptionV3, prepare_images
from cospeech.eval.networks.weights import load_state_dict_file
from cospeech.media.image import evenly_spaced
from cospeech.media.video import iter_frames, probe
from cospeech.pose.extract import IMAGE_SUFFIXES, read_image
from cospeech.progress import Progress


@dataclass(frozen=True)
class FidConfig:
    """``frames_per_video``: evenly spaced frames taken from each video (1-10000);
    ``batch``: images per network call; ``device``: torch device name (None: CUDA if any)."""

    frames_per_video: int = 16
    batch: int = 16
    device: str | None = None

    def check(self) -> None:
        check_range("--frames-per-video", self.frames_per_video, 1, 10000)
        check_range("--batch", self.batch, 1, 4096)


def media_files(path: str | Path, suffixes: Iterable[str], what: str) -> list[Path]:
    """The files of a set: ``path`` itself if it is a file with one of ``suffixes``, else the
    folder's files with those suffixes (not recursive, sorted by name). An
    :class:`InputError` naming ``what`` (``REAL``) when there are none."""
    path, suffixes = Path(path), frozenset(s.lower() for s in suffixes)
    if path.is_file():
        if path.suffix.lower() not in suffixes:
            raise InputError(f"{what} {path}: not one of {', '.join(sorted(suffixes))}")
        return [path]
    if not path.is_dir():
        raise InputError(f"{what} {path}: no such file or folder")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise InputError(f"{what} {path}: holds no {', '.join(sorted(suffixes))} file")
    return files


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def picked_frames(path: Path, indices: np.ndarray) -> Iterator[np.ndarray]:
    """The frames of video ``path`` at ``indices`` (sorted, may repeat), decoding once."""
    wanted = np.bincount(indices)
    for index, frame in enumerate(iter_frames(path)):
        if index >= len(wanted):
            return
        for _ in range(wanted[index]):
            yield frame


def fid_sample_count(files: list[Path], frames_per_video: int) -> int:
    """Samples a set gives: 1 per image, ``frames_per_video`` per video."""
    return sum(frames_per_video if is_video(p) else 1 for p in files)


def fid_samples(files: list[Path], frames_per_video: int) -> Iterator[np.ndarray]:
    """``[H, W, 3]`` uint8 RGB samples: each image, and evenly spaced frames of each video
    (spread over the frame count that :func:`probe` reads from the container)."""
    for path in files:
        if not is_video(path):
            yield read_image(path)
            continue
        frames = probe(path).frames
        if frames == 0:
            raise InputError(f"video {path}: no frames")
        taken = 0
        for frame in picked_frames(path, evenly_spaced(frames, frames_per_video)):
            taken += 1
            yield frame
        if taken < frames_per_video:
            raise InputError(
                f"video {path}: only {count(taken, 'frame')} of the {frames} it announces decode"
            )


def network_features(
    network: Callable[[torch.Tensor], torch.Tensor],
    inputs: Iterable[torch.Tensor],
    total: int,
    batch: int,
    device: torch.device,
    desc: str,
    progress: bool = False,
    unit: str = "sample",
) -> np.ndarray:
    """Run ``network`` on the prepared ``inputs`` (one sample each, without batch axis) in
    batches of ``batch``; its outputs ``[B, D]`` stacked to float64 ``[N, D]``. Progress
    (``desc``, ``total`` units) on stderr when ``progress``."""
    outputs: list[np.ndarray] = []
    pending: list[torch.Tensor] = []

    def flush() -> None:
        with torch.inference_mode():
            out = network(torch.stack(pending).to(device))
        outputs.append(out.double().cpu().numpy())
        bar.update(len(pending))
        pending.clear()

    with Progress(desc, total, unit, enabled=progress, leave=False) as bar:
        for sample in inputs:
            pending.append(sample)
            if len(pending) == batch:
                flush()
        if pending:
            flush()
    return np.concatenate(outputs)


def check_sample_count(samples: int, what: str, metric: str) -> None:
    """An :class:`InputError` unless a set gives at least 2 samples (a covariance needs 2)."""
    if samples < 2:
        raise InputError(f"{what} gives {count(samples, 'sample')}; {metric} needs at least 2")


def load_inception(weights: str | Path, device: torch.device) -> FIDInceptionV3:
    """FID's Inception-v3 with the weights of ``weights``, in eval mode on ``device``."""
    model = load_state_dict_file(weights, FIDInceptionV3(), "FID Inception")
    return model.eval().to(device)


def inception_features(
    model: FIDInceptionV3, files: list[Path], config: FidConfig, desc: str, progress: bool
) -> np.ndarray:
    """Pool3 features ``[N, 2048]`` of the samples of ``files`` (see :func:`fid_samples`)."""
    device = next(model.parameters()).device
    inputs = (prepare_images(x[None])[0] for x in fid_samples(files, config.frames_per_video))
    total = fid_sample_count(files, config.frames_per_video)
    return network_features(model, inputs, total, config.batch, device, desc, progress, "image")


def compute_fid(
    real: str | Path,
    generated: str | Path,
    weights: str | Path,
    config: FidConfig = FidConfig(),
    progress: bool = False,
) -> dict[str, Any]:
    """FID between sets ``real`` and ``generated`` (folders or video files): ``{"fid",
    "real", "generated", "real_samples", "generated_samples", "frames_per_video"}``."""
    config.check()
    sets = {"REAL": real, "GEN": generated}
    files = {
        name: media_files(p, (*IMAGE_SUFFIXES, *VIDEO_SUFFIXES), name) for name, p in sets.items()
    }
    for name, listed in files.items():
        check_sample_count(fid_sample_count(listed, config.frames_per_video), name, "FID")
    model = load_inception(weights, resolve_device(config.device))
    features = {
        name: inception_features(model, listed, config, f"FID {name}", progress)
        for name, listed in files.items()
    }
    return {
        "fid": frechet_distance_of_features(features["REAL"], features["GEN"]),
        "real": str(real),
        "generated": str(generated),
        "real_samples": len(features["REAL"]),
        "generated_samples": len(features["GEN"]),
        "frames_per_video": config.frames_per_video,
    }
