"""Reconstruction loss for training video autoencoders, without downloaded networks.

``vae_loss`` = ``l1 * |x - x'|`` + ``ssim * (1 - SSIM(x, x'))`` + ``gradient * |grad x -
grad x'|`` + ``kl * KL(q(z|x) || N(0, I))``. L1 keeps colours right, SSIM (per frame,
Gaussian window) keeps local contrast and structure, and the finite-difference term keeps
edges sharp where L1 alone blurs them (thin outlines of cartoon speakers, teeth, fingers).
The KL term, tiny by default as in Stable Diffusion / Wan VAE training, only keeps the
latent scale bounded; latents are normalised by measured statistics afterwards.
Optional per-pixel weights turn the L1 and gradient terms into weighted means (more
weight on the face: :mod:`cospeech.train.region_weights`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from cospeech.errors import InputError

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
DATA_RANGE = 2.0  # frames live in [-1, 1]


@dataclass
class VAELossWeights:
    """Weights of the terms of :func:`vae_loss`."""

    l1: float = 1.0
    ssim: float = 0.2
    gradient: float = 0.5
    kl: float = 1e-6


@dataclass
class VAELossTerms:
    """The weighted total (to backpropagate) and each unweighted term (to log)."""

    total: Tensor
    l1: Tensor
    ssim: Tensor
    gradient: Tensor
    kl: Tensor

    def as_dict(self) -> dict[str, float]:
        """Plain floats for logging."""
        return {
            name: float(getattr(self, name).detach())
            for name in ("total", "l1", "ssim", "gradient", "kl")
        }


def vae_loss(
    frames: Tensor,
    recon: Tensor,
    mean: Tensor | None = None,
    logvar: Tensor | None = None,
    weights: VAELossWeights | None = None,
    pixel_weights: Tensor | None = None,
) -> VAELossTerms:
    """Loss of a reconstruction ``recon`` of ``frames``, both ``[B, 3, F, H, W]`` in [-1, 1].

    ``mean``/``logvar`` (the raw posterior, any shape) add the KL term; without them it is 0.
    ``pixel_weights`` ``[B, 1, F, H, W]`` (>= 0) weight the L1 and gradient terms per
    pixel (normalised weighted means); the SSIM term needs ``H, W >= 11``.
    """
    weights = weights or VAELossWeights()
    if frames.shape != recon.shape:
        raise InputError(f"frames {list(frames.shape)} and recon {list(recon.shape)} differ")
    if pixel_weights is not None and pixel_weights.shape != (frames.shape[0], 1, *frames.shape[2:]):
        raise InputError(
            f"pixel weights {list(pixel_weights.shape)} do not fit {list(frames.shape)}"
        )
    l1 = weighted_mean((frames - recon).abs(), pixel_weights)
    ssim_term = 1 - ssim(frames, recon)
    gradient = gradient_l1(frames, recon, pixel_weights)
    kl = (
        kl_divergence(mean, logvar) if mean is not None and logvar is not None else l1.new_zeros(())
    )
    total = (
        weights.l1 * l1 + weights.ssim * ssim_term + weights.gradient * gradient + weights.kl * kl
    )
    return VAELossTerms(total, l1, ssim_term, gradient, kl)


def ssim(x: Tensor, y: Tensor, data_range: float = DATA_RANGE) -> Tensor:
    """Mean SSIM over frames and channels of ``[B, C, F, H, W]`` videos (Gaussian window 11,
    sigma 1.5, no padding: the standard definition of Wang et al. 2004)."""
    b, c, f, h, w = x.shape
    if min(h, w) < SSIM_WINDOW:
        raise InputError(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {w}x{h}")
    x = x.transpose(1, 2).reshape(b * f, c, h, w)
    y = y.transpose(1, 2).reshape(b * f, c, h, w)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    mu_x, mu_y = _gaussian_blur(x), _gaussian_blur(y)
    var_x = _gaussian_blur(x * x) - mu_x**2
    var_y = _gaussian_blur(y * y) - mu_y**2
    cov = _gaussian_blur(x * y) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    denominator = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return (numerator / denominator).mean()


def gradient_l1(x: Tensor, y: Tensor, pixel_weights: Tensor | None = None) -> Tensor:
    """Mean L1 distance between the horizontal and vertical finite differences of two videos
    ``[B, C, F, H, W]``; ``pixel_weights`` ``[B, 1, F, H, W]`` weight each difference by its
    right / lower pixel."""
    wx = None if pixel_weights is None else pixel_weights[..., :, 1:]
    wy = None if pixel_weights is None else pixel_weights[..., 1:, :]
    dx = (x[..., :, 1:] - x[..., :, :-1]) - (y[..., :, 1:] - y[..., :, :-1])
    dy = (x[..., 1:, :] - x[..., :-1, :]) - (y[..., 1:, :] - y[..., :-1, :])
    return 0.5 * (weighted_mean(dx.abs(), wx) + weighted_mean(dy.abs(), wy))


def weighted_mean(values: Tensor, weights: Tensor | None) -> Tensor:
    """``sum(w v) / sum(w)`` with ``weights`` broadcast to ``values``; the plain mean for None."""
    if weights is None:
        return values.mean()
    weights = weights.expand_as(values)
    return (weights * values).sum() / weights.sum()


def kl_divergence(mean: Tensor, logvar: Tensor) -> Tensor:
    """Mean per element of KL(N(mean, exp(logvar)) || N(0, 1))."""
    return 0.5 * (mean**2 + logvar.exp() - 1 - logvar).mean()


def _gaussian_blur(x: Tensor) -> Tensor:
    """Separable 'valid' Gaussian filtering of ``[N, C, H, W]``."""
    radius = SSIM_WINDOW // 2
    coords = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-(coords**2) / (2 * SSIM_SIGMA**2))
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
