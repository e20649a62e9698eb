"""Training stage ``sparse``: fine-tune the teacher with input-aware sparse attention.

The teacher stage (same data, latent cache, conditions, flow-matching loss and samples)
with one change: every forward runs with one :class:`~cospeech.attention.SparsePlan` per
batch element, built from that window's keypoints (:func:`cospeech.attention.pose_plan`:
the global top-K mask of Eq. 1-2 plus the region mask of Eq. 3). The teacher is
bidirectional, so the K most similar frames are ranked among all other frames
(``causal=False``); frame 0 (the reference) is always kept. The realised densities of
the batch's plans go to the metrics log (``block_density``, ``token_density``).

Full fine-tuning by default; LoRA with ``--set train.lora.rank=R`` (:mod:`..lora`).

    cospeech train sparse --out runs/sparse --set stage.init=runs/teacher/final-ema \
        --set stage.data=corpus/ --set stage.vae=runs/vae/final-ema \
        --set stage.latents=cache/teacher --set stage.k=4
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cospeech.attention import SparsePlan
from cospeech.attention.kernels import BACKENDS
from cospeech.attention.plan import DEFAULT_BLOCK_SIZE
from cospeech.attention.pose_plan import pose_plan
from cospeech.diffusion import FlowModel
from cospeech.errors import InputError, check_range
from cospeech.latent_geometry import TIME_STRIDE
from cospeech.pose.sequence import PoseSequence
from cospeech.train.config import TrainConfig
from cospeech.train.distributed import unwrap_model
from cospeech.train.stages import teacher
from cospeech.train.stages.teacher import TeacherStage


@dataclass
class Config(teacher.Config):
    """The ``stage:`` section of a sparse run: the teacher's options (``init``: the teacher
    folder to start from; empty = the ``model`` preset with fresh weights, for tests) plus

    ``k``: K, the most similar frames
    each query frame keeps (Eq. 2); ``block_size``: tokens per block of the plan;
    ``exact``: mask partial blocks token by token (else whole kept blocks attend);
    ``sparse_backend``: the attention kernel (``auto``: flex on CUDA, gather elsewhere).
    """

    k: int = 4
    block_size: int = DEFAULT_BLOCK_SIZE
    exact: bool = True
    sparse_backend: str = "auto"


def default_train_config() -> TrainConfig:
    """The teacher's schedule, shorter and at a fine-tuning learning rate."""
    config = teacher.default_train_config()
    config.steps = 800
    config.optim.lr = 1e-4
    return config


def check_sparse_config(config: Config) -> None:
    """:class:`InputError` naming the option when a sparse-only value is out of range."""
    check_plan_options(config.k, config.block_size, config.sparse_backend)


def check_plan_options(k: int, block_size: int, sparse_backend: str) -> None:
    """:class:`InputError` for ``stage.k``, ``stage.block_size``, ``stage.sparse_backend``."""
    check_range("stage.k", k, 1)
    check_range("stage.block_size", block_size, 1)
    if sparse_backend not in ("auto", *BACKENDS):
        raise InputError(
            f"stage.sparse_backend must be one of {['auto', *BACKENDS]}, got {sparse_backend!r}"
        )


def window_plans(
    keypoints: torch.Tensor,
    size: tuple[int, int],
    space_stride: int,
    patch: tuple[int, int, int],
    *,
    k: int,
    block_size: int,
    exact: bool,
    causal: bool,
) -> list[SparsePlan]:
    """One plan per window of keypoints ``[B, F, 133, 3]`` (pixels of ``size`` = (H, W)),
    for a model of patch ``patch`` on latents ``space_stride`` times smaller."""
    height, width = size
    plans = []
    for window in keypoints.detach().cpu().numpy().astype(np.float32):
        pose = PoseSequence(window, fps=25.0, width=width, height=height)
        plans.append(
            pose_plan(
                pose, k=k, block_size=block_size, exact=exact, time_stride=TIME_STRIDE,
                space_stride=space_stride, patch=patch, causal=causal,
            )
        )  # fmt: skip
    return plans


def plan_metrics(plans: list[SparsePlan]) -> dict[str, float]:
    """Mean realised block and token density of ``plans`` (1 = dense)."""
    return {
        "block_density": float(np.mean([p.density for p in plans])),
        "token_density": float(np.mean([p.token_density for p in plans])),
    }


class SparseTeacherStage(TeacherStage):
    """The ``sparse`` stage (see the module docstring)."""

    name = "sparse"

    def __init__(self, config: Config) -> None:
        check_sparse_config(config)
        super().__init__(config)
        self.config: Config = config

    def plans(self, model: nn.Module, batch: dict) -> list[SparsePlan]:
        """One plan per window of ``batch`` (from its ``keypoints``)."""
        cfg = self.config
        return window_plans(
            batch["keypoints"], tuple(batch["pose_maps"].shape[-2:]), self.vae.space_stride,
            unwrap_model(model).config.patch_size, k=cfg.k, block_size=cfg.block_size,
            exact=cfg.exact, causal=False,
        )  # fmt: skip

    def sample_model(self, model: nn.Module, item: dict) -> FlowModel:
        """The model with the plan of the validation item's pose (samples run sparse too)."""
        batch = {"keypoints": item["keypoints"][None], "pose_maps": item["pose_maps"][None]}
        plans = self.plans(model, batch)
        return functools.partial(model, plan=plans, sparse_backend=self.config.sparse_backend)

    def loss(
        self, model: nn.Module, batch: dict, step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        plans = self.plans(model, batch)
        sparse = functools.partial(model, plan=plans, sparse_backend=self.config.sparse_backend)
        loss, metrics = super().loss(sparse, batch, step)
        return loss, {**metrics, **plan_metrics(plans)}


def build_stage(config: Config) -> SparseTeacherStage:
    return SparseTeacherStage(config)
