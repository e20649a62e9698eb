"""Training checkpoints: written atomically, the last N kept, loaded without unpickling.

Layout of one checkpoint (a folder ``RUN/checkpoints/step-00001000/``)::

    model.safetensors   model weights
    ema.safetensors     EMA weights (when EMA is on)
    trainer.pt          optimizer + LR scheduler state (torch.save; read with weights_only=True)
    state.json          step and the stage's extra state

The folder is written under a temporary name and renamed when complete, so a kill at any
moment leaves either the previous checkpoint or the new one, never a partial one.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from cospeech.atomic import apply_umask, make_temp_dir
from cospeech.errors import CheckpointError
from cospeech.jsonfile import dumps

PREFIX = "step-"


@dataclass
class TrainingState:
    """What a checkpoint restores."""

    step: int
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None
    trainer: dict[str, Any]
    extra: dict[str, Any]


def _tensors_for_file(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses shared storage; a contiguous CPU copy of each tensor avoids it.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def save_checkpoint(
    folder: str | Path,
    step: int,
    model: dict[str, torch.Tensor],
    ema: dict[str, torch.Tensor] | None,
    trainer: dict[str, Any],
    extra: dict[str, Any] | None = None,
    keep_last: int = 3,
) -> Path:
    """Write ``folder/step-<step>/`` atomically and delete all but the newest ``keep_last``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{PREFIX}{step:08d}"
    tmp = make_temp_dir(folder, f".{final.name}.tmp-")
    try:
        save_file(_tensors_for_file(model), str(tmp / "model.safetensors"))
        if ema is not None:
            save_file(_tensors_for_file(ema), str(tmp / "ema.safetensors"))
        torch.save(trainer, tmp / "trainer.pt")
        (tmp / "state.json").write_text(dumps({"step": step, "extra": extra or {}}, indent=1))
        for written in tmp.iterdir():  # safetensors writes 0600: follow the umask instead
            apply_umask(written)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(folder)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Complete checkpoints in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith(PREFIX)]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> TrainingState:
    """Read a checkpoint folder (safetensors + weights-only torch state; never unpickles)."""
    path = Path(path)
    try:
        state = json.loads((path / "state.json").read_text())
        model = load_file(str(path / "model.safetensors"), device=str(map_location))
        ema_file = path / "ema.safetensors"
        ema = load_file(str(ema_file), device=str(map_location)) if ema_file.exists() else None
        trainer = torch.load(path / "trainer.pt", map_location=map_location, weights_only=True)
    except (OSError, ValueError, KeyError, RuntimeError, pickle.UnpicklingError) as exc:
        raise CheckpointError(f"checkpoint {path}: cannot be read ({exc})") from None
    return TrainingState(int(state["step"]), model, ema, trainer, state.get("extra", {}))
