"""What a training stage supplies to the shared loop (VAE, teacher, motion, distillation)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from cospeech.train.config import OptimConfig

MAIN_MODULE = "model"
"""The name of the stage's main model (from ``build_model``) in an update schedule."""


@dataclass
class StageModule:
    """A module besides the main model that a stage trains or uses (see :class:`Stage`).

    ``optim``: its own AdamW settings (trained, checkpointed, stepped when the schedule
    names it), or ``None``: frozen (moved to the device, ``eval()``, no gradients, not
    checkpointed: the stage rebuilds it, e.g. from the folder it was loaded from).
    """

    module: nn.Module
    optim: OptimConfig | None = None


class Stage(Protocol):
    """A training stage: its model, data, loss, periodic samples and final export.

    ``loss`` draws any randomness (noise, timesteps, dropout) from torch's global RNG,
    which the loop re-seeds from (seed, step, rank) before every update: that is what makes
    a resumed run identical to an uninterrupted one.

    A stage that trains several modules (distillation: generator and critic) also defines
    the optional :class:`MultiModuleStage` methods.
    """

    name: str

    def build_model(self) -> nn.Module: ...

    def build_dataset(self) -> Dataset: ...

    def loss(
        self, model: nn.Module, batch: Any, step: int
    ) -> tuple[torch.Tensor, dict[str, float]]: ...

    def sample(self, model: nn.Module, step: int) -> dict[str, np.ndarray]:
        """Videos ``[T, H, W, 3]`` uint8 from a fixed validation batch, by name."""
        ...

    def export(self, model: nn.Module, out_dir: Path) -> None:
        """Write the trained model (e.g. ``save_pretrained``) into ``out_dir``."""
        ...


class MultiModuleStage(Stage, Protocol):
    """A stage with modules besides its main model, each with its own update schedule.

    ``build_modules(model)`` is called once after ``build_model`` (with the main model on
    the device, so that e.g. a critic can start as a copy of it); ``loss`` then receives
    the modules as ``loss(model, batch, step, modules={name: module})`` and returns the
    sum of the losses of the modules that ``updates(step)`` names (the main model is
    :data:`MAIN_MODULE`). The loop steps exactly those optimizers: each clips its own
    gradient norm and follows its own LR schedule, counted in its own updates. The
    loss of one module must not put gradients on another's parameters (detach samples).
    """

    def build_modules(self, model: nn.Module) -> dict[str, StageModule]: ...

    def updates(self, step: int) -> Collection[str]:
        """The names of the modules whose optimizer steps at update ``step`` (0-based)."""
        ...
