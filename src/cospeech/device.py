"""Which torch device to run on: one rule for every command and library entry point."""

from __future__ import annotations

import torch

from cospeech.errors import InputError


def resolve_device(
    name: str | torch.device | None = None, index: int = 0, flag: str = "--device"
) -> torch.device:
    """``name`` (``cpu``, ``cuda``, ``cuda:1``, ...) as a device; None picks ``cuda:index``
    when CUDA is available, else the CPU. An :class:`InputError` naming ``flag`` (the
    option the name came from) for a name torch does not know, or a CUDA device on a
    machine without CUDA."""
    if name is None:
        return torch.device(f"cuda:{index}" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise InputError(f"{flag} {name}: unknown device (use cpu or cuda)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"{flag} {name}: CUDA is not available on this machine (use {flag} cpu)")
    return device
