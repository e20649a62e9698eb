"""``dense`` backend: SDPA with the plan's boolean token mask -- the reference.

Materialises the ``[L, L]`` mask (cached per device), so it is for tests, small shapes
and as the ground truth the other backends are checked against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cospeech.attention.plan import SparsePlan


def run(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: SparsePlan, scale: float | None
) -> torch.Tensor:
    """``[B, H, L, D]`` x3 (original token order) -> ``[B, H, L, D]``."""
    mask = plan.cached(("dense_mask", q.device), lambda: plan.token_mask().to(q.device))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
