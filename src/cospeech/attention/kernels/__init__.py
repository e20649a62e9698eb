"""Block-sparse attention backends behind one entry point, :func:`sparse_attention`.

=============  ==========================================================  ===========
backend        what it runs                                                autograd
=============  ==========================================================  ===========
``dense``      SDPA + the plan's ``[L, L]`` boolean mask (the reference)   yes
``gather``     per group of query blocks: gather kept K/V blocks, SDPA     yes
``flex``       compiled FlexAttention, ``BlockMask`` from the block map    GPU only
``flashinfer`` FlashInfer ``BlockSparseAttentionWrapper`` (CUDA only)      no
=============  ==========================================================  ===========

``auto`` = ``flex`` on CUDA, ``gather`` elsewhere.
"""

from __future__ import annotations

import importlib
import importlib.util

import torch

from cospeech.attention.plan import SparsePlan
from cospeech.errors import InputError

BACKENDS = ("dense", "gather", "flex", "flashinfer")
_MODULES = {"dense": "dense", "gather": "gather", "flex": "flex", "flashinfer": "flashinfer_bsr"}


def flashinfer_available() -> bool:
    """True when the ``flashinfer`` package is importable and a CUDA GPU is present."""
    return torch.cuda.is_available() and importlib.util.find_spec("flashinfer") is not None


def resolve_backend(backend: str, device: torch.device | str) -> str:
    """``auto`` -> the default for ``device``; any other name is checked and returned."""
    device = torch.device(device)
    if backend == "auto":
        return "flex" if device.type == "cuda" else "gather"
    if backend not in BACKENDS:
        raise InputError(
            f"unknown attention backend {backend!r}; choose from auto, {', '.join(BACKENDS)}"
        )
    if backend == "flashinfer" and (device.type != "cuda" or not flashinfer_available()):
        raise InputError("the flashinfer backend needs the flashinfer package and CUDA tensors")
    return backend


def sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    plan: SparsePlan,
    backend: str = "auto",
    scale: float | None = None,
) -> torch.Tensor:
    """Attention of ``q, k, v [B, H, L, D]`` (original token order) under ``plan``.

    Returns ``[B, H, L, D]`` in original token order. Apply RoPE before calling: the
    region-sorting permutation is internal and exact. ``scale`` defaults to ``D ** -0.5``.
    """
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.ndim != 4:
            raise InputError(f"sparse attention: {name} must be [B, H, L, D], got {list(x.shape)}")
    if q.shape[:3] != k.shape[:3] or k.shape[:3] != v.shape[:3] or q.shape[-1] != k.shape[-1]:
        raise InputError(
            f"sparse attention: q, k, v shapes differ: "
            f"{list(q.shape)}, {list(k.shape)}, {list(v.shape)}"
        )
    plan.check_length(q.shape[2])
    name = resolve_backend(backend, q.device)
    module = importlib.import_module(f"{__name__}.{_MODULES[name]}")
    return module.run(q, k, v, plan, scale)
