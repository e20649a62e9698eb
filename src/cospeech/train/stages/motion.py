"""Training stage ``motion``: the audio -> whole-body keypoint model (``cospeech.motion``).

``cospeech train motion --out RUN --set stage.data=CORPUS [--config cfg.yaml]``.

Each update draws, from torch's RNG: the encoder mode (offline or streaming mask), a gain
jitter of the log-mel, which samples keep their style vector, and for the flow head a
window layout (whole window, or a short chunk after ``context_frames`` clean context frames,
as in streaming and long-audio generation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cospeech.errors import InputError
from cospeech.motion.checkpoint import save_motion_model
from cospeech.motion.config import preset
from cospeech.motion.dataset import MotionClip, MotionWindows, load_split
from cospeech.motion.flow import flow_matching_loss
from cospeech.motion.model import MotionModel
from cospeech.motion.normalize import BODY_POINTS, FACE_POINTS
from cospeech.pose.schema import MOUTH
from cospeech.train.config import OptimConfig, TrainConfig

MOUTH_DIMS = [2 * FACE_POINTS.index(p) + c for p in MOUTH for c in (0, 1)]


@dataclass
class Config:
    """Stage options. ``data``: dataset folder; ``preset``: model preset; ``window_frames``:
    training window length; ``chunk_frames``: range of chunk lengths after context;
    ``limit``: use only the first N training clips (0 = all)."""

    data: str = ""
    preset: str = "demo"
    window_frames: int = 100
    chunk_frames: tuple[int, int] = (5, 30)
    face_weight: float = 1.0
    mouth_weight: float = 2.0
    velocity_weight: float = 1.0
    confidence_weight: float = 0.1
    streaming_probability: float = 0.5
    chunk_probability: float = 0.5
    style_keep_probability: float = 0.5
    gain_jitter: float = 1.5
    limit: int = 0


def default_train_config() -> TrainConfig:
    return TrainConfig(
        steps=4000, batch_size=16, ema_decay=0.999, checkpoint_every=500, log_every=20,
        optim=OptimConfig(lr=1e-3, warmup_steps=200, weight_decay=0.01, grad_clip=1.0),
    )  # fmt: skip


def group_values(offsets: torch.Tensor, points: tuple[int, ...]) -> torch.Tensor:
    """Offsets ``[..., 133, 2]`` -> the listed points flattened ``[..., 2 * len(points)]``."""
    return offsets[..., list(points), :].flatten(-2)


def dataset_statistics(clips: list[MotionClip]) -> dict[str, torch.Tensor]:
    """Per-dimension mean/std of the stacked mel and the face/body offsets over all frames."""
    mel = torch.from_numpy(np.concatenate([c.mel for c in clips]))
    offsets = torch.from_numpy(np.concatenate([c.offsets for c in clips]))
    face, body = group_values(offsets, FACE_POINTS), group_values(offsets, BODY_POINTS)
    return {
        "mel_mean": mel.mean(0), "mel_std": mel.std(0), "face_mean": face.mean(0),
        "face_std": face.std(0), "body_mean": body.mean(0), "body_std": body.std(0),
    }  # fmt: skip


class MotionStage:
    name = "motion"

    def __init__(self, config: Config) -> None:
        if not config.data:
            raise InputError("stage motion: set the dataset with --set stage.data=CORPUS")
        if not Path(config.data).is_dir():
            raise InputError(f"stage motion: dataset {config.data}: no such folder")
        self.config = config
        self.model_config = preset(config.preset)
        self._clips: list[MotionClip] | None = None

    @property
    def clips(self) -> list[MotionClip]:
        if self._clips is None:
            self._clips = load_split(self.config.data, "train", self.config.limit, progress=True)
        return self._clips

    def build_model(self) -> MotionModel:
        model = MotionModel(self.model_config)
        model.set_statistics(dataset_statistics(self.clips))
        return model

    def build_dataset(self) -> MotionWindows:
        return MotionWindows(self.clips, self.config.window_frames)

    def loss(
        self, model: MotionModel, batch: dict[str, torch.Tensor], step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        core: MotionModel = getattr(model, "module", model)
        valid = batch["valid"]
        b, t = valid.shape
        streaming = bool(torch.rand(()) < cfg.streaming_probability)
        gain = (torch.rand(b, 1, 1) * 2 - 1) * cfg.gain_jitter
        floor = batch["mel"].amin()
        mel = torch.maximum(batch["mel"] + gain * valid[..., None], floor)
        keep_style = torch.rand(b) < cfg.style_keep_probability
        condition = core.condition(
            mel, batch["reference"], batch["style"], streaming, valid, style_mask=keep_style
        )

        # Face: standardised L1 on positions and on frame-to-frame velocities.
        seen = batch["confidence"] > 0
        face_seen = group_values(seen[..., None].expand(-1, -1, -1, 2).float(), FACE_POINTS)
        face_weight = face_seen * valid[..., None]
        face_weight[..., MOUTH_DIMS] *= cfg.mouth_weight
        target = (group_values(batch["offsets"], FACE_POINTS) - core.face_mean) / core.face_std
        predicted = core.face(condition)
        face_loss = ((predicted - target).abs() * face_weight).sum() / face_weight.sum()
        vel_weight = face_weight[:, 1:] * face_weight[:, :-1].bool()
        velocity_error = (predicted.diff(dim=1) - target.diff(dim=1)).abs()
        velocity_loss = (velocity_error * vel_weight).sum() / vel_weight.sum().clamp_min(1.0)

        logits = core.confidence_logits(condition)
        confidence_loss = F.binary_cross_entropy_with_logits(logits[valid], seen[valid].float())

        # Body and hands: flow matching on the whole window or on a context + chunk layout.
        body = (group_values(batch["offsets"], BODY_POINTS) - core.body_mean) / core.body_std
        weight = valid.float()
        context_mask = torch.zeros(b, t, dtype=torch.bool)
        body_condition = condition
        if torch.rand(()) < cfg.chunk_probability:
            context = core.config.context_frames
            length = context + int(torch.randint(cfg.chunk_frames[0], cfg.chunk_frames[1] + 1, ()))
            length = min(length, t)
            start = int(torch.randint(0, t - length + 1, ()))
            span = slice(start, start + length)
            body, weight, body_condition = body[:, span], weight[:, span], condition[:, span]
            context_mask = torch.zeros(b, length, dtype=torch.bool)
            context_mask[:, : min(context, length - 1)] = True
        flow_loss = flow_matching_loss(core.flow, body, body_condition, context_mask, weight)

        loss = (
            cfg.face_weight * (face_loss + cfg.velocity_weight * velocity_loss)
            + flow_loss
            + cfg.confidence_weight * confidence_loss
        )
        metrics = {
            "face": face_loss.item(), "face_velocity": velocity_loss.item(),
            "flow": flow_loss.item(), "confidence": confidence_loss.item(),
        }  # fmt: skip
        return loss, metrics

    def sample(self, model: MotionModel, step: int) -> dict[str, Any]:
        return {}

    def export(self, model: MotionModel, out_dir: Path) -> None:
        clips = self.clips
        info = {
            "fps": clips[0].fps, "data": str(self.config.data), "train_clips": len(clips),
            "stage": {k: v for k, v in vars(self.config).items()},
        }  # fmt: skip
        save_motion_model(model, out_dir, info)


def build_stage(config: Config) -> MotionStage:
    return MotionStage(config)
