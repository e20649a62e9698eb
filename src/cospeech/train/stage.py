"""What a training stage supplies to the shared loop (VAE, teacher, motion, distillation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset


class Stage(Protocol):
    """A training stage: its model, data, loss, periodic samples and final export.

    ``loss`` draws any randomness (noise, timesteps, dropout) from torch's global RNG,
    which the loop re-seeds from (seed, step, rank) before every update: that is what makes
    a resumed run identical to an uninterrupted one.
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
