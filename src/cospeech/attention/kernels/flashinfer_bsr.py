"""``flashinfer`` backend: FlashInfer's ``BlockSparseAttentionWrapper`` (CUDA only).

The plan's CSR block map is FlashInfer's BSR layout (``indptr``, ``indices``, R = C =
block size), one pattern shared by all heads, planned once on the host per (plan, heads,
head dim, dtype, scale) and cached. FlashInfer's key blocks are always whole, so the
sorted sequence is zero-padded to a multiple of the block size; when the sequence is
padded or the plan is ``exact``, a per-block-pair token mask ``[nnz, R, C]`` (padded keys
off; Eq. 3 inside partial blocks) goes to ``plan(mask=...)``. Inputs fp16/bf16, layout
``[L, H, D]`` per batch element; forward only.

Not testable on a machine without CUDA and the ``flashinfer-python`` package; the test
suite skips it there.
"""

from __future__ import annotations

import torch

from cospeech.attention.masks import pair_allowed
from cospeech.attention.plan import SparsePlan
from cospeech.errors import InputError

WORKSPACE_BYTES = 128 << 20
_WORKSPACES: dict[torch.device, torch.Tensor] = {}


def _workspace(device: torch.device) -> torch.Tensor:
    if device not in _WORKSPACES:
        _WORKSPACES[device] = torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device=device)
    return _WORKSPACES[device]


def block_pair_masks(plan: SparsePlan, device: torch.device) -> torch.Tensor:
    """``[nnz, R, C]`` bool: the token mask inside every kept block pair of the padded
    sorted sequence. Padded keys are off; padded query rows see the valid keys (their
    output is dropped, this only keeps their softmax finite)."""
    tensors = plan.on(device)
    bs, length = plan.block_size, plan.num_tokens
    offsets = torch.arange(bs, device=device)
    q_pos = plan.block_rows().to(device)[:, None] * bs + offsets  # [nnz, R]
    k_pos = tensors["kv_indices"][:, None] * bs + offsets  # [nnz, C]
    q_valid, k_valid = q_pos < length, k_pos < length
    allowed = k_valid[:, None, :].expand(-1, bs, -1)
    if plan.exact:
        f, reg = tensors["token_frame"], tensors["token_regions"]
        qc, kc = q_pos.clamp(max=length - 1), k_pos.clamp(max=length - 1)
        inside = pair_allowed(
            f[qc][:, :, None], reg[qc][:, :, None], f[kc][:, None, :], reg[kc][:, None, :],
            tensors["frame_mask"],
        )  # fmt: skip
        allowed = torch.where(q_valid[:, :, None], inside & allowed, allowed)
    return allowed.contiguous()


def _wrapper(plan: SparsePlan, q: torch.Tensor, scale: float | None):
    _, heads, _, head_dim = q.shape
    key = ("flashinfer", q.device, heads, head_dim, q.dtype, scale)

    def make():
        import flashinfer

        padded = plan.num_blocks * plan.block_size
        tensors = plan.on(q.device)
        mask = None
        if plan.exact or padded != plan.num_tokens:
            mask = block_pair_masks(plan, q.device)
        wrapper = flashinfer.sparse.BlockSparseAttentionWrapper(_workspace(q.device))
        wrapper.plan(
            tensors["kv_indptr"].to(torch.int32),
            tensors["kv_indices"].to(torch.int32),
            padded,
            padded,
            plan.block_size,
            plan.block_size,
            heads,
            heads,
            head_dim,
            mask=mask,
            sm_scale=scale,
            q_data_type=q.dtype,
            kv_data_type=q.dtype,
            o_data_type=q.dtype,
        )
        return wrapper

    return plan.cached(key, make)


def run(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: SparsePlan, scale: float | None
) -> torch.Tensor:
    """``[B, H, L, D]`` x3 (original token order, CUDA, fp16/bf16) -> ``[B, H, L, D]``."""
    if q.dtype not in (torch.float16, torch.bfloat16) or k.dtype != q.dtype or v.dtype != q.dtype:
        raise InputError(f"flashinfer backend: needs fp16 or bf16 q, k, v, got {q.dtype}")
    if v.shape[-1] != q.shape[-1]:
        raise InputError("flashinfer backend: value and query head dims must match")
    if torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v)):
        raise InputError("flashinfer backend: forward only; use gather or flex for training")
    wrapper = _wrapper(plan, q, scale)
    tensors = plan.on(q.device)
    pad = plan.num_blocks * plan.block_size - plan.num_tokens

    def to_rows(x: torch.Tensor) -> torch.Tensor:  # [B, H, L, D] -> [B, L_pad, H, D] sorted
        x = x.index_select(2, tensors["perm"])
        return torch.nn.functional.pad(x, (0, 0, 0, pad)).transpose(1, 2).contiguous()

    qs, ks, vs = to_rows(q), to_rows(k), to_rows(v)
    out = torch.stack([wrapper.run(qs[b], ks[b], vs[b]) for b in range(q.shape[0])])
    return out.transpose(1, 2)[:, :, : plan.num_tokens].index_select(2, tensors["inv_perm"])
