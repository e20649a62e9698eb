"""Teacher videos vs ground truth on held-out identities, driven by ground-truth keypoints.

For each evaluated clip the teacher renders the clip's first ``frames`` frames from the
clip's own keypoints and its identity's reference photo (the same windowed sampler as
``cospeech generate``), and the result is compared with the real frames: PSNR, SSIM and
the lip-sync correlation of mouth openness (:mod:`cospeech.eval.lipsync`). The VAE's own
reconstruction of the same frames is scored too: no teacher can beat that bound.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cospeech.data.clip_reader import read_frames
from cospeech.data.dataset import read_clips
from cospeech.data.manifest import POSE_NAME, VIDEO_NAME
from cospeech.errors import InputError
from cospeech.eval.lipsync import correlation, mouth_openness
from cospeech.eval.video_metrics import psnr_per_frame, ssim_per_frame
from cospeech.pipeline.bundle import ModelBundle
from cospeech.pipeline.generate import decode_frames, latent_frames_for, sample_latents
from cospeech.pipeline.reference import Reference
from cospeech.pose.extract import read_image
from cospeech.pose.sequence import PoseSequence


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


@dataclass(frozen=True)
class TeacherEvalOptions:
    """Which clips (``clips`` of ``split``, one per identity first) and how to sample."""

    split: str = "test"
    clips: int = 8
    frames: int = 49
    steps: int = 20
    guidance: float = 1.0
    shift: float = 3.0
    overlap: int = 2
    seed: int = 0


def pick_clips(root: Path, options: TeacherEvalOptions) -> list:
    """Up to ``options.clips`` clips of the split, spreading over identities first."""
    clips = [c for c in read_clips(root, options.split) if c.frames >= options.frames]
    if not clips:
        raise InputError(f"{root}: no {options.split} clip has {options.frames} frames")
    by_identity: dict[str, list] = {}
    for clip in clips:
        identity = clip.reference_image.parent.name if clip.reference_image else clip.clip_id
        by_identity.setdefault(identity, []).append(clip)
    ordered = []
    for rank in range(max(len(v) for v in by_identity.values())):
        ordered += [v[rank] for v in by_identity.values() if rank < len(v)]
    return ordered[: options.clips]


def evaluate_clip(bundle: ModelBundle, clip, options: TeacherEvalOptions) -> ClipScore:
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
    fake = np.stack(list(decode_frames(bundle, latents, count)))
    recon = _vae_reconstruction(bundle, truth)
    return ClipScore(
        clip=clip.clip_id,
        identity=clip.reference_image.parent.name,
        frames=count,
        psnr=float(psnr_per_frame(fake, truth).mean()),
        ssim=float(ssim_per_frame(fake, truth).mean()),
        lipsync=correlation(mouth_openness(fake, keypoints), mouth_openness(truth, keypoints)),
        vae_psnr=float(psnr_per_frame(recon, truth).mean()),
        vae_ssim=float(ssim_per_frame(recon, truth).mean()),
    )


@torch.no_grad()
def _vae_reconstruction(bundle: ModelBundle, truth: np.ndarray) -> np.ndarray:
    """The VAE's reconstruction ``[F, H, W, 3]`` uint8 of frames ``truth`` (F = 1 + 4k)."""
    usable = 1 + 4 * (latent_frames_for(len(truth)) - 1)
    pixels = torch.from_numpy(truth[:usable]).float().div(127.5).sub(1).permute(3, 0, 1, 2)
    latents = bundle.vae.encode(pixels[None])
    return np.stack(list(decode_frames(bundle, latents, len(truth))))


def evaluate_teacher(
    bundle: ModelBundle, root: str | Path, options: TeacherEvalOptions, progress: bool = True
) -> dict:
    """Scores of every picked clip and their means, as a JSON-ready dict."""
    clips = pick_clips(Path(root), options)
    scores = [
        evaluate_clip(bundle, clip, options)
        for clip in tqdm(clips, desc="eval teacher", unit="clip", disable=not progress)
    ]
    fields = ("psnr", "ssim", "lipsync", "vae_psnr", "vae_ssim")
    mean = {name: float(np.nanmean([getattr(s, name) for s in scores])) for name in fields}
    return {"options": asdict(options), "mean": mean, "clips": [asdict(s) for s in scores]}


def write_report(report: dict, path: str | Path) -> None:
    from cospeech.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
