"""FVD (Unterthiner et al. 2018) between two sets of videos, as the reference code.

Each set is a folder of videos or one video file. Every video gives up to
``clips_per_video`` clips of 16 consecutive frames: frames ``0-15``, ``16-31``, ... (no
overlap; a video needs at least 16 frames). Each clip goes through I3D
(:mod:`cospeech.eval.networks.i3d`: TF1 bilinear resize to 224 x 224, [-1, 1], the 400
Kinetics logits averaged over time, the reference's embedding) and the score is the
squared Frechet distance of the Gaussians fitted to the two sets' logits
(:mod:`cospeech.eval.frechet`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cospeech.data.prepare import VIDEO_SUFFIXES
from cospeech.device import resolve_device
from cospeech.errors import InputError, check_range, count
from cospeech.eval.fid import check_sample_count, media_files, network_features
from cospeech.eval.frechet import frechet_distance_of_features
from cospeech.eval.networks.i3d import CLIP_FRAMES, InceptionI3d, prepare_clips
from cospeech.eval.networks.weights import load_state_dict_file
from cospeech.media.video import iter_frames, probe


@dataclass(frozen=True)
class FvdConfig:
    """``clips_per_video``: 16-frame clips taken from the start of each video (1-10000);
    ``batch``: clips per network call; ``device``: torch device name (None: CUDA if any)."""

    clips_per_video: int = 1
    batch: int = 4
    device: str | None = None

    def check(self) -> None:
        check_range("--clips-per-video", self.clips_per_video, 1, 10000)
        check_range("--batch", self.batch, 1, 4096)


def clip_counts(files: list[Path], clips_per_video: int) -> list[int]:
    """Clips each video gives: ``min(clips_per_video, frames // 16)``; an
    :class:`InputError` for a video shorter than 16 frames."""
    counts = []
    for path in files:
        frames = probe(path).frames
        if frames < CLIP_FRAMES:
            raise InputError(
                f"video {path}: {count(frames, 'frame')}; FVD needs clips of {CLIP_FRAMES}"
            )
        counts.append(min(clips_per_video, frames // CLIP_FRAMES))
    return counts


def video_clips(path: Path, clips: int) -> Iterator[np.ndarray]:
    """The first ``clips`` non-overlapping 16-frame clips ``[16, H, W, 3]`` of video ``path``."""
    frames: list[np.ndarray] = []
    given = 0
    for frame in iter_frames(path):
        frames.append(frame)
        if len(frames) == CLIP_FRAMES:
            yield np.stack(frames)
            frames.clear()
            given += 1
            if given == clips:
                return
    raise InputError(f"video {path}: fewer frames decode than its container announces")


def load_i3d(weights: str | Path, device: torch.device) -> InceptionI3d:
    """I3D with the weights of ``weights``, in eval mode on ``device``."""
    return load_state_dict_file(weights, InceptionI3d(), "FVD I3D").eval().to(device)


def i3d_logits(
    model: InceptionI3d,
    files: list[Path],
    counts: list[int],
    config: FvdConfig,
    desc: str,
    progress: bool,
) -> np.ndarray:
    """I3D logits ``[N, 400]`` of the first ``counts[i]`` clips of each of ``files`` (see
    :func:`video_clips`)."""
    device = next(model.parameters()).device
    inputs = (
        prepare_clips(clip[None])[0]
        for path, clips in zip(files, counts, strict=True)
        for clip in video_clips(path, clips)
    )
    total = sum(counts)
    return network_features(model, inputs, total, config.batch, device, desc, progress, "clip")


def compute_fvd(
    real: str | Path,
    generated: str | Path,
    weights: str | Path,
    config: FvdConfig = FvdConfig(),
    progress: bool = False,
) -> dict[str, Any]:
    """FVD between video sets ``real`` and ``generated`` (folders or video files): ``{"fvd",
    "real", "generated", "real_clips", "generated_clips", "clips_per_video"}``."""
    config.check()
    files = {
        "REAL": media_files(real, VIDEO_SUFFIXES, "REAL"),
        "GEN": media_files(generated, VIDEO_SUFFIXES, "GEN"),
    }
    counts = {name: clip_counts(listed, config.clips_per_video) for name, listed in files.items()}
    for name, clips in counts.items():
        check_sample_count(sum(clips), name, "FVD")
    model = load_i3d(weights, resolve_device(config.device))
    logits = {
        name: i3d_logits(model, listed, counts[name], config, f"FVD {name}", progress)
        for name, listed in files.items()
    }
    return {
        "fvd": frechet_distance_of_features(logits["REAL"], logits["GEN"]),
        "real": str(real),
        "generated": str(generated),
        "real_clips": len(logits["REAL"]),
        "generated_clips": len(logits["GEN"]),
        "clips_per_video": config.clips_per_video,
    }
