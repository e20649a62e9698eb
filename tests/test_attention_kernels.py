"""Backends vs an explicit softmax reference and vs ``dense`` (forward and backward)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from cospeech.attention import (
    SparsePlan,
    flashinfer_available,
    global_frame_mask,
    resolve_backend,
    sparse_attention,
)
from cospeech.attention.kernels.gather import build_schedule
from cospeech.errors import InputError

RTOL, ATOL = 1e-5, 1e-6


def _plan(exact: bool, block_size: int = 16, seed: int = 0) -> SparsePlan:
    """4 frames x 30 tokens = 120: blocks of 16 straddle frames, the last one is short."""
    rng = np.random.default_rng(seed)
    labels = torch.from_numpy(rng.integers(0, 4, size=(4, 5, 6)))
    sim = rng.random((4, 4))
    return SparsePlan.build(global_frame_mask(sim + sim.T, k=1), labels, block_size, exact)


def _qkv(plan: SparsePlan, dtype=torch.float32, grad=False, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(2, 3, plan.num_tokens, 8, generator=gen, dtype=dtype).requires_grad_(grad)
        for _ in range(3)
    ]


def _softmax_reference(q, k, v, mask, scale=None):
    """Attention written out in float64 with the mask as -inf logits."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    logits = (q.double() @ k.double().transpose(-1, -2)) * scale
    return (logits.masked_fill(~mask, -torch.inf).softmax(-1) @ v.double()).to(q.dtype)


@pytest.mark.parametrize("exact", [False, True])
def test_dense_matches_explicit_softmax(exact):
    plan = _plan(exact)
    q, k, v = _qkv(plan)
    out = sparse_attention(q, k, v, plan, backend="dense", scale=0.3)
    torch.testing.assert_close(
        out, _softmax_reference(q, k, v, plan.token_mask(), 0.3), rtol=RTOL, atol=ATOL
    )


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("block_size", [16, 32])
def test_gather_forward_and_backward_match_dense(exact, block_size):
    plan = _plan(exact, block_size)
    q, k, v = _qkv(plan, grad=True)
    ref = sparse_attention(q, k, v, plan, backend="dense")
    out = sparse_attention(q, k, v, plan, backend="gather")
    torch.testing.assert_close(out, ref, rtol=RTOL, atol=ATOL)
    grad_out = torch.randn_like(out)
    ref_grads = torch.autograd.grad(ref, (q, k, v), grad_out)
    grads = torch.autograd.grad(out, (q, k, v), grad_out)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=RTOL, atol=1e-5)


def test_exact_gather_differs_from_pooled_where_the_masks_differ():
    pooled, exact = _plan(False), _plan(True)
    q, k, v = _qkv(pooled)
    a = sparse_attention(q, k, v, pooled, backend="gather")
    b = sparse_attention(q, k, v, exact, backend="gather")
    differs = (pooled.token_mask() != exact.token_mask()).any(dim=1)
    assert differs.any()
    row_changed = (a - b).abs().amax(dim=(0, 1, 3)) > 1e-4
    assert torch.equal(row_changed, differs)


def test_gather_schedule_covers_every_query_once():
    plan = _plan(True, seed=3)
    schedule = build_schedule(plan)
    queries = torch.cat([c.q_index for c in schedule.calls])
    assert torch.equal(queries.sort().values, torch.arange(plan.num_tokens))
    assert torch.equal(queries[schedule.out_index], torch.arange(plan.num_tokens))
    for c in schedule.calls:
        assert len(c.q_index) == c.groups * c.q_len and len(c.kv_index) == c.groups * c.kv_len


@pytest.mark.parametrize("threads", [1, 2])
def test_gather_chunked_calls_serial_and_on_workers(monkeypatch, threads):
    from cospeech.attention.kernels import gather

    plan = _plan(False)
    q, k, v = _qkv(plan, grad=True)
    ref = sparse_attention(q, k, v, plan, backend="dense")
    ref_grads = torch.autograd.grad(ref.sum(), (q, k, v))
    monkeypatch.setattr(gather, "CALL_BYTES", 1)  # one group per SDPA call: many tasks
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = sparse_attention(q, k, v, plan, backend="gather")
        grads = torch.autograd.grad(out.sum(), (q, k, v))
        with torch.no_grad():
            assert sparse_attention(q, k, v, plan, backend="gather").grad_fn is None
        with torch.inference_mode():
            inferred = sparse_attention(q, k, v, plan, backend="gather")
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(out, ref, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(inferred, ref.detach(), rtol=RTOL, atol=ATOL)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=RTOL, atol=1e-5)


def test_flex_compiled_cpu_matches_dense():
    """One compiled FlexAttention run (first compile takes ~20 s on 2 cores): an exact plan,
    so both full blocks and partial blocks with the mask_mod are exercised."""
    pytest.importorskip("torch.nn.attention.flex_attention")
    plan = _plan(True)
    assert (~plan.block_full).any() and plan.block_full.any()
    q, k, v = _qkv(plan)
    ref = sparse_attention(q, k, v, plan, backend="dense")
    out = sparse_attention(q, k, v, plan, backend="flex")
    torch.testing.assert_close(out, ref, rtol=RTOL, atol=ATOL)


@pytest.mark.skipif(
    not flashinfer_available(),
    reason="flashinfer backend needs the flashinfer package and a CUDA GPU "
    f"(CUDA: {torch.cuda.is_available()}, "
    f"flashinfer: {importlib.util.find_spec('flashinfer') is not None})",
)
@pytest.mark.parametrize("exact", [False, True])
def test_flashinfer_matches_dense(exact):
    plan = _plan(exact)
    q, k, v = (x.cuda().half() for x in _qkv(plan))
    ref = sparse_attention(q.float(), k.float(), v.float(), plan, backend="dense")
    out = sparse_attention(q, k, v, plan, backend="flashinfer")
    torch.testing.assert_close(out.float(), ref, rtol=2e-3, atol=2e-3)


def test_backend_resolution():
    assert resolve_backend("auto", "cpu") == "gather"
    assert resolve_backend("auto", "cuda") == "flex"
    with pytest.raises(InputError):
        resolve_backend("nope", "cpu")
    with pytest.raises(InputError):
        resolve_backend("flashinfer", "cpu")


def test_auto_on_cpu_is_gather_and_dense_plan_is_plain_attention():
    plan = SparsePlan.dense(40, block_size=16, num_frames=2)
    q, k, v = _qkv(plan)
    out = sparse_attention(q, k, v, plan)
    torch.testing.assert_close(
        out, torch.nn.functional.scaled_dot_product_attention(q, k, v), rtol=RTOL, atol=ATOL
    )


@pytest.mark.parametrize(
    "shapes",
    [
        [(2, 3, 100, 8)] * 3,  # length differs from the plan's 120
        [(3, 120, 8)] * 3,  # not 4D
        [(2, 3, 120, 8), (2, 3, 120, 4), (2, 3, 120, 8)],  # q/k head dims differ
        [(2, 3, 120, 8), (2, 2, 120, 8), (2, 3, 120, 8)],  # heads differ
    ],
)
def test_bad_tensor_shapes_raise(shapes):
    plan = _plan(False)
    q, k, v = (torch.zeros(s) for s in shapes)
    with pytest.raises(InputError):
        sparse_attention(q, k, v, plan, backend="gather")


def test_flex_cpu_rejects_what_it_cannot_run():
    plan = _plan(False)
    q, k, v = _qkv(plan, dtype=torch.float64)
    with pytest.raises(InputError):
        sparse_attention(q, k, v, plan, backend="flex")
    q, k, v = _qkv(plan, grad=True)
    with pytest.raises(InputError):
        sparse_attention(q, k, v, plan, backend="flex")


class _FakeBSRWrapper:
    """FlashInfer's documented BlockSparseAttentionWrapper semantics, computed densely: BSR
    block map (R x C blocks), optional per-block-pair mask ``[nnz, R, C]``, [L, H, D] layout."""

    def __init__(self, workspace):
        self.workspace = workspace

    def plan(self, indptr, indices, M, N, R, C, heads_q, heads_kv, head_dim, mask=None,
             sm_scale=None, q_data_type=None, kv_data_type=None, o_data_type=None):  # fmt: skip
        assert M % R == 0 and N % C == 0 and indptr.dtype == indices.dtype == torch.int32
        dense = torch.zeros(M, N, dtype=torch.bool)
        for row in range(M // R):
            for col in range(int(indptr[row]), int(indptr[row + 1])):
                block = indices[col]
                tile = torch.ones(R, C, dtype=torch.bool) if mask is None else mask[col]
                dense[row * R : (row + 1) * R, block * C : (block + 1) * C] = tile
        self.mask, self.scale = dense, sm_scale

    def run(self, q, k, v):
        scale = q.shape[-1] ** -0.5 if self.scale is None else self.scale
        logits = torch.einsum("qhd,khd->hqk", q.double(), k.double()) * scale
        probs = logits.masked_fill(~self.mask, -torch.inf).softmax(-1)
        return torch.einsum("hqk,khd->qhd", probs, v.double()).to(q.dtype)


@pytest.mark.parametrize("exact", [False, True])
def test_flashinfer_glue_against_documented_bsr_semantics(exact, monkeypatch):
    """Padding, layout, BSR arrays and block-pair masks of the flashinfer backend, run
    through a stand-in with FlashInfer's documented semantics (the real one needs CUDA)."""
    import sys
    import types

    from cospeech.attention.kernels import flashinfer_bsr

    fake = types.ModuleType("flashinfer")
    fake.sparse = types.SimpleNamespace(BlockSparseAttentionWrapper=_FakeBSRWrapper)
    monkeypatch.setitem(sys.modules, "flashinfer", fake)
    monkeypatch.setattr(flashinfer_bsr, "_workspace", lambda device: None)
    plan = _plan(exact)
    assert plan.num_tokens % plan.block_size  # exercises the padding
    q, k, v = (x.to(torch.bfloat16) for x in _qkv(plan))
    ref = sparse_attention(q.float(), k.float(), v.float(), plan, backend="dense")
    out = flashinfer_bsr.run(q, k, v, plan, None)
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-2)


def test_flashinfer_block_pair_masks_are_the_sorted_token_mask():
    from cospeech.attention.kernels.flashinfer_bsr import block_pair_masks

    plan = _plan(True)
    bs, length = plan.block_size, plan.num_tokens
    padded = torch.zeros(plan.num_blocks * bs, plan.num_blocks * bs, dtype=torch.bool)
    padded[:length, :length] = plan.sorted_token_mask()
    masks = block_pair_masks(plan, torch.device("cpu"))
    for n, (row, col) in enumerate(zip(plan.block_rows(), plan.kv_indices, strict=True)):
        tile = padded[row * bs : (row + 1) * bs, col * bs : (col + 1) * bs]
        valid_rows = torch.arange(row * bs, (row + 1) * bs) < length
        assert torch.equal(masks[n][valid_rows], tile[valid_rows])
