"""Global frame mask (Eq. 2), token mask (Eq. 3), and helpers, against closed forms and loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cospeech.attention import block_causal_frame_mask, global_frame_mask, input_aware_token_mask
from cospeech.attention.masks import latent_frame_similarity
from cospeech.errors import InputError


def _loop_global_mask(sim: np.ndarray, k: int, causal: bool, sinks: int) -> np.ndarray:
    """Eq. 2 written out per query frame (independent of the vectorised version): the
    non-sink candidates sorted by (S, distance in time, index), the first K kept."""
    t = len(sim)
    keep = np.eye(t, dtype=bool)
    for q in range(t):
        cands = [j for j in range(sinks, t) if (j < q if causal else j != q)]
        for j in sorted(cands, key=lambda j: (sim[q, j], abs(q - j), j))[:k]:
            keep[q, j] = True
        for j in range(min(sinks, t)):
            if not causal or j <= q:
                keep[q, j] = True
    return keep


def test_keeps_k_smallest_past_frames_and_sink():
    sim = np.zeros((5, 5))
    sim[4, :4] = [3.0, 1.0, 2.0, 5.0]
    mask = global_frame_mask(torch.from_numpy(sim), k=2, sink_frames=1)
    # frame 4: itself, the two most similar past frames (1, 2), and the sink frame 0
    assert mask[4].tolist() == [True, True, True, False, True]
    no_sink = global_frame_mask(torch.from_numpy(sim), k=2, sink_frames=0)
    assert no_sink[4].tolist() == [False, True, True, False, True]


def test_ties_at_the_kth_value_go_to_the_most_recent():
    sim = np.zeros((5, 5))
    sim[4, :4] = [1.0, 1.0, 1.0, 5.0]
    mask = global_frame_mask(sim, k=2, sink_frames=0)
    assert mask[4].tolist() == [False, True, True, False, True]


def test_fewer_than_k_past_frames_keep_all_and_causality():
    sim = np.random.default_rng(0).random((6, 6))
    mask = global_frame_mask(sim, k=4, sink_frames=0)
    lower = np.tril(np.ones((6, 6), dtype=bool))
    assert (mask.numpy()[:5] == lower[:5]).all()  # frames 0..4 have <= 4 past frames
    assert mask[5].sum() == 5  # itself + 4 of 5
    assert not np.triu(mask.numpy(), 1).any()  # never a future frame


def test_k_zero_and_causal_sinks_do_not_look_ahead():
    sim = np.random.default_rng(1).random((4, 4))
    mask = global_frame_mask(sim, k=0, sink_frames=2).numpy()
    expected = np.eye(4, dtype=bool)
    expected[1:, 0] = True
    expected[2:, 1] = True
    assert (mask == expected).all()  # frame 0 does not see sink frame 1


def test_bidirectional_ranks_all_other_frames():
    sim = np.full((4, 4), 9.0)
    sim[0, 3] = 0.5  # a future frame is the most similar
    mask = global_frame_mask(sim, k=1, causal=False, sink_frames=0).numpy()
    assert mask[0].tolist() == [True, False, False, True]
    sinks = global_frame_mask(sim, k=0, causal=False, sink_frames=2).numpy()
    assert sinks[0].tolist() == [True, True, False, False]


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("k", [0, 1, 3, 10])
def test_matches_loop_reference_with_ties(k, causal):
    rng = np.random.default_rng(k)
    sim = rng.integers(0, 4, size=(9, 9)).astype(float)  # many ties
    mask = global_frame_mask(sim, k=k, causal=causal, sink_frames=1).numpy()
    assert (mask == _loop_global_mask(sim, k, causal, 1)).all()


@pytest.mark.parametrize(
    "sim, kwargs",
    [
        (np.array([[0.0, np.nan], [1.0, 0.0]]), {}),
        (np.array([[0.0, -np.inf], [1.0, 0.0]]), {}),
        (np.zeros((2, 3)), {}),
        (np.zeros((2, 2, 2)), {}),
        (np.zeros((0, 0)), {}),
        (np.zeros((3, 3)), {"k": -1}),
        (np.zeros((3, 3)), {"k": 1.5}),
        (np.zeros((3, 3)), {"sink_frames": -1}),
        ([[0.0]], {}),
    ],
)
def test_bad_inputs_raise(sim, kwargs):
    with pytest.raises(InputError):
        global_frame_mask(sim, **kwargs)


def test_latent_frame_similarity_averages_covered_video_frames():
    sim = np.arange(36, dtype=float).reshape(6, 6)
    lat = latent_frame_similarity(sim, time_stride=4).numpy()
    # latent 0 = video {0}, latent 1 = video {1..4}, latent 2 = video {5}
    assert lat.shape == (3, 3)
    assert lat[0, 0] == sim[0, 0]
    assert lat[1, 2] == pytest.approx(sim[1:5, 5].mean())
    assert lat[1, 1] == pytest.approx(sim[1:5, 1:5].mean())
    with pytest.raises(InputError):
        latent_frame_similarity(np.full((3, 3), np.nan))


def test_frames_without_comparable_keypoints_rank_last():
    """+inf (no confident keypoint shared, e.g. a detection drop-out) is ranked after every
    finite distance, and latent frames average only their finite pairs."""
    sim = np.array(
        [
            [0.0, 1.0, 2.0, np.inf],
            [1.0, 0.0, 3.0, np.inf],
            [2.0, 3.0, 0.0, np.inf],
            [np.inf, np.inf, np.inf, 0.0],
        ]
    )
    sim = np.pad(sim, ((0, 1), (0, 1)), constant_values=5.0)
    sim[4, 4] = 0.0
    sim[4, 3] = sim[3, 4] = np.inf
    mask = global_frame_mask(sim, k=2, causal=True, sink_frames=0).numpy()
    # frame 4 ranks its past {0: 5, 1: 5, 2: 5, 3: inf}: frame 3 is never among the 2
    # nearest; of the tied three, the two most recent are kept
    assert mask[4].tolist() == [False, True, True, False, True]
    lat = latent_frame_similarity(sim, time_stride=4).numpy()
    # latent 1 covers video frames 1..4: its pairs with frame 0 are {1, 2, inf, 5}
    assert lat[0, 1] == pytest.approx((1.0 + 2.0 + 5.0) / 3)
    only_inf = latent_frame_similarity(np.array([[0.0, np.inf], [np.inf, 0.0]]), 1).numpy()
    assert only_inf[0, 1] == np.inf


def _loop_token_mask(frame_mask: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Eq. 3 with region sets: some region r (a bit) holds both tokens."""
    t, n = regions.shape
    out = np.zeros((t * n, t * n), dtype=bool)
    for a in range(t * n):
        for b in range(t * n):
            fa, fb = divmod(a, n)[0], divmod(b, n)[0]
            ra, rb = int(regions[fa, a % n]), int(regions[fb, b % n])
            shared = any((ra >> r) & 1 and (rb >> r) & 1 for r in range(8))
            out[a, b] = fa == fb or (frame_mask[fa, fb] and shared)
    return out


def test_token_mask_matches_loop_and_accepts_grids():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 8, size=(3, 2, 3))  # bitmasks over 3 regions, overlaps included
    frame_mask = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1]], dtype=bool)
    mask = input_aware_token_mask(torch.from_numpy(frame_mask), torch.from_numpy(labels))
    assert mask.shape == (18, 18)
    assert (mask.numpy() == _loop_token_mask(frame_mask, labels.reshape(3, 6))).all()
    flat = input_aware_token_mask(frame_mask, labels.reshape(3, 6))
    assert torch.equal(mask, flat)


def test_token_mask_same_frame_is_dense_even_if_diagonal_is_off():
    labels = torch.zeros(2, 4, dtype=torch.int64)
    mask = input_aware_token_mask(torch.zeros(2, 2, dtype=torch.bool), labels)
    assert torch.equal(mask, torch.block_diag(torch.ones(4, 4), torch.ones(4, 4)).bool())


@pytest.mark.parametrize(
    "frame_mask, labels",
    [
        (torch.ones(2, 2, dtype=torch.bool), torch.zeros(3, 4, dtype=torch.int64)),
        (torch.ones(2, 2, dtype=torch.bool), torch.zeros(2, 4)),  # float labels
        (torch.ones(2, 2, dtype=torch.bool), -torch.ones(2, 4, dtype=torch.int64)),
        (torch.ones(2, 2), torch.zeros(2, 4, dtype=torch.int64)),  # float frame mask
        (torch.ones(2, 3, dtype=torch.bool), torch.zeros(2, 4, dtype=torch.int64)),
        (torch.ones(2, 2, dtype=torch.bool), torch.zeros(2, dtype=torch.int64)),
    ],
)
def test_token_mask_bad_inputs(frame_mask, labels):
    with pytest.raises(InputError):
        input_aware_token_mask(frame_mask, labels)


def test_block_causal_frame_mask():
    mask = block_causal_frame_mask(5, chunk_frames=2)
    expected = torch.tensor(
        [[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]],
        dtype=torch.bool,
    )
    assert torch.equal(mask, expected)
    with pytest.raises(InputError):
        block_causal_frame_mask(4, chunk_frames=0)
