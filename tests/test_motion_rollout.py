"""The motion stage's rollout (self-forcing) context: the flow is trained on chunks whose
context frames the model generated itself, chained chunk after chunk as in a stream; and
the seam measure of streaming output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cospeech.errors import InputError
from cospeech.motion.bench import seam_speeds
from cospeech.motion.config import MEL_PER_FRAME, preset
from cospeech.motion.metrics import HANDS
from cospeech.motion.model import MotionModel
from cospeech.train.stages.motion import Config, MotionStage

WINDOW = 30
CHUNK = 6  # >= the tiny preset's 4 context frames: a chunk's last frames are all generated


class ToContextMeanPlusOne(nn.Module):
    """A velocity field whose Euler samples land exactly on (mean of the context frames + 1),
    the point-mass velocity ``(target - x_t) / (1 - t)``. It records the values and context
    mask of every call made with gradients enabled (the training call, not the rollout)."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(()))
        self.trained: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x_t, t, condition, context, context_mask):
        if torch.is_grad_enabled():
            self.trained.append((context.detach().clone(), context_mask.clone()))
        mask = context_mask[..., None].float()
        mean = (context * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp_min(1.0)
        return self.gain * (mean + 1 - x_t) / (1 - t[:, None, None])


def make_stage(tmp_path, **options) -> MotionStage:
    config = Config(data=str(tmp_path), preset="tiny", window_frames=WINDOW,
                    chunk_frames=(CHUNK, CHUNK), chunk_probability=1.0, **options)  # fmt: skip
    return MotionStage(config)


def constant_body_batch(levels: list[float]) -> dict[str, torch.Tensor]:
    """Every sample holds still at its own offset level (standardised body = the level,
    the untrained model's statistics being mean 0 and std 1)."""
    b = len(levels)
    offsets = torch.tensor(levels)[:, None, None, None].expand(b, WINDOW, 133, 2).contiguous()
    return {
        "mel": torch.randn(b, WINDOW, MEL_PER_FRAME * 80),
        "offsets": offsets,
        "confidence": torch.ones(b, WINDOW, 133),
        "valid": torch.ones(b, WINDOW, dtype=torch.bool),
        "reference": torch.zeros(b, 133, 3),
        "style": torch.zeros(b, 8),
    }


def trained_values(stage: MotionStage, levels: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = MotionModel(preset("tiny"))
    flow = ToContextMeanPlusOne()
    model.flow = flow
    loss, _ = stage.loss(model, constant_body_batch(levels), step=0)
    loss.backward()
    assert flow.gain.grad is not None  # the flow is trained on the layout
    (values, mask), = flow.trained  # fmt: skip
    return values, mask


def test_rollout_context_is_the_models_own_chained_output(tmp_path):
    levels = [0.0, 3.0]
    stage = make_stage(tmp_path, rollout_probability=1.0, rollout_chunks=(2, 2))
    values, mask = trained_values(stage, levels)
    context = stage.model_config.context_frames
    assert mask.shape == (2, context + CHUNK) and mask[:, :context].all()
    assert not mask[:, context:].any()
    # Truth holds still at each level; the first generated chunk (after true context) lands
    # on level + 1 and the second, conditioned on the first's frames, on level + 2.
    for row, level in zip(values, levels, strict=True):
        assert torch.allclose(row[:context], torch.full_like(row[:context], level + 2), atol=1e-4)
        # The target after the context is the truth (no blending by default).
        assert torch.equal(row[context:], torch.full_like(row[context:], level))


def test_without_rollout_the_context_is_ground_truth(tmp_path):
    levels = [1.0, -2.0]
    values, _ = trained_values(make_stage(tmp_path), levels)
    for row, level in zip(values, levels, strict=True):
        assert torch.equal(row, torch.full_like(row, level))


def test_blended_target_continues_the_rollout_context(tmp_path):
    stage = make_stage(
        tmp_path, rollout_probability=1.0, rollout_chunks=(1, 1), rollout_blend_frames=3
    )
    values, _ = trained_values(stage, [0.0])
    context = stage.model_config.context_frames
    # Gap 1 between the generated context (level + 1) and the truth, faded over 3 frames.
    expected = torch.tensor([0.75, 0.5, 0.25, 0.0, 0.0, 0.0])
    assert torch.allclose(values[0, context:, 0], expected, atol=1e-4)


def test_bad_rollout_and_train_only_options_are_refused(tmp_path):
    with pytest.raises(InputError, match="window_frames"):
        make_stage(tmp_path, rollout_probability=0.5, rollout_chunks=(1, 5))
    with pytest.raises(InputError, match="rollout_chunks"):
        make_stage(tmp_path, rollout_chunks=(2, 1))
    with pytest.raises(InputError, match="train_only"):
        make_stage(tmp_path, train_only=("flow", "decoder"))


def test_seam_speeds_split_steps_at_chunk_boundaries():
    # Hands move 1 px per frame, and jump 5 px more when frame 10 (a new chunk) begins.
    keypoints = np.zeros((25, 133, 3), np.float32)
    x = np.arange(25, dtype=np.float32) + 5.0 * (np.arange(25) >= 10)
    keypoints[:, list(HANDS), 0] = x[:, None]
    across, inside = seam_speeds(keypoints, chunk=10)
    assert np.allclose(across, [6.0, 1.0]) and np.allclose(inside, 1.0)
    assert inside.size == 22
