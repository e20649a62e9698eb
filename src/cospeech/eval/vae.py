"""Video VAE reconstruction quality on held-out clips: PSNR and SSIM of encode + decode."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cospeech.data.clip_reader import read_frames
from cospeech.data.manifest import VIDEO_NAME
from cospeech.eval.teacher import pick_clips, vae_reconstruction
from cospeech.eval.video_metrics import psnr_per_frame, ssim_per_frame
from cospeech.models.vae import TinyVideoVAE


@dataclass(frozen=True)
class ReconstructionScore:
    """Mean PSNR (dB) and SSIM over the first ``frames`` frames of one clip."""

    clip: str
    frames: int
    psnr: float
    ssim: float


def evaluate_vae(
    vae: TinyVideoVAE,
    root: str | Path,
    split: str = "test",
    clips: int = 8,
    frames: int = 49,
    progress: bool = True,
) -> dict:
    """Scores of up to ``clips`` clips of ``split`` (spread over identities) and the means."""
    scores = []
    for clip in tqdm(pick_clips(Path(root), split, clips, frames), desc="eval vae",
                     unit="clip", disable=not progress):  # fmt: skip
        truth = read_frames(clip.folder / VIDEO_NAME, 0, frames)
        recon = vae_reconstruction(vae, truth)
        scores.append(
            ReconstructionScore(
                clip.clip_id,
                frames,
                float(psnr_per_frame(recon, truth).mean()),
                float(ssim_per_frame(recon, truth).mean()),
            )
        )
    mean = {name: float(np.mean([getattr(s, name) for s in scores])) for name in ("psnr", "ssim")}
    return {"split": split, "mean": mean, "clips": [asdict(s) for s in scores]}
