"""A small regression stage for trainer tests, runnable as a script (also under torchrun).

python tests/train_fixture.py RUN_DIR STEPS [--noise] [--batch-size B] [--grad-accum A]
    [--cosine-from S] [--lr LR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from cospeech.train.config import OptimConfig, TrainConfig
from cospeech.train.loop import Trainer

FEATURES = 8


class PairDataset(Dataset):
    """Item i: a fixed random input and its target under a fixed linear map; inputs shift
    slightly with the epoch so that epoch handling is exercised."""

    def __init__(self, size: int = 64) -> None:
        generator = torch.Generator().manual_seed(1234)
        self.x = torch.randn(size, FEATURES, generator=generator)
        self.map = torch.randn(FEATURES, FEATURES, generator=generator)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        x = self.x[index] + 0.01 * self.epoch
        return {"x": x, "y": torch.tanh(x @ self.map)}


class RegressionStage:
    name = "regression"

    def __init__(self, noise: bool) -> None:
        self.noise = noise

    def build_model(self) -> nn.Module:
        return nn.Sequential(
            nn.Linear(FEATURES, 32), nn.GELU(), nn.Dropout(0.1 if self.noise else 0.0),
            nn.Linear(32, FEATURES),
        )  # fmt: skip

    def build_dataset(self) -> Dataset:
        return PairDataset()

    def loss(self, model, batch, step):
        x = batch["x"]
        if self.noise:
            x = x + 0.1 * torch.randn_like(x)
        loss = nn.functional.mse_loss(model(x), batch["y"])
        return loss, {}

    def sample(self, model, step) -> dict[str, np.ndarray]:
        return {}

    def export(self, model, out_dir: Path) -> None:
        from safetensors.torch import save_file

        out_dir.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                  str(out_dir / "model.safetensors"))  # fmt: skip


def make_config(
    steps: int,
    batch_size: int = 4,
    grad_accum: int = 1,
    cosine_from: int | None = None,
    lr: float = 1e-2,
) -> TrainConfig:
    decay = {} if cosine_from is None else {"decay": "cosine", "decay_start": cosine_from}
    return TrainConfig(
        steps=steps, batch_size=batch_size, grad_accum=grad_accum, seed=7, ema_decay=0.9,
        checkpoint_every=5, keep_last=2, log_every=1,
        optim=OptimConfig(lr=lr, warmup_steps=3, grad_clip=1.0, min_lr_ratio=0.1, **decay),
    )  # fmt: skip


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("steps", type=int)
    parser.add_argument("--noise", action="store_true")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--cosine-from", type=int, default=None)
    parser.add_argument("--lr", type=float, default=1e-2)
    args = parser.parse_args(argv)
    # One thread: the reference and the killed-and-resumed run must be bit-identical, so
    # they run the same kernels with the same work split (the tests also set OMP_NUM_THREADS).
    torch.set_num_threads(1)
    stage = RegressionStage(noise=args.noise)
    config = make_config(args.steps, args.batch_size, args.grad_accum, args.cosine_from, args.lr)
    Trainer(stage, config, args.run_dir).run()


if __name__ == "__main__":
    main(sys.argv[1:])
