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

**Low-rank differences** (:func:`save_low_rank_delta`): a LoRA fine-tune merged into full
weights differs from its base by a low-rank matrix on each adapted linear layer, and may
change the architecture (a widened patch embedding). Per parameter, the file holds

- nothing when it equals the base's (same shape, bit-identical);
- ``<name>.up`` ``[out, r]`` and ``<name>.down`` ``[r, in]`` (float16, ``up @ down`` the
  difference) for a 2-D difference of rank ``r <= max_rank``: the smallest ``r`` whose
  truncated SVD leaves a residual below ``rtol`` (1e-3) of the difference's Frobenius norm;
- ``<name>.q`` / ``<name>.scale`` (the int8 difference above) for any other same-shape
  difference of 2 or more dimensions (a full-rank change is never truncated);
- ``<name>.full`` (float16, the new tensor) for a changed shape, a parameter the base
  lacks, or a changed 0-/1-D parameter (norms, biases: a few hundred values).

Metadata ``{"format": "cospeech-low-rank-delta"}``. The model's architecture is not in the
file: :func:`apply_low_rank_delta` builds it from the ``config.json`` next to the file,
copies the base's parameters of the same name and shape, then applies the file. Both
formats may name their base folder in the metadata (``"base"``, :func:`delta_base`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from cospeech.atomic import atomic_path
from cospeech.errors import CheckpointError
from cospeech.models.checkpoint import _assign, read_config
from cospeech.models.dit import VideoDiT

DELTA_FORMAT = "cospeech-int8-delta"
LOW_RANK_FORMAT = "cospeech-low-rank-delta"
LEVELS = 127
RANK_RTOL = 1e-3
FORMAT_NAMES = {DELTA_FORMAT: "cospeech int8 weight delta",
                LOW_RANK_FORMAT: "cospeech low-rank weight delta"}  # fmt: skip
STORAGE_KEYS = {"low-rank": ("up", "down"), "int8": ("q", "scale"), "full": ("full",)}
"""The tensors a low-rank delta file holds per parameter, by how it is stored."""


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


def save_weight_delta(
    model: nn.Module, base: nn.Module, path: str | Path, base_dir: str | None = None
) -> float:
    """Write ``model``'s parameters as an int8 difference to ``base``'s (same names and
    shapes) to ``path`` atomically; returns the largest element error of the stored model.
    ``base_dir``: the base's folder name, kept in the metadata (:func:`delta_base`)."""
    base_params = dict(base.named_parameters())
    tensors: dict[str, Tensor] = {}
    worst = 0.0
    for name, weight in model.named_parameters():
        reference = base_params.get(name)
        if reference is None or reference.shape != weight.shape:
            raise CheckpointError(
                f"weight delta: base has no parameter {name} of {list(weight.shape)}"
            )
        error = _store_int8(tensors, name, _difference(weight, reference))
        worst = max(worst, error)
    _write_delta(tensors, path, DELTA_FORMAT, base_dir)
    return worst


def _difference(weight: Tensor, reference: Tensor) -> Tensor:
    return weight.detach().float().cpu() - reference.detach().float().cpu()


def _store_int8(tensors: dict[str, Tensor], name: str, delta: Tensor) -> float:
    """Put ``delta``'s int8 form under ``<name>.q`` / ``<name>.scale``; its largest error."""
    q, scale = quantise_delta(delta)
    tensors[f"{name}.q"], tensors[f"{name}.scale"] = q.contiguous(), scale.contiguous()
    return float((dequantise_delta(q, scale) - delta).abs().max())


def _write_delta(
    tensors: dict[str, Tensor], path: str | Path, fmt: str, base_dir: str | None
) -> None:
    metadata = {"format": fmt} | ({"base": base_dir} if base_dir is not None else {})
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def _read_delta(path: str | Path, fmt: str) -> dict[str, Tensor]:
    """The tensors of delta file ``path`` of format ``fmt`` (CheckpointError otherwise)."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            if (handle.metadata() or {}).get("format") != fmt:
                raise CheckpointError(f"{path}: not a {FORMAT_NAMES[fmt]}")
            return {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: unreadable weight delta ({exc})") from None


def delta_base(path: str | Path) -> str | None:
    """The base folder named in delta file ``path``'s metadata (None when it names none,
    as the int8 student deltas shipped before the field existed)."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return (handle.metadata() or {}).get("base")
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: unreadable weight delta ({exc})") from None


def _report_problems(path: str | Path, problems: list[str]) -> None:
    if problems:
        listed = ", ".join(problems[:8]) + (" ..." if len(problems) > 8 else "")
        raise CheckpointError(f"{path}: the weight delta does not fit the base model: {listed}")


def apply_weight_delta(base: nn.Module, path: str | Path) -> nn.Module:
    """Add the difference stored in ``path`` to ``base``'s parameters in place; returns
    ``base``. :class:`CheckpointError` if the file is not a delta or does not fit."""
    stored = _read_delta(path, DELTA_FORMAT)
    params = dict(base.named_parameters())
    names = {key.rsplit(".", 1)[0] for key in stored}
    problems = [f"missing {n}" for n in sorted(set(params) - names)]
    problems += [f"unexpected {n}" for n in sorted(names - set(params))]
    for name in sorted(names & set(params)):
        q, scale = stored.get(f"{name}.q"), stored.get(f"{name}.scale")
        if q is None or scale is None or q.shape != params[name].shape or q.dtype != torch.int8:
            problems.append(f"bad {name}")
    _report_problems(path, problems)
    with torch.no_grad():
        for name, param in params.items():
            delta = dequantise_delta(stored[f"{name}.q"], stored[f"{name}.scale"])
            param.add_(delta.to(device=param.device, dtype=param.dtype))
    return base


class LowRankSummary(TypedDict):
    """What :func:`save_low_rank_delta` wrote: ``max_error``, the largest element error of
    the stored model; ``stored``, how each stored parameter is kept (``"low-rank"``,
    ``"int8"`` or ``"full"``; unchanged ones are absent); ``ranks``, the rank of each
    low-rank one."""

    max_error: float
    stored: dict[str, str]
    ranks: dict[str, int]


def save_low_rank_delta(
    model: VideoDiT,
    base: VideoDiT,
    path: str | Path,
    max_rank: int,
    base_dir: str | None = None,
    rtol: float = RANK_RTOL,
) -> LowRankSummary:
    """Write ``model`` as a low-rank difference to ``base`` (module docstring) to ``path``
    atomically. ``max_rank``: the largest rank stored as factors (the LoRA rank);
    ``rtol``: the truncated SVD's largest relative residual (Frobenius) counted as
    rank ``r``; ``base_dir``: the base's folder name, kept in the metadata. The loader
    also needs ``model.config`` as ``config.json`` next to the file."""
    if max_rank < 1:
        raise CheckpointError(f"low-rank delta: max_rank must be >= 1, got {max_rank}")
    base_params = dict(base.named_parameters())
    tensors: dict[str, Tensor] = {}
    summary = LowRankSummary(max_error=0.0, stored={}, ranks={})
    for name, weight in model.named_parameters():
        reference = base_params.get(name)
        if reference is None or reference.shape != weight.shape:
            kind, error = "full", _store_full(tensors, name, weight)
        else:
            delta = _difference(weight, reference)
            if not delta.any():
                continue
            factors = _low_rank_factors(delta, max_rank, rtol) if delta.dim() == 2 else None
            if factors is not None:
                kind, error = "low-rank", _store_factors(tensors, name, delta, *factors)
                summary["ranks"][name] = factors[0].shape[1]
            elif delta.dim() >= 2:
                kind, error = "int8", _store_int8(tensors, name, delta)
            else:
                kind, error = "full", _store_full(tensors, name, weight)
        summary["stored"][name] = kind
        summary["max_error"] = max(summary["max_error"], error)
    _write_delta(tensors, path, LOW_RANK_FORMAT, base_dir)
    return summary


def _low_rank_factors(delta: Tensor, max_rank: int, rtol: float) -> tuple[Tensor, Tensor] | None:
    """``delta`` ``[out, in]`` as ``up [out, r] @ down [r, in]`` (float64, the singular
    values split evenly between the two) for the smallest ``r <= max_rank`` whose
    truncated SVD leaves a Frobenius residual below ``rtol * ||delta||``; None if none."""
    u, s, vh = torch.linalg.svd(delta.double(), full_matrices=False)
    tail = s.flip(0).square().cumsum(0).flip(0).sqrt()  # tail[r] = ||s[r:]||
    limit = rtol * float(tail[0])
    ranks = [r for r in range(1, min(max_rank, s.numel()) + 1)
             if r == s.numel() or float(tail[r]) <= limit]  # fmt: skip
    if not ranks:
        return None
    r = ranks[0]
    root = s[:r].sqrt()
    return u[:, :r] * root, root[:, None] * vh[:r]


def _store_factors(
    tensors: dict[str, Tensor], name: str, delta: Tensor, up: Tensor, down: Tensor
) -> float:
    """Put the float16 factors under ``<name>.up`` / ``<name>.down``; their largest error."""
    up16, down16 = up.half().contiguous(), down.half().contiguous()
    tensors[f"{name}.up"], tensors[f"{name}.down"] = up16, down16
    return float((up16.float() @ down16.float() - delta).abs().max())


def _store_full(tensors: dict[str, Tensor], name: str, weight: Tensor) -> float:
    """Put ``weight`` in float16 under ``<name>.full``; its largest error."""
    stored = weight.detach().cpu().half().contiguous()
    tensors[f"{name}.full"] = stored
    return float((stored.float() - weight.detach().float().cpu()).abs().max())


def apply_low_rank_delta(base: VideoDiT, path: str | Path) -> VideoDiT:
    """The model stored in low-rank delta file ``path`` (:func:`save_low_rank_delta`) on
    top of ``base``: built from the ``config.json`` beside the file, on ``base``'s device
    and dtype (``base`` itself is left as it was). :class:`CheckpointError` (one line
    listing what differs) if the file is not such a delta or does not fit ``base``."""
    path = Path(path)
    stored = _read_delta(path, LOW_RANK_FORMAT)
    with torch.device("meta"):
        target = type(base)(read_config(path.parent))
    kinds = _stored_kinds(path, stored, dict(target.named_parameters()), base)
    reference = next(base.parameters())
    base_params = dict(base.named_parameters())
    for name, _ in list(target.named_parameters()):
        value = _rebuilt(stored, name, kinds.get(name), base_params.get(name))
        value = value.to(device=reference.device, dtype=reference.dtype)
        _assign(target, name, value)  # keeps the parameter's requires_grad
    return target.train(base.training)


def _stored_kinds(
    path: Path, stored: dict[str, Tensor], target: dict[str, nn.Parameter], base: nn.Module
) -> dict[str, str]:
    """How each parameter of ``stored`` is kept; CheckpointError listing every parameter
    of ``target`` the file and ``base`` cannot give, and every malformed entry."""
    by_name: dict[str, set[str]] = {}
    for key in stored:
        name, _, suffix = key.rpartition(".")
        by_name.setdefault(name, set()).add(suffix)
    kinds = {n: k for n, s in by_name.items() for k, keys in STORAGE_KEYS.items() if s == set(keys)}
    problems = [f"bad {n} ({sorted(s)})" for n, s in sorted(by_name.items()) if n not in kinds]
    problems += [f"unexpected {n}" for n in sorted(set(kinds) - set(target))]
    base_params = dict(base.named_parameters())
    for name, param in target.items():
        kind, reference = kinds.get(name), base_params.get(name)
        if kind != "full" and (reference is None or reference.shape != param.shape):
            problems.append(f"missing {name}")
        elif kind is not None and _stored_shape(stored, name, kind) != param.shape:
            problems.append(f"bad {name}")
    _report_problems(path, problems)
    return kinds


def _stored_shape(stored: dict[str, Tensor], name: str, kind: str) -> torch.Size | None:
    """The shape of the parameter ``name`` as kept by ``kind``; None if malformed."""
    if kind == "low-rank":
        up, down = stored[f"{name}.up"], stored[f"{name}.down"]
        if up.dim() != 2 or down.dim() != 2 or up.shape[1] != down.shape[0]:
            return None
        return torch.Size([up.shape[0], down.shape[1]])
    if kind == "int8":
        q, scale = stored[f"{name}.q"], stored[f"{name}.scale"]
        rows = q.shape[0] if q.dim() > 1 else 1
        return q.shape if q.dtype == torch.int8 and scale.shape == (rows,) else None
    return stored[f"{name}.full"].shape


def _rebuilt(
    stored: dict[str, Tensor], name: str, kind: str | None, reference: Tensor | None
) -> Tensor:
    """The float32 value of parameter ``name``: the base's plus the stored difference, or
    the stored full tensor (``kind`` None: unchanged)."""
    if kind == "full":
        return stored[f"{name}.full"].float()
    assert reference is not None  # checked by _stored_kinds
    value = reference.detach().float().cpu().clone()
    if kind == "low-rank":
        value += stored[f"{name}.up"].float() @ stored[f"{name}.down"].float()
    elif kind == "int8":
        value += dequantise_delta(stored[f"{name}.q"], stored[f"{name}.scale"])
    return value
