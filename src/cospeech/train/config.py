"""Trainer configuration: one dataclass for every stage (VAE, teacher, motion, distillation)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cospeech.errors import InputError

LR_DECAYS = ("constant", "cosine")


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
        if self.decay not in LR_DECAYS:
            raise InputError(f"train.optim.decay must be one of {LR_DECAYS}, not {self.decay!r}")
        if self.decay_start < 0:
            raise InputError(f"train.optim.decay_start must be >= 0, not {self.decay_start}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise InputError(f"train.optim.min_lr_ratio must be in [0, 1], not {self.min_lr_ratio}")


@dataclass
class LoRAConfig:
    """Low-rank adapters through peft (for large pretrained models); rank 0 = off."""

    rank: int = 0
    alpha: float = 0.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q", "k", "v", "o", "ffn.0", "ffn.2")


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
