"""Trainer configuration: one dataclass for every stage (VAE, teacher, motion, distillation)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from cospeech.errors import InputError, check_range

LR_DECAYS = ("constant", "cosine")
MIXED_PRECISION = ("auto", "bf16", "fp32")


@dataclass
class OptimConfig:
    """AdamW with a linear warm-up, then a constant or cosine-decaying learning rate.

    ``decay``: ``"constant"`` keeps ``lr`` after the warm-up; ``"cosine"`` holds it until
    update ``decay_start`` and then anneals it to ``lr * min_lr_ratio`` at the run's last
    update (``train.steps``). Raising ``train.steps`` and setting ``decay_start`` to the
    step a run was stopped at anneals a resumed run from where it stands.
    """

    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01
    eps: float = 1e-8
    warmup_steps: int = 100
    grad_clip: float = 1.0
    decay: str = "constant"
    decay_start: int = 0
    min_lr_ratio: float = 0.1

    def __post_init__(self) -> None:
        where = "train.optim"
        if self.decay not in LR_DECAYS:
            raise InputError(f"{where}.decay must be one of {LR_DECAYS}, got {self.decay!r}")
        check_positive(f"{where}.lr", self.lr)
        if len(self.betas) != 2:
            raise InputError(f"{where}.betas must be two numbers, got {list(self.betas)}")
        for beta in self.betas:
            check_fraction(f"{where}.betas", beta)
        check_range(f"{where}.weight_decay", self.weight_decay, 0)
        check_positive(f"{where}.eps", self.eps)
        check_range(f"{where}.warmup_steps", self.warmup_steps, 0)
        check_range(f"{where}.grad_clip", self.grad_clip, 0)
        check_range(f"{where}.decay_start", self.decay_start, 0)
        check_range(f"{where}.min_lr_ratio", self.min_lr_ratio, 0, 1)
        if self.decay == "constant" and self.decay_start:
            raise InputError(
                f"{where}.decay_start does nothing with decay: constant (use decay: cosine)"
            )


@dataclass
class LoRAConfig:
    """Low-rank adapters through peft (for large pretrained models); rank 0 = off.

    ``train_modules``: modules trained in full beside the adapters, named as
    ``target_modules`` are (e.g. ``patch_embedding``, widened for the warp condition)."""

    rank: int = 0
    alpha: float = 0.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q", "k", "v", "o", "ffn.0", "ffn.2")
    train_modules: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_range("train.lora.rank", self.rank, 0)
        check_range("train.lora.alpha", self.alpha, 0)
        check_fraction("train.lora.dropout", self.dropout)
        if self.rank == 0 and (self.alpha or self.dropout or self.train_modules):
            raise InputError(
                "train.lora.alpha, dropout and train_modules do nothing with lora.rank 0"
            )


@dataclass
class TrainConfig:
    """What a training run does and how it is checkpointed and logged.

    ``steps`` counts optimizer updates; each update accumulates ``grad_accum`` micro-batches
    of ``batch_size`` samples per process. ``mixed_precision``: ``"auto"`` uses bf16 autocast
    on CUDA and fp32 on CPU.
    """

    steps: int = 1000
    batch_size: int = 4
    grad_accum: int = 1
    seed: int = 0
    ema_decay: float = 0.999
    ema_start: int = 0
    checkpoint_every: int = 200
    keep_last: int = 3
    log_every: int = 10
    sample_every: int = 0
    num_workers: int = 0
    mixed_precision: str = "auto"
    fsdp: bool = False
    optim: OptimConfig = field(default_factory=OptimConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)

    def __post_init__(self) -> None:
        for name, low in COUNT_FLOORS.items():
            check_range(f"train.{name}", getattr(self, name), low)
        check_fraction("train.ema_decay", self.ema_decay)
        if self.mixed_precision not in MIXED_PRECISION:
            raise InputError(
                f"train.mixed_precision must be one of {MIXED_PRECISION}, "
                f"got {self.mixed_precision!r}"
            )
        if self.ema_decay == 0 and self.ema_start:
            raise InputError("train.ema_start does nothing with ema_decay 0 (EMA off)")


# Integer fields of TrainConfig and their smallest allowed values.
COUNT_FLOORS = {
    "steps": 0, "batch_size": 1, "grad_accum": 1, "seed": 0, "ema_start": 0,
    "checkpoint_every": 1, "keep_last": 0, "log_every": 1, "sample_every": 0, "num_workers": 0,
}  # fmt: skip


def check_positive(name: str, value: float) -> None:
    """:class:`InputError` naming ``name`` unless ``value`` is a finite number > 0."""
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{name} must be > 0, got {value:g}")


def check_fraction(name: str, value: float) -> None:
    """:class:`InputError` naming ``name`` unless ``value`` lies in [0, 1)."""
    if not 0 <= value < 1:
        raise InputError(f"{name} must be in [0, 1), got {value:g}")
