"""Self- and cross-attention of the video DiT, and the ways self-attention can run.

Self-attention modes (one :class:`AttentionLayout` per forward, shared by all layers):

- ``full``: every token attends every token (bidirectional, the Wan teacher).
- ``causal``: block-causal over chunks of ``chunk_frames`` latent frames: a token attends
  its own chunk and all earlier chunks. Computed chunk by chunk with SDPA on the key prefix
  (no ``[L, L]`` mask is built), exactly what chunked generation with a KV cache computes.
- ``sparse``: the input-aware mask of a :class:`~cospeech.attention.SparsePlan`, run by
  :func:`~cospeech.attention.sparse_attention` on RoPE-rotated q/k (the plan permutes
  tokens by region, runs its block-sparse backend and un-permutes). One plan per batch
  element: samples that share a plan run together, the others one plan at a time.
- ``cached``: the input is one chunk; it attends itself and every chunk held by a
  :class:`~cospeech.models.kv_cache.KVCache` (and stages its own keys/values for commit).
  With plans (``chunk_masks``), the chunk's queries attend only what the plan's exact
  mask allows among the cached frames and the chunk's own frames (one masked SDPA: a
  chunk's mask is small, and one call is several times faster on a CPU than one unmasked
  call per region segment).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from cospeech.models.kv_cache import KVCache
from cospeech.models.layers import RMSNorm, to_weight_dtype
from cospeech.models.rope import apply_rope

if TYPE_CHECKING:
    from cospeech.attention import SparsePlan


ItemT = TypeVar("ItemT")


@dataclass
class AttentionLayout:
    """How self-attention runs in one forward (shared by all blocks).

    ``freqs_q`` ``[L, head_dim/2]`` (complex, :func:`~cospeech.models.rope.rope_freqs`)
    rotates the input tokens (queries and keys); ``freqs_k`` the keys: the same tokens, or
    in ``cached`` mode the cached tokens (whose positions precede the input's).
    ``chunk_tokens`` is the token count of one causal chunk (``causal`` mode).
    ``plans``: ``sparse`` mode, one plan per batch element. ``chunk_masks``: ``cached``
    mode with plans, per batch element the ``[Lq, Lk]`` bool mask of
    :meth:`SparsePlan.chunk_mask` (keys = cached frames, then the chunk's).
    """

    mode: str
    freqs_q: torch.Tensor
    freqs_k: torch.Tensor
    chunk_tokens: int = 0
    plans: Sequence[SparsePlan] = ()
    sparse_backend: str = "auto"
    cache: KVCache | None = None
    chunk_masks: Sequence[torch.Tensor] = ()
    dtype: torch.dtype = torch.float32


def attention_dtype(weight_dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """The dtype attention runs in: the weights' on a GPU (its flash kernels need 16-bit
    inputs), float32 on a CPU, whose SDPA is no faster in bfloat16 (measured on the demo
    sizes, docs/generate.md) and where float32 saves the casts around the float32 RoPE."""
    return torch.float32 if device.type == "cpu" else weight_dtype


def dense_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """SDPA over ``[B, L, H, D]`` tensors (keys may be longer than queries) -> ``[B, Lq, H, D]``;
    ``mask`` ``[Lq, Lk]`` bool: which keys each query attends (None: all)."""
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask
    )
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


def per_sample(
    items: Sequence[ItemT],
    device: torch.device,
    run: Callable[[slice | torch.Tensor, ItemT], torch.Tensor],
) -> torch.Tensor:
    """``run(batch_index, item)`` for each distinct item (by identity) of a per-sample list,
    on the batch elements that hold it; outputs put back in batch order ``[B, ...]``."""
    if all(item is items[0] for item in items):
        return run(slice(None), items[0])
    members: dict[int, list[int]] = {}
    for b, item in enumerate(items):
        members.setdefault(id(item), []).append(b)
    outputs, order = [], []
    for indices in members.values():
        index = torch.tensor(indices, device=device)
        outputs.append(run(index, items[indices[0]]))
        order += indices
    inverse = torch.empty(len(order), dtype=torch.int64, device=device)
    inverse[torch.tensor(order, device=device)] = torch.arange(len(order), device=device)
    return torch.cat(outputs, dim=0).index_select(0, inverse)


def plan_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    plans: Sequence[SparsePlan],
    backend: str,
) -> torch.Tensor:
    """Input-aware sparse attention, sample ``b`` through ``plans[b]``; ``[B, L, H, D]``."""
    from cospeech.attention import sparse_attention

    def run(index: slice | torch.Tensor, plan: SparsePlan) -> torch.Tensor:
        qb, kb, vb = (x[index].transpose(1, 2) for x in (q, k, v))
        return sparse_attention(qb, kb, vb, plan, backend=backend).transpose(1, 2)

    return per_sample(plans, q.device, run)


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
        """``x`` ``[B, L, dim]`` float32 -> ``[B, L, dim]`` in the weights' dtype. q/k norms and
        RoPE run in float32, the attention in ``layout.dtype``."""
        heads = (self.num_heads, -1)
        x = to_weight_dtype(x, self.q)
        q = self.norm_q(self.q(x).float()).unflatten(2, heads)
        k = self.norm_k(self.k(x).float()).unflatten(2, heads)
        v = self.v(x).to(layout.dtype).unflatten(2, heads)
        q = apply_rope(q, layout.freqs_q).to(layout.dtype)
        if layout.cache is None:
            k = apply_rope(k, layout.freqs_k).to(layout.dtype)
        else:
            past = layout.cache.past(layer)
            layout.cache.stage(layer, k, v)
            k = apply_rope(k, layout.freqs_q).to(layout.dtype)
            if past is not None:
                cached = past[0].shape[1]
                past_keys = layout.cache.rotated_keys(
                    layer,
                    lambda keys: apply_rope(keys, layout.freqs_k[:cached]).to(layout.dtype),
                )
                k = torch.cat([past_keys, k], dim=1)
                v = torch.cat([past[1], v], dim=1)
        if layout.mode == "causal":
            out = block_causal_attention(q, k, v, layout.chunk_tokens)
        elif layout.mode == "sparse":
            out = plan_attention(q, k, v, layout.plans, layout.sparse_backend)
        elif layout.chunk_masks:
            out = per_sample(
                layout.chunk_masks,
                q.device,
                lambda index, mask: dense_attention(q[index], k[index], v[index], mask),
            )
        else:
            out = dense_attention(q, k, v)
        return self.o(to_weight_dtype(out.flatten(2), self.o))


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
        self,
        x: torch.Tensor,
        text: torch.Tensor | None,
        image: torch.Tensor | None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """``x`` ``[B, L, dim]`` float32, ``text`` ``[B, Lt, dim]``, ``image`` ``[B, Li, dim]``
        -> ``[B, L, dim]`` in the weights' dtype; the attention in ``dtype``
        (:attr:`AttentionLayout.dtype`)."""
        heads = (self.num_heads, -1)
        q = self.norm_q(self.q(to_weight_dtype(x, self.q)).float()).to(dtype).unflatten(2, heads)
        out = torch.zeros_like(q)
        if text is not None:
            out = out + self._attend(q, text, self.k, self.v, self.norm_k)
        if image is not None:
            out = out + self._attend(q, image, self.k_img, self.v_img, self.norm_k_img)
        return self.o(to_weight_dtype(out.flatten(2), self.o))

    def _attend(
        self,
        q: torch.Tensor,
        tokens: torch.Tensor,
        key: nn.Linear,
        value: nn.Linear,
        norm: nn.Module,
    ) -> torch.Tensor:
        """``q`` ``[B, L, H, D]`` attends ``tokens`` ``[B, Lt, dim]`` through ``key``,
        ``value`` and ``norm`` (in ``q``'s dtype) -> ``[B, L, H, D]``."""
        heads = (self.num_heads, -1)
        tokens = to_weight_dtype(tokens, key)
        k = norm(key(tokens).float()).to(q.dtype).unflatten(2, heads)
        return dense_attention(q, k, value(tokens).to(q.dtype).unflatten(2, heads))
