"""Training stage ``motion``: the audio -> whole-body keypoint model (``cospeech.motion``).

``cospeech train motion --out RUN --set stage.data=CORPUS [--config cfg.yaml]``.

Each update draws, from torch's RNG: the encoder mode (offline or streaming mask), a gain
jitter of the log-mel, which samples keep their style vector, and for the flow head a
window layout (whole window, or a short chunk after ``context_frames`` clean context frames,
as in streaming and long-audio generation). With ``rollout_probability`` > 0, a chunk's
context frames are, that often, the model's own output: starting from ground-truth context,
the current flow generates one or more chunks (no gradient), exactly as a stream does, and
the chunk after them is trained on that self-generated context (self-forcing against the
exposure bias of streaming). ``init`` starts from a trained model folder (fine-tuning).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cospeech.errors import InputError, check_range
from cospeech.motion.checkpoint import load_motion_model, save_motion_model
from cospeech.motion.config import preset
from cospeech.motion.dataset import MotionClip, MotionWindows, load_split
from cospeech.motion.flow import flow_matching_loss, sample_continuation
from cospeech.motion.model import FlowDenoiser, MotionModel
from cospeech.motion.normalize import BODY_POINTS, FACE_POINTS
from cospeech.pose.schema import MOUTH
from cospeech.train.config import OptimConfig, TrainConfig

MOUTH_DIMS = [2 * FACE_POINTS.index(p) + c for p in MOUTH for c in (0, 1)]


@dataclass
class Config:
    """Stage options. ``data``: dataset folder; ``preset``: model preset; ``init``: a model
    folder (``final-ema``, ``cospeech/assets/motion``) whose config, statistics and weights
    start the run instead of ``preset`` (fine-tuning; "" = fresh weights); ``train_only``:
    names of the model's top-level parts to train (e.g. ``[flow]``: the body head alone, so
    the face and lips stay exactly those of ``init``), the others are frozen (empty = all);
    ``window_frames``: training window length; ``chunk_frames``: range of chunk lengths after
    context; ``rollout_probability``: share of chunk layouts whose context is the model's own
    rollout rather than ground truth; ``rollout_chunks``: range of the number of chunks that
    rollout generates before the trained chunk; ``rollout_blend_frames``: after a rollout
    context, the target is the true chunk shifted by the gap between the context's last frame
    and the true one, the shift fading out linearly over this many frames (0 = the true
    chunk as is), so that the target continues the context without a jump; ``limit``: use
    only the first N training clips (0 = all)."""

    data: str = ""
    preset: str = "demo"
    init: str = ""
    train_only: tuple[str, ...] = ()
    window_frames: int = 100
    chunk_frames: tuple[int, int] = (5, 30)
    face_weight: float = 1.0
    mouth_weight: float = 2.0
    velocity_weight: float = 1.0
    confidence_weight: float = 0.1
    streaming_probability: float = 0.5
    chunk_probability: float = 0.5
    rollout_probability: float = 0.0
    rollout_chunks: tuple[int, int] = (1, 2)
    rollout_blend_frames: int = 0
    style_keep_probability: float = 0.5
    gain_jitter: float = 1.5
    limit: int = 0


def default_train_config() -> TrainConfig:
    return TrainConfig(
        steps=4000, batch_size=16, ema_decay=0.999, checkpoint_every=500, log_every=20,
        optim=OptimConfig(lr=1e-3, warmup_steps=200, weight_decay=0.01, grad_clip=1.0),
    )  # fmt: skip


def check_config(config: Config) -> None:
    """:class:`InputError` naming the option (``stage.window_frames``) when a value is out of
    range, or a rollout option is set while rollouts are off (it would do nothing)."""
    for name, low in (("window_frames", 1), ("rollout_blend_frames", 0), ("limit", 0)):
        check_range(f"stage.{name}", getattr(config, name), low)
    for name in ("face_weight", "mouth_weight", "velocity_weight", "confidence_weight",
                 "gain_jitter"):  # fmt: skip
        check_range(f"stage.{name}", getattr(config, name), 0)
    for name in ("streaming_probability", "chunk_probability", "rollout_probability",
                 "style_keep_probability"):  # fmt: skip
        check_range(f"stage.{name}", getattr(config, name), 0, 1)
    for name in ("chunk_frames", "rollout_chunks"):
        pair = list(getattr(config, name))
        if len(pair) != 2 or not 1 <= pair[0] <= pair[1]:
            raise InputError(f"stage.{name} must be [low, high] with 1 <= low <= high, got {pair}")
    default = Config()
    idle = [
        name
        for name in ("rollout_chunks", "rollout_blend_frames")
        if getattr(config, name) != getattr(default, name)
    ]
    if config.rollout_probability == 0 and idle:
        verb = "does" if len(idle) == 1 else "do"
        raise InputError(
            f"stage.{' and stage.'.join(idle)} {verb} nothing with stage.rollout_probability 0"
        )


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


def rollout_context(
    flow: FlowDenoiser,
    condition: torch.Tensor,
    context: torch.Tensor,
    lengths: list[int],
    steps: int,
) -> torch.Tensor:
    """The context a stream would hold after generating chunks of ``lengths`` frames.

    ``condition [B, C + sum(lengths), D]`` covers the first context and the chunks;
    ``context [B, C, Y]`` (standardised body values) conditions the first chunk, and each
    later chunk is conditioned on the last ``C`` frames of the previous window, as in
    :class:`~cospeech.motion.generate.MotionStream`. Noise comes from torch's global RNG.
    Returns the last ``C`` frames ``[B, C, Y]``; no gradient flows through them.
    """
    c = context.shape[1]
    position = c
    for length in lengths:
        window = condition[:, position - c : position + length].detach()
        context = sample_continuation(flow, window, context, steps)[:, -c:]
        position += length
    return context


class MotionStage:
    name = "motion"

    def __init__(self, config: Config) -> None:
        check_config(config)
        if not config.data:
            raise InputError("stage motion: set the dataset with --set stage.data=CORPUS")
        if not Path(config.data).is_dir():
            raise InputError(f"stage motion: dataset {config.data}: no such folder")
        high = config.rollout_chunks[1]
        self.config = config
        self.initial: MotionModel | None = None
        self.model_config = preset(config.preset)
        if config.init:
            self.initial = load_motion_model(config.init)[0]
            self.model_config = self.initial.config
        longest = self.model_config.context_frames + (high + 1) * config.chunk_frames[1]
        if config.rollout_probability > 0 and longest > config.window_frames:
            raise InputError(
                f"stage motion: a rollout layout needs up to {longest} frames "
                f"(context + {high + 1} chunks of up to {config.chunk_frames[1]}), more than "
                f"window_frames={config.window_frames}"
            )
        parts = {
            name.split(".")[0] for name, _ in MotionModel(self.model_config).named_parameters()
        }
        unknown = sorted(set(config.train_only) - parts)
        if unknown:
            raise InputError(
                f"stage motion: train_only {unknown}: no such parts; parts: {sorted(parts)}"
            )
        self._clips: list[MotionClip] | None = None

    @property
    def clips(self) -> list[MotionClip]:
        if self._clips is None:
            self._clips = load_split(self.config.data, "train", self.config.limit, progress=True)
        return self._clips

    def build_model(self) -> MotionModel:
        model = MotionModel(self.model_config)
        if self.initial is not None:
            model.load_state_dict(self.initial.state_dict())
        else:
            model.set_statistics(dataset_statistics(self.clips))
        if self.config.train_only:
            for name, parameter in model.named_parameters():
                parameter.requires_grad_(name.split(".")[0] in self.config.train_only)
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
            body, weight, body_condition, context_mask = self._chunk_layout(
                core, body, weight, condition
            )
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

    def _draw_chunk(self) -> int:
        low, high = self.config.chunk_frames
        return int(torch.randint(low, high + 1, ()))

    def _chunk_layout(
        self,
        core: MotionModel,
        body: torch.Tensor,
        weight: torch.Tensor,
        condition: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """A chunk after ``context_frames`` context frames, cut from the window: ``(body
        [B, L, Y], weight [B, L], condition [B, L, D], context_mask [B, L])``. With a rollout,
        the context values in ``body`` are the model's own output (see :func:`rollout_context`)."""
        cfg = self.config
        b, t = weight.shape
        context = core.config.context_frames
        rollout = cfg.rollout_probability > 0 and bool(torch.rand(()) < cfg.rollout_probability)
        lengths = []
        if rollout:
            count = int(torch.randint(cfg.rollout_chunks[0], cfg.rollout_chunks[1] + 1, ()))
            lengths = [self._draw_chunk() for _ in range(count)]
        skip = sum(lengths)
        length = min(context + self._draw_chunk(), t - skip)
        start = int(torch.randint(0, t - skip - length + 1, ())) + skip
        span = slice(start, start + length)
        body_span = body[:, span]
        if rollout:
            first = start - skip
            generated = rollout_context(
                core.flow, condition[:, first : start + context], body[:, first : first + context],
                lengths, core.config.flow_steps,
            )  # fmt: skip
            gap = generated[:, -1:] - body_span[:, context - 1 : context]
            after = torch.arange(1, length - context + 1, device=body.device)
            fade = (1 - after / (cfg.rollout_blend_frames + 1)).clamp_min(0)
            body_span = torch.cat([generated, body_span[:, context:] + gap * fade[:, None]], dim=1)
        context_mask = torch.zeros(b, length, dtype=torch.bool, device=body.device)
        context_mask[:, : min(context, length - 1)] = True
        return body_span, weight[:, span], condition[:, span], context_mask

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
