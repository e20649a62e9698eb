"""Teacher videos vs ground truth on held-out identities, driven by ground-truth keypoints.

For each evaluated clip the teacher renders the clip's first ``frames`` frames from the
clip's own keypoints and its identity's reference photo (the same windowed sampler as
``cospeech generate``), and the result is compared with the real frames: PSNR, SSIM and
the lip-sync correlation of mouth openness (:mod:`cospeech.eval.lipsync`). The VAE's own
reconstruction of the same frames is scored too: no teacher can beat that bound.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cospeech.data.clip_reader import read_frames
from cospeech.data.dataset import ClipInfo, read_clips
from cospeech.data.manifest import POSE_NAME, VIDEO_NAME
from cospeech.errors import InputError
from cospeech.eval.lipsync import correlation, mouth_openness
from cospeech.eval.video_metrics import psnr_per_frame, ssim_per_frame
from cospeech.models.vae import TinyVideoVAE
from cospeech.pipeline.bundle import ModelBundle
from cospeech.pipeline.generate import decode_frames, sample_latents
from cospeech.pipeline.reference import Reference
from cospeech.pose.extract import read_image
from cospeech.pose.sequence import PoseSequence
from cospeech.train.stages.teacher import spread_over_identities


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
    """Which clips (``clips`` of ``split``, one per identity first) and how to sample."""

    split: str = "test"
    clips: int = 24
    frames: int = 49
    steps: int = 20
    guidance: float = 1.0
    shift: float = 3.0
    overlap: int = 2
    seed: int = 0


def pick_clips(root: Path, split: str, count: int, frames: int) -> list[ClipInfo]:
    """Up to ``count`` clips (0 = all) of ``split`` with ``frames`` frames, spread over
    identities."""
    if count < 0:
        raise InputError(f"clips must be >= 0 (0 = all), got {count}")
    clips = [c for c in read_clips(root, split) if c.frames >= frames]
    if not clips:
        raise InputError(f"{root}: no {split} clip has {frames} frames")
    return spread_over_identities(clips, count)


def evaluate_clip(bundle: ModelBundle, clip: ClipInfo, options: TeacherEvalOptions) -> ClipScore:
    """Render one clip's window from its keypoints and score it."""
    if clip.reference_image is None or clip.reference_pose is None:
        raise InputError(f"clip {clip.clip_id}: needs an identity reference photo and pose")
    count = options.frames
    truth = read_frames(clip.folder / VIDEO_NAME, 0, count)
    keypoints = PoseSequence.load(clip.folder / POSE_NAME).keypoints[:count]
    size = truth.shape[1]
    if truth.shape[1:3] != (size, size) or size != bundle.settings.size:
        raise InputError(f"clip {clip.clip_id}: frames must be {bundle.settings.size} square")
    image = read_image(clip.reference_image)
    reference_pose = PoseSequence.load(clip.reference_pose)
    reference = Reference(image, reference_pose.keypoints[0])
    latents = sample_latents(
        bundle, reference, keypoints, steps=options.steps, guidance=options.guidance,
        shift=options.shift, overlap=options.overlap, seed=options.seed,
    )  # fmt: skip
    fake = np.stack(list(decode_frames(bundle.vae, latents, count)))
    recon = vae_reconstruction(bundle.vae, truth)
    truth_mouth = mouth_openness(truth, keypoints)
    psnr, ssim, lipsync = video_scores(fake, truth, keypoints, truth_mouth)
    vae_psnr, vae_ssim, vae_lipsync = video_scores(recon, truth, keypoints, truth_mouth)
    return ClipScore(
        clip=clip.clip_id, identity=clip.reference_image.parent.name, frames=count,
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
    if (len(truth) - 1) % 4:
        raise InputError(f"the VAE reconstructs 1 + 4k frames, got {len(truth)}")
    pixels = torch.from_numpy(truth).float().div(127.5).sub(1).permute(3, 0, 1, 2)
    latents = vae.encode(pixels[None])
    return np.stack(list(decode_frames(vae, latents, len(truth))))


def evaluate_teacher(
    bundle: ModelBundle, root: str | Path, options: TeacherEvalOptions, progress: bool = True
) -> dict:
    """Scores of every picked clip and their means, as a JSON-ready dict."""
    clips = pick_clips(Path(root), options.split, options.clips, options.frames)
    scores = [
        evaluate_clip(bundle, clip, options)
        for clip in tqdm(clips, desc="eval teacher", unit="clip", disable=not progress)
    ]
    fields = ("psnr", "ssim", "lipsync", "vae_psnr", "vae_ssim", "vae_lipsync")
    mean = mean_scores(scores, fields)
    return {"options": asdict(options), "mean": mean, "clips": [asdict(s) for s in scores]}


def write_report(report: dict, path: str | Path) -> None:
    from cospeech.jsonfile import write_json

    write_json(path, report)
