"""SparsePlan: permutation, block pooling (vs brute-force pooling of the dense mask), CSR."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cospeech.attention import (
    SparsePlan,
    block_causal_frame_mask,
    global_frame_mask,
    input_aware_token_mask,
)
from cospeech.errors import InputError


def _inputs(frames=5, h=5, w=6, num_labels=4, seed=0):
    rng = np.random.default_rng(seed)
    labels = torch.from_numpy(rng.integers(0, num_labels, size=(frames, h, w)))
    sim = rng.random((frames, frames))
    return global_frame_mask(sim + sim.T, k=2), labels


def _pool(mask: torch.Tensor, block: int, reduce) -> torch.Tensor:
    """Brute-force block pooling of a dense [L, L] mask (last block may be short)."""
    nb = -(-mask.shape[0] // block)
    out = torch.zeros(nb, nb, dtype=torch.bool)
    for a in range(nb):
        for b in range(nb):
            out[a, b] = reduce(mask[a * block : (a + 1) * block, b * block : (b + 1) * block])
    return out


# 5 frames x 30 tokens = 150 tokens: blocks of 16 straddle frames, the last block is short.
@pytest.mark.parametrize("block_size", [16, 30, 64, 128])
def test_block_map_is_the_pooled_token_mask(block_size):
    frame_mask, labels = _inputs()
    plan = SparsePlan.build(frame_mask, labels, block_size=block_size)
    sorted_mask = input_aware_token_mask(frame_mask, labels)[plan.perm][:, plan.perm]
    kept = _pool(sorted_mask, block_size, torch.any)
    assert torch.equal(plan.block_mask(), kept)
    full = _pool(sorted_mask, block_size, torch.all)
    assert torch.equal(plan.block_full, full[plan.block_rows(), plan.kv_indices])
    assert plan.density == pytest.approx(kept.float().mean().item())
    assert plan.num_tokens == 150


def test_permutation_is_within_frame_sorted_by_bitmask_background_last():
    frame_mask, labels = _inputs(num_labels=5, seed=3)
    plan = SparsePlan.build(frame_mask, labels, block_size=16)
    n = plan.tokens_per_frame
    perm = plan.perm.reshape(plan.num_frames, n)
    flat = labels.reshape(plan.num_frames, n)
    for t in range(plan.num_frames):
        assert sorted(perm[t].tolist()) == list(range(t * n, (t + 1) * n))  # within frame
        lab = flat[t][perm[t] - t * n]
        key = torch.where(lab == 0, 10**6, lab)
        assert torch.all(key[1:] >= key[:-1])  # sorted, background last
        for value in lab.unique():  # stable: original order inside one label
            members = perm[t][lab == value]
            assert torch.all(members[1:] > members[:-1])
    assert torch.equal(plan.perm[plan.inv_perm], torch.arange(plan.num_tokens))
    assert torch.equal(plan.token_regions, labels.reshape(-1)[plan.perm])
    assert torch.equal(plan.token_frame, torch.arange(plan.num_tokens) // n)


def test_csr_is_consistent():
    frame_mask, labels = _inputs(seed=4)
    plan = SparsePlan.build(frame_mask, labels, block_size=16)
    indptr, indices = plan.kv_indptr, plan.kv_indices
    assert indptr[0] == 0 and indptr[-1] == plan.nnz == len(indices) == len(plan.block_full)
    assert torch.all(indptr[1:] >= indptr[:-1])
    assert len(indptr) == plan.num_blocks + 1 == -(-150 // 16) + 1
    for row in range(plan.num_blocks):
        cols = indices[indptr[row] : indptr[row + 1]]
        assert torch.all(cols[1:] > cols[:-1]) and cols.min() >= 0
        assert cols.max() < plan.num_blocks
        assert row in cols.tolist()  # a block always sees its own frame's tokens


@pytest.mark.parametrize("block_size", [16, 64])
def test_token_mask_contains_reference_and_equals_it_when_exact(block_size):
    frame_mask, labels = _inputs(seed=5)
    reference = input_aware_token_mask(frame_mask, labels)
    pooled = SparsePlan.build(frame_mask, labels, block_size=block_size)
    assert torch.all(pooled.token_mask() >= reference)
    assert pooled.token_mask().sum() > reference.sum()  # pooling adds pairs here
    exact = SparsePlan.build(frame_mask, labels, block_size=block_size, exact=True)
    assert torch.equal(exact.token_mask(), reference)
    assert torch.equal(exact.reference_token_mask(), reference)
    assert exact.token_density == pytest.approx(reference.float().mean().item())


def test_chunk_mask_is_the_reference_mask_between_the_frames_named():
    """Queries of some frames against keys of others, in the order named: the rows and
    columns of the dense Eq. 3 mask for those frames' tokens."""
    frame_mask, labels = _inputs(seed=6)
    plan = SparsePlan.build(frame_mask, labels, block_size=16, exact=True)
    reference = input_aware_token_mask(frame_mask, labels)
    n = plan.tokens_per_frame
    for queries, keys in [([2], [0, 1, 2]), ([1, 2], [0, 1, 2]), ([3], [0, 2, 3]), ([0], [0])]:
        rows = torch.cat([torch.arange(f * n, (f + 1) * n) for f in queries])
        cols = torch.cat([torch.arange(f * n, (f + 1) * n) for f in keys])
        mask = plan.chunk_mask(queries, keys, "cpu")
        assert mask.shape == (len(rows), len(cols))
        assert torch.equal(mask, reference[rows[:, None], cols[None, :]])
    assert plan.chunk_mask([2], [0, 1, 2], "cpu") is plan.chunk_mask([2], [0, 1, 2], "cpu")
    with pytest.raises(InputError, match="outside the plan"):
        plan.chunk_mask([9], [0], "cpu")


def test_region_sorting_makes_blocks_sparser_than_raw_order():
    # Two regions in a checkerboard: unsorted, every block mixes labels.
    labels = (torch.arange(64).reshape(1, 8, 8).repeat(4, 1, 1) % 2) + 1
    labels[:, :, 4:] = 0
    frame_mask = torch.ones(4, 4, dtype=torch.bool)
    plan = SparsePlan.build(frame_mask, labels, block_size=16)
    raw = _pool(input_aware_token_mask(frame_mask, labels), 16, torch.any)
    assert plan.density < raw.float().mean().item()


def test_same_label_everywhere_is_the_frame_mask_and_zero_labels_block_diagonal():
    fmask = block_causal_frame_mask(4, chunk_frames=2)
    plan = SparsePlan.from_frame_mask(fmask, tokens_per_frame=10, block_size=16)
    expanded = fmask.repeat_interleave(10, 0).repeat_interleave(10, 1)
    assert torch.equal(plan.token_mask(), expanded)
    zero = SparsePlan.build(fmask, torch.zeros(4, 10, dtype=torch.int64), block_size=16, exact=True)
    assert torch.equal(zero.token_mask(), torch.block_diag(*[torch.ones(10, 10)] * 4).bool())


def test_dense_plan():
    plan = SparsePlan.dense(300, block_size=128)
    assert plan.density == 1.0 and plan.num_blocks == 3
    assert bool(plan.token_mask().all())
    with pytest.raises(InputError):
        SparsePlan.dense(10, num_frames=3)


def test_with_block_mask():
    frame_mask, labels = _inputs(seed=6)
    plan = SparsePlan.build(frame_mask, labels, block_size=32, exact=True)
    blocks = torch.eye(plan.num_blocks, dtype=torch.bool)
    blocks[0, -1] = True
    other = plan.with_block_mask(blocks)
    assert not other.exact and other.nnz == plan.num_blocks + 1
    assert torch.equal(other.block_mask(), blocks)
    assert torch.equal(other.perm, plan.perm)
    with pytest.raises(InputError):
        plan.with_block_mask(torch.zeros(plan.num_blocks, plan.num_blocks, dtype=torch.bool))
    with pytest.raises(InputError):
        plan.with_block_mask(torch.ones(2, 2, dtype=torch.bool))


def test_wan_sized_plan_builds_from_segments():
    # 21 latent frames x 1560 tokens: the [L, L] mask (1 G entries) is never formed.
    rng = np.random.default_rng(7)
    labels = torch.zeros(21, 30, 52, dtype=torch.int64)
    for t in range(21):
        for label, (r, c) in enumerate([(5, 20), (20, 8), (20, 40)], start=1):
            dr, dc = rng.integers(-2, 3, size=2)
            labels[t, r + dr : r + dr + 6, c + dc : c + dc + 8] = label
    sim = rng.random((21, 21))
    plan = SparsePlan.build(global_frame_mask(sim + sim.T, k=4), labels)
    assert plan.num_tokens == 32760 and plan.num_blocks == 256
    own_frame = 21 * 13 * 13 / 256**2  # lower bound: same-frame blocks
    assert own_frame * 0.9 < plan.density < 0.2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"block_size": 0},
        {"block_size": 2.5},
        {"regions": torch.zeros(4, 30, dtype=torch.int64)},
        {"frame_mask": torch.ones(5, 5)},
    ],
)
def test_bad_plan_inputs(kwargs):
    frame_mask, labels = _inputs()
    args = {"frame_mask": frame_mask, "regions": labels, **kwargs}
    with pytest.raises(InputError):
        SparsePlan.build(**args)
