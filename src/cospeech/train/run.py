"""Running a named stage from a YAML config: what ``cospeech train <stage>`` does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cospeech.config import apply_overrides, from_dict, read_yaml, to_dict
from cospeech.errors import InputError
from cospeech.train.config import TrainConfig
from cospeech.train.loop import Trainer
from cospeech.train.stages import STAGES, load_stage_module


def load_run_config(
    stage_name: str, path: str | Path | None, overrides: list[str]
) -> tuple[TrainConfig, Any]:
    """``(train config, stage config)`` from a YAML file with ``train:`` and ``stage:``
    sections (both optional) plus ``section.key=value`` overrides."""
    if stage_name not in STAGES:
        raise InputError(f"unknown stage {stage_name!r}; stages: {sorted(STAGES)}")
    module = load_stage_module(stage_name)
    data: dict[str, Any] = {"train": to_dict(module.default_train_config()), "stage": {}}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"config {path}: no such file")
        loaded = read_yaml(path)
        unknown = sorted(set(loaded) - {"train", "stage"})
        if unknown:
            raise InputError(f"config {path}: unknown section(s) {unknown}; use train:, stage:")
        data["train"].update(loaded.get("train") or {})
        data["stage"].update(loaded.get("stage") or {})
    apply_overrides(data, overrides)
    train = from_dict(TrainConfig, data["train"], ".train")
    stage = from_dict(module.Config, data["stage"], ".stage")
    return train, stage


def run_stage(
    stage_name: str,
    run_dir: str | Path,
    config_path: str | Path | None = None,
    overrides: list[str] | None = None,
    device: str | None = None,
) -> Path:
    """Train stage ``stage_name`` into ``run_dir`` (resuming if it holds checkpoints)."""
    train, stage_config = load_run_config(stage_name, config_path, list(overrides or []))
    stage = load_stage_module(stage_name).build_stage(stage_config)
    Trainer(stage, train, run_dir, device=device).run()
    return Path(run_dir)
