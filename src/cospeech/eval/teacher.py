"""Teacher videos vs ground truth on held-out identities, driven by ground-truth keypoints.

For each evaluated clip the teacher renders the clip's first ``frames`` frames from the
clip's own keypoints and its identity's reference photo (the same windowed sampler as
``cospeech generate``), and the result is compared with the real frames: PSNR, SSIM and
the lip-sync correlation of mouth openness (:mod:`cospeech.eval.lipsync`). The VAE's own
reconstruction of the same frames is scored too: no teacher can beat that bound.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from cospeech.data.clip_reader import read_frames
from cospeech.data.dataset import ClipInfo, read_clips, spread_over_identities
from cospeech.data.manifest import POSE_NAME, VIDEO_NAME
from cospeech.diffusion.schedule import NUM_TRAIN_TIMESTEPS
from cospeech.errors import InputError, check_range, count
from cospeech.eval.lipsync import mouth_openness
from cospeech.eval.video_metrics import psnr_per_frame, ssim_per_frame
from cospeech.latent_geometry import TIME_STRIDE, latent_frames
from cospeech.media.pixels import pixels_to_tensor
from cospeech.models.vae import TinyVideoVAE
from cospeech.models.warp_condition import warp_condition, warp_video
from cospeech.motion.generate import MAX_SEED
from cospeech.motion.metrics import correlation
from cospeech.pipeline.bundle import ModelBundle
from cospeech.pipeline.generate import decode_frames, sample_latents
from cospeech.pipeline.reference import Reference
from cospeech.pose.extract import read_image
from cospeech.pose.sequence import PoseSequence
from cospeech.progress import track


@dataclass(frozen=True)
class ClipScore:
    """Scores of one clip; ``vae_*`` for the VAE reconstruction of the ground truth."""

    clip: str
    identity: str
    frames: int
    psnr: float
    ssim: float
    lipsync: float
    vae_psnr: float
    vae_ssim: float
    vae_lipsync: float


@dataclass(frozen=True)
class TeacherEvalOptions:
    """Which clips (``clips`` of ``split``, one per identity first; 0 = all) and how to
    sample. Range errors name the command's flags (``--steps``)."""

    split: str = "test"
    clips: int = 24
    frames: int = 49
    steps: int = 20
    guidance: float = 1.0
    shift: float = 3.0
    overlap: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        check_clip_options(self.clips, self.frames)
        check_range("--steps", self.steps, 1, NUM_TRAIN_TIMESTEPS)
        check_range("--guidance", self.guidance, 1.0)
        check_range("--seed", self.seed, 0, MAX_SEED)


def check_clip_options(clips: int, frames: int) -> None:
    """``InputError`` naming the flag unless ``clips >= 0`` (0 = all) and ``frames`` is a
    length the VAE encodes (``1 + 4k``)."""
    check_range("--clips", clips, 0)
    check_range("--frames", frames, 1)
    if (frames - 1) % TIME_STRIDE:
        nearest = frames - (frames - 1) % TIME_STRIDE
        raise InputError(
            f"--frames must be 1 + {TIME_STRIDE}k (1, 5, 9, ...), got {frames} "
            f"(nearest valid: {nearest})"
        )


def pick_clips(
    root: Path, split: str, clips: int, frames: int, size: int | None = None
) -> list[ClipInfo]:
    """Up to ``clips`` clips (0 = all) of ``split`` with at least ``frames`` frames, spread
    over identities; with ``size``, checked to be ``size`` x ``size`` (the size a model
    renders: :func:`check_frame_size`, before any long work)."""
    check_clip_options(clips, frames)
    found = read_clips(root, split)
    if not found:
        raise InputError(f"dataset {root}: no clips in split {split!r}")
    long_enough = [c for c in found if c.frames >= frames]
    if not long_enough:
        longest = max(c.frames for c in found)
        raise InputError(
            f"dataset {root}: no {split} clip has {count(frames, 'frame')} (the longest has "
            f"{longest}); use a smaller --frames"
        )
    picked = spread_over_identities(long_enough, clips)
    if size is not None:
        check_frame_size(picked, size)
    return picked


def check_frame_size(clips: list[ClipInfo], size: int) -> None:
    """``InputError`` (with the command that makes a fitting corpus) unless every clip's
    frames are ``size`` x ``size``, the size the teacher renders."""
    for clip in clips:
        if (clip.width, clip.height) != (size, size):
            raise InputError(
                f"clip {clip.clip_id}: frames are {clip.width}x{clip.height}, this model "
                f"renders {size}x{size}; make a dataset of that size (cospeech data synth "
                f"--size {size}, or data prepare --size {size})"
            )


@dataclass(frozen=True)
class ClipWindow:
    """The first frames of a clip, ready to render and score: ``truth`` uint8
    ``[F, H, W, 3]``, its ground-truth ``keypoints`` ``[F, 133, 3]``, the ``identity``
    (the folder of its reference photo) and its ``reference`` photo and pose, and the
    truth's mouth openness ``truth_mouth`` ``[F]``."""

    clip: ClipInfo
    identity: str
    truth: np.ndarray
    keypoints: np.ndarray
    reference: Reference
    truth_mouth: np.ndarray


def load_clip_window(clip: ClipInfo, frames: int, size: int) -> ClipWindow:
    """The first ``frames`` frames of ``clip`` with its keypoints and identity reference
    (``InputError`` without a reference, or unless the frames are ``size`` x ``size``)."""
    if clip.reference_image is None or clip.reference_pose is None:
        raise InputError(f"clip {clip.clip_id}: needs an identity reference photo and pose")
    truth = read_frames(clip.folder / VIDEO_NAME, 0, frames)
    keypoints = PoseSequence.load(clip.folder / POSE_NAME).keypoints[:frames]
    height, width = truth.shape[1:3]
    check_frame_size([replace(clip, width=width, height=height)], size)
    image = read_image(clip.reference_image)
    reference = Reference(image, PoseSequence.load(clip.reference_pose).keypoints[0])
    identity = clip.reference_image.parent.name
    return ClipWindow(clip, identity, truth, keypoints, reference, mouth_openness(truth, keypoints))


def evaluate_clip(bundle: ModelBundle, clip: ClipInfo, options: TeacherEvalOptions) -> ClipScore:
    """Render one clip's window from its keypoints and score it."""
    window = load_clip_window(clip, options.frames, bundle.settings.size)
    warped = None
    if bundle.model.config.warp_dim:  # a warp-conditioned teacher: the reference, warped
        reference = window.reference
        warped = warp_condition(bundle.vae, *warp_video(reference.image, reference.keypoints,
                                                        window.keypoints))  # fmt: skip
    latents = sample_latents(
        bundle, window.reference, window.keypoints, steps=options.steps,
        guidance=options.guidance, shift=options.shift, overlap=options.overlap,
        seed=options.seed, warped=warped,
    )  # fmt: skip
    fake = np.stack(list(decode_frames(bundle.vae, latents, options.frames)))
    recon = vae_reconstruction(bundle.vae, window.truth)
    truth, keypoints, truth_mouth = window.truth, window.keypoints, window.truth_mouth
    psnr, ssim, lipsync = video_scores(fake, truth, keypoints, truth_mouth)
    vae_psnr, vae_ssim, vae_lipsync = video_scores(recon, truth, keypoints, truth_mouth)
    return ClipScore(
        clip=clip.clip_id, identity=window.identity, frames=options.frames,
        psnr=psnr, ssim=ssim, lipsync=lipsync,
        vae_psnr=vae_psnr, vae_ssim=vae_ssim, vae_lipsync=vae_lipsync,
    )  # fmt: skip


def video_scores(
    frames: np.ndarray,
    truth: np.ndarray,
    keypoints: np.ndarray,
    truth_mouth: np.ndarray | None = None,
) -> tuple[float, float, float]:
    """Mean PSNR (dB), mean SSIM and lip-sync r of uint8 ``frames`` ``[F, H, W, 3]`` against
    ``truth``; lip sync correlates the mouth openness in the lip boxes of ``keypoints``
    ``[F, 133, 3]`` (``truth_mouth``: the truth's openness, when already measured; nan when
    either never shows an open mouth)."""
    if truth_mouth is None:
        truth_mouth = mouth_openness(truth, keypoints)
    return (
        float(psnr_per_frame(frames, truth).mean()),
        float(ssim_per_frame(frames, truth).mean()),
        correlation(mouth_openness(frames, keypoints), truth_mouth),
    )


def mean_scores(scores: list, fields: tuple[str, ...]) -> dict[str, float]:
    """Means of the score dataclasses' ``fields``; a nan lip-sync score (a video that never
    shows mouth colours has no correlation) counts 0."""
    return {
        name: float(np.mean(np.nan_to_num([getattr(s, name) for s in scores], nan=0.0)))
        for name in fields
    }


@torch.no_grad()
def vae_reconstruction(vae: TinyVideoVAE, truth: np.ndarray) -> np.ndarray:
    """The VAE's reconstruction ``[F, H, W, 3]`` uint8 of frames ``truth`` (F = 1 + 4k)."""
    latent_frames(len(truth))  # InputError unless F = 1 + 4k
    latents = vae.encode(pixels_to_tensor(truth)[None])
    return np.stack(list(decode_frames(vae, latents, len(truth))))


def evaluate_teacher(
    bundle: ModelBundle, root: str | Path, options: TeacherEvalOptions, progress: bool = True
) -> dict:
    """Scores of every picked clip and their means, as a JSON-ready dict."""
    clips = pick_clips(Path(root), options.split, options.clips, options.frames,
                       bundle.settings.size)  # fmt: skip
    scores = [
        evaluate_clip(bundle, clip, options)
        for clip in track(clips, "eval teacher", unit="clip", enabled=progress)
    ]
    fields = ("psnr", "ssim", "lipsync", "vae_psnr", "vae_ssim", "vae_lipsync")
    mean = mean_scores(scores, fields)
    return {"options": asdict(options), "mean": mean, "clips": [asdict(s) for s in scores]}


def write_report(report: dict, path: str | Path) -> None:
    from cospeech.jsonfile import write_json

    write_json(path, report)
