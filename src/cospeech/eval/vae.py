"""Video VAE reconstruction quality on held-out clips: PSNR, SSIM and lip sync of encode +
decode. The lip-sync score (:mod:`cospeech.eval.lipsync`) correlates the reconstruction's
mouth openness with the ground truth's: the most any teacher decoding through this VAE can
reach."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cospeech.data.clip_reader import read_frames
from cospeech.data.manifest import POSE_NAME, VIDEO_NAME
from cospeech.eval.lipsync import correlation, mouth_openness
from cospeech.eval.teacher import pick_clips, vae_reconstruction
from cospeech.eval.video_metrics import psnr_per_frame, ssim_per_frame
from cospeech.models.vae import TinyVideoVAE
from cospeech.pose.sequence import PoseSequence


@dataclass(frozen=True)
class ReconstructionScore:
    """Mean PSNR (dB) and SSIM over the first ``frames`` frames of one clip, and the
    correlation of mouth openness with the ground truth's (nan: no open mouth shown)."""

    clip: str
    frames: int
    psnr: float
    ssim: float
    lipsync: float


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
        keypoints = PoseSequence.load(clip.folder / POSE_NAME).keypoints[:frames]
        lipsync = correlation(mouth_openness(recon, keypoints), mouth_openness(truth, keypoints))
        scores.append(
            ReconstructionScore(
                clip.clip_id,
                frames,
                float(psnr_per_frame(recon, truth).mean()),
                float(ssim_per_frame(recon, truth).mean()),
                lipsync,
            )
        )
    # A reconstruction that never shows mouth colours has no correlation (nan): it counts 0.
    mean = {
        name: float(np.mean(np.nan_to_num([getattr(s, name) for s in scores], nan=0.0)))
        for name in ("psnr", "ssim", "lipsync")
    }
    return {"split": split, "mean": mean, "clips": [asdict(s) for s in scores]}
