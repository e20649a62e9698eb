"""A fine-tuned model stored as an 8-bit difference to the model it started from.

A distilled student starts as a copy of its teacher and moves little; shipped next to the
teacher, it costs a quarter of its float32 size (half of float16) as a difference. Each
floating parameter ``w`` is stored against the base parameter ``b`` as

    q = round((w - b) / s),  int8 in [-127, 127],  s = max |w - b| / 127

with one scale ``s`` per output row (the first dimension; one per tensor for 0-d and 1-d
tensors). Loading adds ``q * s`` to the base, so every element is within ``s / 2`` of the
fine-tuned weight (:func:`delta_error` reports the largest such error when saving). The
base must be exactly what loading will use (e.g. the float16 teacher cast to float32), or
the difference does not hold.

File: safetensors with ``<name>.q`` (int8) and ``<name>.scale`` (float32) per parameter and
metadata ``{"format": "cospeech-int8-delta"}``. Loading checks that the file and the base
model name the same parameters with the same shapes (one :class:`CheckpointError` listing
what differs); nothing is unpickled.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from cospeech.atomic import atomic_path
from cospeech.errors import CheckpointError

DELTA_FORMAT = "cospeech-int8-delta"
LEVELS = 127


def quantise_delta(delta: Tensor) -> tuple[Tensor, Tensor]:
    """``delta`` (float) -> (int8 ``q`` of its shape, float32 ``scale`` ``[rows]`` or ``[1]``)
    with ``q * scale`` within ``scale / 2`` of ``delta`` element-wise."""
    rows = delta.detach().float().reshape(delta.shape[0] if delta.dim() > 1 else 1, -1)
    scale = rows.abs().amax(dim=1) / LEVELS
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(rows / safe[:, None]).clamp(-LEVELS, LEVELS).to(torch.int8)
    return q.reshape(delta.shape), scale


def dequantise_delta(q: Tensor, scale: Tensor) -> Tensor:
    """The float32 difference stored as ``q`` int8 and ``scale`` (see :func:`quantise_delta`)."""
    rows = q.float().reshape(scale.shape[0], -1)
    return (rows * scale[:, None]).reshape(q.shape)


def save_weight_delta(model: nn.Module, base: nn.Module, path: str | Path) -> float:
    """Write ``model``'s parameters as an int8 difference to ``base``'s (same names and
    shapes) to ``path`` atomically; returns the largest element error of the stored model."""
    base_params = dict(base.named_parameters())
    tensors: dict[str, Tensor] = {}
    worst = 0.0
    for name, weight in model.named_parameters():
        reference = base_params.get(name)
        if reference is None or reference.shape != weight.shape:
            raise CheckpointError(
                f"weight delta: base has no parameter {name} of {list(weight.shape)}"
            )
        delta = weight.detach().float().cpu() - reference.detach().float().cpu()
        q, scale = quantise_delta(delta)
        tensors[f"{name}.q"], tensors[f"{name}.scale"] = q.contiguous(), scale.contiguous()
        worst = max(worst, float((dequantise_delta(q, scale) - delta).abs().max()))
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": DELTA_FORMAT})
    return worst


def apply_weight_delta(base: nn.Module, path: str | Path) -> nn.Module:
    """Add the difference stored in ``path`` to ``base``'s parameters in place; returns
    ``base``. :class:`CheckpointError` if the file is not a delta or does not fit."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            if (handle.metadata() or {}).get("format") != DELTA_FORMAT:
                raise CheckpointError(f"{path}: not a cospeech int8 weight delta")
            stored = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: unreadable weight delta ({exc})") from None
    params = dict(base.named_parameters())
    names = {key.rsplit(".", 1)[0] for key in stored}
    problems = [f"missing {n}" for n in sorted(set(params) - names)]
    problems += [f"unexpected {n}" for n in sorted(names - set(params))]
    for name in sorted(names & set(params)):
        q, scale = stored.get(f"{name}.q"), stored.get(f"{name}.scale")
        if q is None or scale is None or q.shape != params[name].shape or q.dtype != torch.int8:
            problems.append(f"bad {name}")
    if problems:
        listed = ", ".join(problems[:8]) + (" ..." if len(problems) > 8 else "")
        raise CheckpointError(f"{path}: the weight delta does not fit the base model: {listed}")
    with torch.no_grad():
        for name, param in params.items():
            delta = dequantise_delta(stored[f"{name}.q"], stored[f"{name}.scale"])
            param.add_(delta.to(device=param.device, dtype=param.dtype))
    return base
