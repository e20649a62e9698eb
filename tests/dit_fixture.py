"""A small VideoDiT with random weights, shared by the attention and sparse-batch tests."""

from __future__ import annotations

import dataclasses

import torch

from cospeech.models import VIDEO_DIT_PRESETS, VideoDiT


def randomise(model: torch.nn.Module, std: float = 0.2, seed: int = 0) -> None:
    """Every parameter drawn from N(0, std^2) (the default init leaves some outputs zero)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * std)


def random_tiny_dit(**overrides) -> VideoDiT:
    """The ``tiny`` preset with small text/image context sizes and random weights, in eval
    mode; ``overrides`` replace further config fields."""
    config = dataclasses.replace(VIDEO_DIT_PRESETS["tiny"], text_dim=8, image_dim=12, **overrides)
    net = VideoDiT(config).eval()
    randomise(net)
    return net
