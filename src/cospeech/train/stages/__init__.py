"""Training stages by name: ``cospeech train <name>``.

Each entry names a module that defines ``Config`` (the stage's dataclass config),
``default_train_config() -> TrainConfig`` and ``build_stage(config) -> Stage``; modules are
imported only when their stage is run.
"""

from __future__ import annotations

import importlib
from typing import Any

STAGES: dict[str, str] = {
    "motion": "cospeech.train.stages.motion",
    "vae": "cospeech.train.stages.vae",
    "teacher": "cospeech.train.stages.teacher",
    "sparse": "cospeech.train.stages.sparse",
    "distill": "cospeech.train.stages.distill",
}


def load_stage_module(name: str) -> Any:
    """The module behind stage ``name`` (KeyError for unknown names)."""
    return importlib.import_module(STAGES[name])
