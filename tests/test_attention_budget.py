"""The global mask keeps a fixed budget of K frames, and the frame distance compares per point.

Issue 12: ties (a still speaker), poseless frames (+inf to everything) and frames with
missing keypoints must not inflate the mask; every plan reports its realised density.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from cospeech.attention import SparsePlan, global_frame_mask
from cospeech.attention.pose_plan import pose_plan
from cospeech.pose import PoseSequence, pose_frame_similarity
from cospeech.pose import schema as s
from pose_fixture import upright_pose

K = 3


def _row_counts(mask: torch.Tensor) -> list[int]:
    return mask.sum(dim=1).tolist()


def _budget(query: int, k: int, sinks: int) -> int:
    """Frames a causal query keeps when every candidate ties: self + sinks before it + K."""
    past = max(0, query - sinks)  # non-sink past frames
    return 1 + min(query, sinks) + min(k, past)


@pytest.mark.parametrize("sinks", [0, 1, 2])
def test_equal_distances_keep_exactly_k_plus_sink_plus_self(sinks):
    sim = torch.zeros(12, 12)
    mask = global_frame_mask(sim, k=K, sink_frames=sinks)
    assert _row_counts(mask) == [_budget(q, K, sinks) for q in range(12)]
    for q in range(sinks + K, 12):  # the K kept are the most recent
        assert mask[q, q - K : q].all() and not mask[q, sinks : q - K].any()


def test_a_still_speaker_keeps_at_most_k_frames_per_query():
    pose = upright_pose(10)  # ten identical frames: every distance ties
    mask = global_frame_mask(pose_frame_similarity(pose), k=K, sink_frames=1)
    counts = _row_counts(mask)
    assert max(counts) == K + 2
    assert counts == [_budget(q, K, 1) for q in range(10)]


def test_poseless_frames_keep_sink_self_and_k_most_recent():
    pose = upright_pose(10)
    pose.keypoints[[4, 7], :, 2] = 0.0  # nothing detected: +inf to every other frame
    sim = pose_frame_similarity(pose)
    assert np.isinf(sim[7, :7]).all() and sim[7, 7] == 0.0
    mask = global_frame_mask(sim, k=K, sink_frames=1)
    assert mask[7].nonzero().flatten().tolist() == [0, 4, 5, 6, 7]
    assert _row_counts(mask) == [_budget(q, K, 1) for q in range(10)]
    # a complete frame ranks a poseless one last: frame 9 keeps 0, 6, 8 (ties, most recent)
    # and 5 before the poseless 7 and 4
    assert mask[9].nonzero().flatten().tolist() == [0, 5, 6, 8, 9]


def test_bidirectional_budget_with_ties():
    mask = global_frame_mask(torch.zeros(9, 9), k=2, causal=False, sink_frames=1)
    assert max(_row_counts(mask)) <= 2 + 2
    assert mask[4].nonzero().flatten().tolist() == [0, 3, 4, 5]  # nearest in time, both sides


def _noisy(base: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``base`` plus zero-mean noise of RMS exactly ``sigma`` per point."""
    noise = rng.normal(0, 1, base.shape)
    noise -= noise.mean(0)
    return base + sigma * noise / np.sqrt((noise**2).sum(1).mean())


@pytest.mark.parametrize("seed", range(5))
def test_undetected_hands_never_outrank_a_closer_complete_frame(seed):
    """Query frame 3; frame 1 complete with per-point error e; frame 2 with the hands not
    detected and per-point error 1.15 e on what it has. K = 1 must keep frame 1."""
    rng = np.random.default_rng(seed)
    pose = upright_pose(4)
    idx = np.asarray(s.UPPER_BODY)
    base = pose.keypoints[3, idx, :2].astype(np.float64)
    pose.keypoints[0, idx, :2] = (1.5 * (base - base.mean(0)) + base.mean(0)).astype(np.float32)
    # frame 0 is the pose scaled by 1.5 (no rigid motion undoes that): never a contender
    pose.keypoints[1, idx, :2] = _noisy(base, 2.0, rng).astype(np.float32)
    pose.keypoints[2, idx, :2] = _noisy(base, 2.3, rng).astype(np.float32)
    pose.keypoints[2, list(s.LEFT_HAND + s.RIGHT_HAND), 2] = 0.0
    sim = pose_frame_similarity(pose)
    assert sim[3, 1] < sim[3, 2]
    mask = global_frame_mask(sim, k=1, sink_frames=0)
    assert mask[3].tolist() == [False, True, False, True]


def test_every_plan_logs_its_density_and_pose_plan_reports_it(caplog):
    kp = upright_pose(9, width=832, height=624).keypoints
    kp[..., :2] *= 128 / 832
    pose = PoseSequence(kp, 25.0, 128, 96)  # 8 x 6 tokens, 3 latent frames
    with caplog.at_level(logging.DEBUG, logger="cospeech.attention"):
        plan = pose_plan(pose, k=1, block_size=16)
    summary = plan.summary()
    assert summary["block_density"] == plan.density
    assert summary["token_density"] == pytest.approx(
        plan.reference_token_mask().double().mean().item(), rel=1e-12
    )
    assert (summary["frames"], summary["tokens_per_frame"]) == (3, 48)
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"block density {plan.density:.3f}" in m for m in messages), messages
    assert any(r.levelno == logging.INFO and "sparse attention plan" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    with caplog.at_level(logging.DEBUG, logger="cospeech.attention"):
        caplog.clear()
        dense = SparsePlan.dense(64, block_size=16)
    assert dense.summary()["block_density"] == 1.0
    assert any("block density 1.000" in r.getMessage() for r in caplog.records)
