"""Training: one loop for every stage, checkpoints that resume exactly, DDP under torchrun."""

from cospeech.train.config import LoRAConfig, OptimConfig, TrainConfig
from cospeech.train.loop import Trainer

__all__ = ["LoRAConfig", "OptimConfig", "TrainConfig", "Trainer"]
