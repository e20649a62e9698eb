"""Saving and loading a motion model folder: ``model.safetensors`` + ``config.json``.

``config.json`` holds the model config (``model``), facts about training (``info``:
frame rate, corpus, steps, ...) and, once fitted by ``cospeech motion-calibrate``, the
head-motion gains (``head_gain``,
:class:`~cospeech.motion.head_calibration.HeadCalibration`; missing = all 1, the model's
own motion). Weights may be stored as float16 to keep the shipped
model small; they are read back as float32. The shipped model lives in
``cospeech/assets/motion``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cospeech.atomic import atomic_path
from cospeech.config import from_dict, to_dict
from cospeech.errors import CheckpointError, InputError
from cospeech.jsonfile import read_json, write_json
from cospeech.motion.config import MotionModelConfig
from cospeech.motion.head_calibration import HeadCalibration
from cospeech.motion.model import MotionModel
from cospeech.shipped import ASSETS, MOTION_DIR

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
SHIPPED_MODEL = ASSETS / MOTION_DIR
HEAD_GAIN_FIELD = "head_gain"


def save_motion_model(
    model: MotionModel, folder: str | Path, info: dict[str, Any], half: bool = False
) -> None:
    """Write ``model`` (weights, float16 when ``half``) and its config into ``folder``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if half else torch.float32
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp))
    write_json(folder / CONFIG_NAME, {"model": to_dict(model.config), "info": info}, sort_keys=True)


def load_motion_model(folder: str | Path | None = None) -> tuple[MotionModel, dict[str, Any]]:
    """``(model in eval mode, info)`` from a folder written by :func:`save_motion_model`
    (default: the shipped model). ``CheckpointError`` when files are missing or do not fit."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder) if folder is not None else SHIPPED_MODEL
    weights, config_path = folder / WEIGHTS_NAME, folder / CONFIG_NAME
    if not weights.is_file() or not config_path.is_file():
        raise CheckpointError(f"motion model {folder}: needs {WEIGHTS_NAME} and {CONFIG_NAME}")
    data = read_json(config_path, CheckpointError)
    try:
        config = from_dict(MotionModelConfig, data["model"], ".model")
        state = load_file(str(weights))
    except (OSError, ValueError, KeyError, SafetensorError) as exc:
        raise CheckpointError(f"motion model {folder}: unreadable ({exc})") from None
    model = MotionModel(config)
    try:
        model.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"motion model {folder}: weights do not fit ({first})") from None
    return model.eval(), dict(data.get("info", {}))


def _config_path(folder: str | Path | None) -> Path:
    folder = Path(folder) if folder is not None else SHIPPED_MODEL
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"motion model {folder}: needs {CONFIG_NAME}")
    return path


def load_head_calibration(folder: str | Path | None = None) -> HeadCalibration:
    """The head-motion gains of a model folder (default: the shipped model); all 1 when
    its ``config.json`` has no ``head_gain``."""
    path = _config_path(folder)
    try:
        return HeadCalibration.from_config(read_json(path, CheckpointError).get(HEAD_GAIN_FIELD))
    except InputError as exc:
        raise CheckpointError(f"motion model {path.parent}: {exc}") from None


def save_head_calibration(folder: str | Path | None, gains: HeadCalibration) -> None:
    """Write ``gains`` into the folder's ``config.json`` (the other fields unchanged)."""
    path = _config_path(folder)
    data = read_json(path, CheckpointError)
    data[HEAD_GAIN_FIELD] = to_dict(gains)
    write_json(path, data, sort_keys=True)
