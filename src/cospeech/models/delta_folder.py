"""DiT folders stored as a weight difference to a sibling base folder, and loading any DiT
folder (full weights or a difference, chains included) as float32.

A folder holding :data:`DELTA_NAME` (int8 rows, :func:`.weight_delta.save_weight_delta`)
or :data:`LOW_RANK_DELTA_NAME` (low-rank factors, :func:`.weight_delta.save_low_rank_delta`)
instead of weights is its base plus that difference; the base is the sibling folder the
file's metadata names (``"base"``), ``teacher/`` when it names none (the first shipped
students), and may itself be such a folder.
"""

from __future__ import annotations

from pathlib import Path

import torch

from cospeech.errors import CheckpointError
from cospeech.models.checkpoint import CONFIG_NAME, read_config
from cospeech.models.dit import VideoDiT
from cospeech.models.weight_delta import apply_low_rank_delta, apply_weight_delta, delta_base
from cospeech.shipped import TEACHER_DIR

DELTA_NAME = "delta.safetensors"
LOW_RANK_DELTA_NAME = "lowrank_delta.safetensors"
DEFAULT_DELTA_BASE = TEACHER_DIR  # the base of a delta that names none (older students)


def load_dit(folder: Path, device: torch.device | str = "cpu") -> VideoDiT:
    """The float32 VideoDiT of ``folder``: its ``save_pretrained`` weights, or, for a folder
    holding a weight difference instead (:data:`DELTA_NAME`, int8, or
    :data:`LOW_RANK_DELTA_NAME`, low-rank; :mod:`cospeech.models.weight_delta`), its base
    (the sibling folder the delta's metadata names, ``teacher/`` when it names none; itself
    possibly a delta folder) plus that difference. CheckpointError if the base is missing,
    the chain loops, or an int8 delta's ``config.json`` is not its base's."""
    return _load_dit(Path(folder), torch.device(device), ())


def _load_dit(folder: Path, device: torch.device, seen: tuple[Path, ...]) -> VideoDiT:
    delta = _delta_file(folder)
    if delta is None:
        return VideoDiT.from_pretrained(folder, dtype=torch.float32, device=device)
    base_dir = _delta_base_dir(delta)
    if base_dir.resolve() in seen or base_dir.resolve() == folder.resolve():
        raise CheckpointError(f"{delta}: its chain of base models loops back to {base_dir}")
    base = _load_dit(base_dir, device, (*seen, folder.resolve()))
    if delta.name == LOW_RANK_DELTA_NAME:
        return apply_low_rank_delta(base, delta).eval()
    if read_config(folder) != base.config:  # an int8 delta keeps the architecture
        raise CheckpointError(f"{folder}: its {CONFIG_NAME} is not the one of {base_dir}")
    return apply_weight_delta(base, delta).eval()


def _delta_file(folder: Path) -> Path | None:
    """The weight-difference file of DiT folder ``folder``; None for full weights."""
    found = [
        folder / name for name in (DELTA_NAME, LOW_RANK_DELTA_NAME) if (folder / name).is_file()
    ]
    if len(found) > 1:
        raise CheckpointError(f"{folder}: holds both {DELTA_NAME} and {LOW_RANK_DELTA_NAME}")
    return found[0] if found else None


def _delta_base_dir(delta: Path) -> Path:
    """The base folder of weight-difference file ``delta``: the sibling its metadata names
    (``"base"``), :data:`DEFAULT_DELTA_BASE` when it names none."""
    name = delta_base(delta) or DEFAULT_DELTA_BASE
    if name in ("", ".", "..") or Path(name).name != name:
        raise CheckpointError(f"{delta}: base {name!r} is not the name of a sibling folder")
    base_dir = delta.parent.parent / name
    if not base_dir.is_dir():
        raise CheckpointError(f"{delta}: a weight delta needs its base model in {base_dir}")
    return base_dir
