"""Video VAE reconstruction quality on held-out clips: PSNR, SSIM and lip sync of encode +
decode. The lip-sync score (:mod:`cospeech.eval.lipsync`) correlates the reconstruction's
mouth openness with the ground truth's: the most any teacher decoding through this VAE can
reach."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from cospeech.data.clip_reader import read_frames
from cospeech.data.manifest import POSE_NAME, VIDEO_NAME
from cospeech.eval.teacher import mean_scores, pick_clips, vae_reconstruction, video_scores
from cospeech.models.vae import TinyVideoVAE
from cospeech.pose.sequence import PoseSequence
from cospeech.progress import track


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
    clips: int = 24,
    frames: int = 49,
    progress: bool = True,
) -> dict:
    """Scores of up to ``clips`` clips of ``split`` (spread over identities) and the means."""
    scores = []
    picked = pick_clips(Path(root), split, clips, frames)
    for clip in track(picked, "eval vae", unit="clip", enabled=progress):
        truth = read_frames(clip.folder / VIDEO_NAME, 0, frames)
        keypoints = PoseSequence.load(clip.folder / POSE_NAME).keypoints[:frames]
        recon = vae_reconstruction(vae, truth)
        psnr, ssim, lipsync = video_scores(recon, truth, keypoints)
        scores.append(ReconstructionScore(clip.clip_id, frames, psnr, ssim, lipsync))
    mean = mean_scores(scores, ("psnr", "ssim", "lipsync"))
    return {"split": split, "mean": mean, "clips": [asdict(s) for s in scores]}
