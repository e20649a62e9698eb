"""The motion model's parts: normalisation, causality of the streaming encoder, the flow
sampler (closed form), metrics (closed forms) and the model folder round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cospeech.errors import CheckpointError, InputError
from cospeech.motion import metrics
from cospeech.motion.checkpoint import load_motion_model, save_motion_model
from cospeech.motion.config import MEL_PER_FRAME, preset
from cospeech.motion.flow import flow_matching_loss, sample_flow
from cospeech.motion.model import BODY_DIM, MotionModel
from cospeech.motion.normalize import body_frame, from_offsets, normalize_reference, to_offsets
from cospeech.motion.style_vector import style_from_offsets
from cospeech.pose import schema


def make_reference(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ref = np.zeros((133, 3), np.float32)
    ref[:, :2] = rng.uniform(20, 100, (133, 2))
    ref[schema.LEFT_SHOULDER, :2] = (80, 60)
    ref[schema.RIGHT_SHOULDER, :2] = (40, 60)
    ref[:, 2] = 1.0
    return ref


def test_offsets_round_trip_and_scale_with_the_reference():
    ref = make_reference()
    frame = body_frame(ref)
    assert frame.scale == pytest.approx(40.0) and np.allclose(frame.centre, (60, 60))
    keypoints = ref[None].repeat(3, 0)
    keypoints[:, :, :2] += np.random.default_rng(1).normal(0, 3, (3, 133, 2))
    offsets = to_offsets(keypoints, ref)
    assert np.allclose(from_offsets(offsets, ref), keypoints[..., :2], atol=1e-4)
    # The same offsets on a reference twice as large move points twice as far.
    big = ref.copy()
    big[:, :2] = ref[:, :2] * 2 + 7
    assert np.allclose(from_offsets(offsets, big) - big[None, :, :2],
                       2 * (keypoints[..., :2] - ref[None, :, :2]), atol=1e-3)  # fmt: skip
    normalized = normalize_reference(ref)
    assert np.allclose(normalized[schema.LEFT_SHOULDER, :2], (0.5, 0.0))


def test_reference_without_shoulders_is_refused():
    ref = make_reference()
    ref[schema.LEFT_SHOULDER, 2] = 0
    with pytest.raises(InputError, match="shoulders"):
        body_frame(ref)


def test_style_vector_is_wrist_mean_and_std():
    offsets = np.zeros((4, 133, 2), np.float32)
    offsets[:, schema.LEFT_WRIST, 0] = [0, 1, 2, 3]
    style = style_from_offsets(offsets)
    assert style[0] == pytest.approx(1.5) and style[4] == pytest.approx(np.std([0, 1, 2, 3]))


def test_streaming_encoder_never_looks_further_than_the_lookahead():
    torch.manual_seed(0)
    config = preset("tiny")
    model = MotionModel(config).eval()
    mel = torch.randn(1, 40, MEL_PER_FRAME * config.n_mels)
    changed = mel.clone()
    t = 20
    changed[:, t + config.lookahead_frames + 1 :] += 5.0
    ref = torch.zeros(1, 133, 3)
    with torch.no_grad():
        a = model.condition(mel, ref, None, streaming=True)
        b = model.condition(changed, ref, None, streaming=True)
        c = model.condition(mel, ref, None, streaming=False)
        d = model.condition(changed, ref, None, streaming=False)
    assert torch.allclose(a[:, : t + 1], b[:, : t + 1], atol=1e-5)
    assert not torch.allclose(a[:, t + 1 + config.lookahead_frames :],
                              b[:, t + 1 + config.lookahead_frames :])  # fmt: skip
    # Offline is bidirectional: the change reaches the earliest frames.
    assert (c[:, :5] - d[:, :5]).abs().max() > 1e-3


def test_streaming_encoder_forgets_beyond_its_receptive_field():
    torch.manual_seed(0)
    config = preset("tiny")
    model = MotionModel(config).eval()
    mel = torch.randn(1, 60, MEL_PER_FRAME * config.n_mels)
    changed = mel.clone()
    changed[:, :5] -= 3.0
    ref = torch.zeros(1, 133, 3)
    with torch.no_grad():
        a = model.condition(mel, ref, None, streaming=True)
        b = model.condition(changed, ref, None, streaming=True)
    first_free = 5 + config.receptive_past
    assert torch.allclose(a[:, first_free:], b[:, first_free:], atol=1e-5)


class DeltaVelocity(torch.nn.Module):
    """Exact flow velocity toward a point mass at ``target``: (target - x) / (1 - t)."""

    def __init__(self, target: torch.Tensor) -> None:
        super().__init__()
        self.target = target

    def forward(self, x, t, condition, context, context_mask):
        return (self.target - x) / (1 - t[:, None, None])


def test_euler_sampler_reaches_a_point_mass_exactly():
    target = torch.randn(1, 6, BODY_DIM)
    context = torch.zeros(1, 6, BODY_DIM)
    context[:, :2] = 7.0
    mask = torch.zeros(1, 6, dtype=torch.bool)
    mask[:, :2] = True
    out = sample_flow(DeltaVelocity(target), torch.zeros(1, 6, 4), context, mask, steps=5,
                      generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert torch.allclose(out[:, 2:], target[:, 2:], atol=1e-5)
    assert torch.all(out[:, :2] == 7.0)


def test_flow_loss_is_zero_for_the_exact_velocity_of_a_point_mass():
    # For data = target, x_t = (1 - t) noise + t target, and data - noise = (target - x_t)/(1-t).
    target = torch.randn(2, 5, BODY_DIM)
    torch.manual_seed(3)
    loss = flow_matching_loss(DeltaVelocity(target), target, torch.zeros(2, 5, 4),
                              torch.zeros(2, 5, dtype=torch.bool), torch.ones(2, 5))  # fmt: skip
    assert loss.item() < 1e-6


def test_model_folder_round_trip(tmp_path):
    torch.manual_seed(0)
    model = MotionModel(preset("tiny"))
    model.set_statistics({"face_std": torch.full((146,), 0.5)})
    save_motion_model(model, tmp_path / "m", {"fps": 25.0}, half=True)
    loaded, info = load_motion_model(tmp_path / "m")
    assert info == {"fps": 25.0}
    for key, value in model.state_dict().items():
        assert torch.allclose(loaded.state_dict()[key], value.half().float())
    with pytest.raises(CheckpointError):
        load_motion_model(tmp_path / "missing")


def test_metrics_closed_forms():
    truth = np.zeros((10, 133, 3), np.float32)
    moved = truth.copy()
    moved[..., 0] += 3
    moved[..., 1] += 4
    assert metrics.lip_vertex_error(moved, truth) == pytest.approx(5.0)
    opening = np.sin(np.arange(10.0))
    truth[:, schema.INNER_LIP_BOTTOM, 1] = 2 + opening
    scaled = truth.copy()
    scaled[:, schema.INNER_LIP_BOTTOM, 1] = 5 + 3 * opening
    assert metrics.mouth_opening_correlation(scaled, truth) == pytest.approx(1.0)
    beats = np.array([1.0, 2.1])
    onsets = np.array([1.0, 2.0, 3.0])
    expected = (1 + np.exp(-0.01 / (2 * 0.01))) / 2
    assert metrics.beat_alignment(beats, onsets) == pytest.approx(expected)
    assert np.isnan(metrics.beat_alignment(np.array([]), onsets))
    # Hands on a circle of radius r: var(x) + var(y) = r^2.
    t = np.arange(400) * 2 * np.pi / 400
    circle = np.zeros((400, 133, 3))
    circle[:, list(metrics.HANDS), 0] = 5 * np.cos(t)[:, None]
    circle[:, list(metrics.HANDS), 1] = 5 * np.sin(t)[:, None]
    assert metrics.hand_variance(circle) == pytest.approx(25.0)


def test_motion_beats_find_the_stops_of_a_moving_hand():
    fps, frames = 25.0, 100
    keypoints = np.zeros((frames, 133, 3))
    # The wrists move with speed |sin|: they stop every 20 frames (at frames 20, 40, 60, 80).
    position = np.cumsum(np.abs(np.sin(np.pi * np.arange(frames) / 20)))
    keypoints[:, list(metrics.WRISTS), 0] = position[:, None]
    beats = metrics.motion_beats(keypoints, fps, scale=40.0)
    assert np.allclose(beats, (np.array([20, 40, 60, 80]) + 0.5) / fps, atol=1.5 / fps)
