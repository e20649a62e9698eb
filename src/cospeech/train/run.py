"""Running a named stage from a YAML config: what ``cospeech train <stage>`` does."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cospeech.config import apply_overrides, from_dict, read_yaml, to_dict
from cospeech.errors import InputError, count
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
        if path.is_dir():
            raise InputError(f"config {path}: is a folder, not a file")
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


@dataclass(frozen=True)
class RunReport:
    """What a training run did: trained from ``resumed_from`` to ``steps`` (equal: the run
    folder was already trained that far) and exported into ``exports``; ``is_main``: this is
    the process that writes (rank 0 under torchrun)."""

    stage: str
    run_dir: Path
    resumed_from: int
    steps: int
    exports: list[Path]
    is_main: bool

    def summary(self) -> str:
        """One line: what was trained and where the final weights are."""
        weights = " and ".join(str(path) for path in self.exports)
        if self.resumed_from >= self.steps:
            return (
                f"train {self.stage}: {self.run_dir} was already trained to step {self.steps}; "
                f"weights in {weights} (raise train.steps to train on)"
            )
        done = count(self.steps - self.resumed_from, "step")
        since = f" (resumed at step {self.resumed_from})" if self.resumed_from else ""
        return f"train {self.stage}: {done} done{since}, {self.steps} in all; weights in {weights}"


def run_stage(
    stage_name: str,
    run_dir: str | Path,
    config_path: str | Path | None = None,
    overrides: list[str] | None = None,
    device: str | None = None,
) -> RunReport:
    """Train stage ``stage_name`` into ``run_dir`` (resuming if it holds checkpoints)."""
    train, stage_config = load_run_config(stage_name, config_path, list(overrides or []))
    stage = load_stage_module(stage_name).build_stage(stage_config)
    trainer = Trainer(stage, train, run_dir, device=device, stage_config=stage_config)
    trainer.run()
    return RunReport(
        stage_name, Path(run_dir), trainer.resumed_from, train.steps, trainer.export_dirs(),
        trainer.dist.is_main,
    )  # fmt: skip
