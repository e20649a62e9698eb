"""The number format the models run in at inference: one rule for every entry point.

``float32`` runs everything in full precision. ``bfloat16`` runs the matrix products and
convolutions of the DiT and the VAE in bfloat16 under :func:`torch.autocast` (norms,
softmax and the sampler's arithmetic stay float32; the DiT returns float32). ``auto`` picks
``bfloat16`` where the hardware computes it natively (a CUDA GPU that supports it, or a CPU
with the AVX-512 BF16 or AMX instructions, where oneDNN runs bfloat16 products faster than
float32 ones) and ``float32`` elsewhere (without those instructions bfloat16 is emulated,
slower than float32).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import torch

from cospeech.errors import InputError

PRECISIONS = ("auto", "float32", "bfloat16")
CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})  # /proc/cpuinfo names


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else InputError naming the flag."""
    if precision not in PRECISIONS:
        raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


@functools.cache
def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The instruction-set flags of the first CPU in ``cpuinfo`` (empty where there is no
    such file: not Linux)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 products natively (see the module docstring)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(CPU_BF16_FLAGS & cpu_flags())
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``float32`` or ``bfloat16``: ``precision`` itself, or for ``auto`` what ``device``
    runs fast (:func:`native_bfloat16`)."""
    check_precision(precision)
    if precision != "auto":
        return precision
    return "bfloat16" if native_bfloat16(device) else "float32"


@contextlib.contextmanager
def autocast_for(precision: str, device: torch.device) -> Iterator[None]:
    """Run the block in ``precision`` (a resolved one) on ``device``'s type. Enter it
    around the model calls only, never across a ``yield`` to a caller: autocast is state of
    the thread, and the caller's own torch code would run under it."""
    if precision == "float32":
        yield
        return
    if precision != "bfloat16":
        raise InputError(f"precision {precision!r} is not resolved (float32 or bfloat16)")
    with torch.autocast(device.type, dtype=torch.bfloat16):
        yield
