"""Reading public weight files into the metric networks: safe formats only, one-line errors.

A weight file is either ``.safetensors`` or a torch file holding nothing but tensors in
(nested) dicts, read with ``torch.load(weights_only=True)``: its restricted unpickler
refuses any other Python object, so no code in the file runs. Keys and shapes are checked
against the model before anything is copied; every mismatch is listed in one
:class:`~cospeech.errors.CheckpointError` line.

The weight files are not shipped: each command takes ``--weights FILE`` and otherwise looks
for the file under its public name in the folder ``$COSPEECH_WEIGHTS``
(:func:`weight_file`).
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from cospeech.errors import CheckpointError, InputError
from cospeech.models.checkpoint_checks import mismatch_report

WEIGHTS_ENV = "COSPEECH_WEIGHTS"
OPTIONAL_SUFFIX = ".num_batches_tracked"  # BatchNorm counters, unused in eval; old files lack them
_READ_ERRORS = (
    OSError, RuntimeError, ValueError, EOFError, TypeError, AttributeError,
    pickle.UnpicklingError, SafetensorError,
)  # fmt: skip


def weight_file(given: str | Path | None, filename: str, name: str, source: str) -> Path:
    """The weight file to use: ``given`` (``--weights``) if set, else ``$COSPEECH_WEIGHTS /
    filename`` when that exists. Otherwise an :class:`InputError` saying which file
    ``name`` needs and where to get it (``source``)."""
    if given is not None:
        path = Path(given)
        if not path.is_file():
            raise InputError(f"--weights {path}: no such file")
        return path
    folder = os.environ.get(WEIGHTS_ENV)
    if folder and (Path(folder) / filename).is_file():
        return Path(folder) / filename
    looked = f"{Path(folder) / filename} does not exist" if folder else f"${WEIGHTS_ENV} is unset"
    raise InputError(
        f"{name} needs the weight file {filename} ({looked}): download it from {source} and "
        f"pass --weights FILE, or put it in the folder named by ${WEIGHTS_ENV}"
    )


def _refusal(exc: Exception) -> str:
    """The short reason in a reader's error: for torch's long weights-only refusal, the
    object it met or the part after ``WeightsUnpickler error:``; else the first line."""
    text = str(exc)
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if found:
        return f"it holds a Python object ({found.group(1)}), not only tensors"
    _, marker, reason = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in (reason if marker else text).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def read_state_dict(path: str | Path, name: str) -> dict[str, torch.Tensor]:
    """The tensors of weight file ``path`` (``.safetensors``, else a weights-only torch file)
    on the CPU, by parameter name; a :class:`CheckpointError` naming ``name`` when the file
    cannot be read safely or holds anything but a flat name -> tensor mapping."""
    path = Path(path)
    where = f"{name} weights {path}"
    if not path.is_file():
        raise CheckpointError(f"{where}: no such file")
    try:
        if path.suffix.lower() == ".safetensors":
            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except _READ_ERRORS as exc:
        raise CheckpointError(
            f"{where}: cannot be read as safetensors or a weights-only torch file "
            f"({_refusal(exc)}); cospeech never unpickles other objects"
        ) from None
    if not isinstance(state, Mapping) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()
    ):
        raise CheckpointError(f"{where}: not a state dict (a mapping of names to tensors)")
    return dict(state)


def check_state_dict(state: Mapping[str, torch.Tensor], model: nn.Module, where: str) -> None:
    """A :class:`CheckpointError` ``"{where}: missing keys ...; wrong shapes ..."`` unless
    ``state`` has every key of ``model.state_dict()`` (BatchNorm counters may be absent)
    with the same shape and no other key."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith(OPTIONAL_SUFFIX)]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {list(state[k].shape)} (expected {list(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    report = mismatch_report(missing, unexpected, wrong)
    if report:
        raise CheckpointError(f"{where}: does not fit the {type(model).__name__} network: {report}")


def load_state_dict_file(path: str | Path, model: nn.Module, name: str) -> nn.Module:
    """Load weight file ``path`` into ``model`` key by key (checked first, see
    :func:`check_state_dict`); returns ``model``. ``name`` names the network in errors."""
    state = read_state_dict(path, name)
    check_state_dict(state, model, f"{name} weights {path}")
    own = model.state_dict()
    state.update({k: own[k] for k in own if k not in state})  # only absent BatchNorm counters
    model.load_state_dict(state, strict=True)
    return model
