"""``flex`` backend: compiled PyTorch FlexAttention with a ``BlockMask`` from the plan.

The block map goes in as-is (``BlockMask.from_kv_blocks``): full block pairs as
``full_kv_*`` (no per-token work), partial pairs of an ``exact`` plan as ``kv_*`` with a
``mask_mod`` that rebuilds Eq. 3 from the sorted tokens' frames and region bitmasks. With
``exact=False`` every kept pair is computed fully, as the paper's pooling does.

FlexAttention only skips work when compiled (eager materialises the full score matrix),
so the compiled function is built once per process and reused. On CPU it runs forward
only (PyTorch has no CPU backward for it); the GPU default backend.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from cospeech.attention.plan import SparsePlan
from cospeech.errors import InputError

CPU_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_COMPILED: dict[str, Callable[..., torch.Tensor]] = {}


def _compiled_flex() -> Callable[..., torch.Tensor]:
    if "flex" not in _COMPILED:
        from torch.nn.attention.flex_attention import flex_attention

        _COMPILED["flex"] = torch.compile(flex_attention, dynamic=False)
    return _COMPILED["flex"]


def _padded_rows(
    rows: torch.Tensor, cols: torch.Tensor, num_blocks: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """CSR (row of each entry, column) -> ``num [1, 1, QB]`` int32, ``indices [1, 1, QB, KB]``."""
    num = torch.bincount(rows, minlength=num_blocks)
    indices = torch.zeros(num_blocks, num_blocks, dtype=torch.int32)
    if len(rows):
        start = torch.cumsum(num, 0) - num
        slot = torch.arange(len(rows)) - start[rows]
        indices[rows, slot] = cols.to(torch.int32)
    return num.to(torch.int32)[None, None], indices[None, None]


def block_mask(plan: SparsePlan, device: torch.device):
    """The plan as a FlexAttention ``BlockMask`` on ``device`` (cached per plan)."""

    def make():
        from torch.nn.attention.flex_attention import BlockMask

        rows, cols = plan.block_rows(), plan.kv_indices
        nb = plan.num_blocks
        partial = ~plan.block_full if plan.exact else torch.zeros_like(plan.block_full)
        kv_num, kv_idx = _padded_rows(rows[partial], cols[partial], nb)
        full_num, full_idx = _padded_rows(rows[~partial], cols[~partial], nb)
        tensors = plan.on(device)
        frame, regions = tensors["token_frame"], tensors["token_regions"]
        fmask = tensors["frame_mask"]

        def mask_mod(b, h, q_idx, kv_idx_):
            fq, fk = frame[q_idx], frame[kv_idx_]
            return (fq == fk) | (fmask[fq, fk] & ((regions[q_idx] & regions[kv_idx_]) != 0))

        return BlockMask.from_kv_blocks(
            kv_num.to(device),
            kv_idx.to(device),
            full_num.to(device),
            full_idx.to(device),
            BLOCK_SIZE=plan.block_size,
            mask_mod=mask_mod,
            seq_lengths=(plan.num_tokens, plan.num_tokens),
        )

    return plan.cached(("flex_block_mask", device), make)


def run(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: SparsePlan, scale: float | None
) -> torch.Tensor:
    """``[B, H, L, D]`` x3 (original token order) -> ``[B, H, L, D]``."""
    if q.device.type == "cpu":
        if q.dtype not in CPU_DTYPES:
            raise InputError(f"flex backend on CPU: needs float32/float16/bfloat16, got {q.dtype}")
        if torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v)):
            raise InputError("flex backend on CPU: forward only; use gather for gradients")
    perm = plan.on(q.device)["perm"]
    inv_perm = plan.on(q.device)["inv_perm"]
    qs, ks, vs = (x.index_select(2, perm) for x in (q, k, v))
    out = _compiled_flex()(qs, ks, vs, block_mask=block_mask(plan, q.device), scale=scale)
    return out.index_select(2, inv_perm)
