"""Self- and cross-attention of the video DiT, and the ways self-attention can run.

Self-attention modes (one :class:`AttentionLayout` per forward, shared by all layers):

- ``full``: every token attends every token (bidirectional, the Wan teacher).
- ``causal``: block-causal over chunks of ``chunk_frames`` latent frames: a token attends
  its own chunk and all earlier chunks. Computed chunk by chunk with SDPA on the key prefix
  (no ``[L, L]`` mask is built), exactly what chunked generation with a KV cache computes.
- ``sparse``: the input-aware mask of a :class:`~cospeech.attention.SparsePlan`, run by
  :func:`~cospeech.attention.sparse_attention` on RoPE-rotated q/k (the plan permutes
  tokens by region, runs its block-sparse backend and un-permutes).
- ``cached``: the input is one chunk; it attends itself and every chunk held by a
  :class:`~cospeech.models.kv_cache.KVCache` (and stages its own keys/values for commit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from cospeech.models.kv_cache import KVCache
from cospeech.models.layers import RMSNorm
from cospeech.models.rope import apply_rope

if TYPE_CHECKING:
    from cospeech.attention import SparsePlan


@dataclass
class AttentionLayout:
    """How self-attention runs in one forward (shared by all blocks).

    ``cos_q``/``sin_q`` ``[L, head_dim/2]`` rotate the input tokens (queries and keys);
    ``cos_k``/``sin_k`` rotate the keys: the same tokens, or in ``cached`` mode the cached
    tokens (whose positions precede the input's).
    ``chunk_tokens`` is the token count of one causal chunk (``causal`` mode).
    """

    mode: str
    cos_q: torch.Tensor
    sin_q: torch.Tensor
    cos_k: torch.Tensor
    sin_k: torch.Tensor
    chunk_tokens: int = 0
    plan: SparsePlan | None = None
    sparse_backend: str = "auto"
    cache: KVCache | None = None


def dense_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """SDPA over ``[B, L, H, D]`` tensors (keys may be longer than queries) -> ``[B, Lq, H, D]``."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)


def block_causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk_tokens: int
) -> torch.Tensor:
    """Chunk ``c`` of queries attends keys ``[0, end of chunk c)``; ``[B, L, H, D]`` in and out."""
    length = q.shape[1]
    outputs = []
    for start in range(0, length, chunk_tokens):
        stop = min(start + chunk_tokens, length)
        outputs.append(dense_attention(q[:, start:stop], k[:, :stop], v[:, :stop]))
    return torch.cat(outputs, dim=1)


def plan_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: SparsePlan, backend: str
) -> torch.Tensor:
    """Input-aware sparse attention through ``plan``; ``[B, L, H, D]`` in and out."""
    from cospeech.attention import sparse_attention

    out = sparse_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), plan, backend=backend
    )
    return out.transpose(1, 2)


class SelfAttention(nn.Module):
    """Wan self-attention: q/k/v/o with bias, RMSNorm on q and k over the full dim, 3D RoPE."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool, eps: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k = RMSNorm(dim, eps) if qk_norm else nn.Identity()

    def forward(self, x: torch.Tensor, layout: AttentionLayout, layer: int) -> torch.Tensor:
        """``x`` ``[B, L, dim]`` -> ``[B, L, dim]``."""
        heads = (self.num_heads, -1)
        q = self.norm_q(self.q(x)).unflatten(2, heads)
        k = self.norm_k(self.k(x)).unflatten(2, heads)
        v = self.v(x).unflatten(2, heads)
        q = apply_rope(q, layout.cos_q, layout.sin_q)
        if layout.cache is None:
            k = apply_rope(k, layout.cos_k, layout.sin_k)
        else:
            past = layout.cache.past(layer)
            layout.cache.stage(layer, k, v)
            k = apply_rope(k, layout.cos_q, layout.sin_q)
            if past is not None:
                cached = past[0].shape[1]
                past_keys = layout.cache.rotated_keys(
                    layer,
                    lambda keys: apply_rope(keys, layout.cos_k[:cached], layout.sin_k[:cached]),
                )
                k = torch.cat([past_keys, k], dim=1)
                v = torch.cat([past[1], v], dim=1)
        if layout.mode == "causal":
            out = block_causal_attention(q, k, v, layout.chunk_tokens)
        elif layout.mode == "sparse":
            assert layout.plan is not None
            out = plan_attention(q, k, v, layout.plan, layout.sparse_backend)
        else:
            out = dense_attention(q, k, v)
        return self.o(out.flatten(2))


class CrossAttention(nn.Module):
    """Attention from video tokens to text tokens and/or CLIP image tokens.

    Text uses ``k``, ``v``, ``norm_k``; image tokens their own ``k_img``, ``v_img``,
    ``norm_k_img``; the two attention outputs are summed before ``o``. Only the paths the
    config has exist.
    """

    def __init__(
        self, dim: int, num_heads: int, qk_norm: bool, eps: float, text: bool, image: bool
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        if text:
            self.k = nn.Linear(dim, dim)
            self.v = nn.Linear(dim, dim)
            self.norm_k = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        if image:
            self.k_img = nn.Linear(dim, dim)
            self.v_img = nn.Linear(dim, dim)
            self.norm_k_img = RMSNorm(dim, eps) if qk_norm else nn.Identity()

    def forward(
        self, x: torch.Tensor, text: torch.Tensor | None, image: torch.Tensor | None
    ) -> torch.Tensor:
        """``x`` ``[B, L, dim]``, ``text`` ``[B, Lt, dim]``, ``image`` ``[B, Li, dim]``."""
        heads = (self.num_heads, -1)
        q = self.norm_q(self.q(x)).unflatten(2, heads)
        out = torch.zeros_like(q)
        if text is not None:
            k = self.norm_k(self.k(text)).unflatten(2, heads)
            out = out + dense_attention(q, k, self.v(text).unflatten(2, heads))
        if image is not None:
            k = self.norm_k_img(self.k_img(image)).unflatten(2, heads)
            out = out + dense_attention(q, k, self.v_img(image).unflatten(2, heads))
        return self.o(out.flatten(2))
