"""Pixel metrics between two videos: PSNR and SSIM per frame.

Videos are uint8 ``[F, H, W, 3]``. SSIM is the standard one of Wang et al. (2004):
Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, population covariances, averaged over the
valid window positions and the three channels; it equals scikit-image's
``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=255, channel_axis=-1)`` (tested).
"""

from __future__ import annotations

import numpy as np
import torch

from cospeech.errors import InputError
from cospeech.models.vae.loss import ssim as ssim_mean

DATA_RANGE = 255.0


def _check(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape or a.ndim != 4 or a.shape[-1] != 3:
        raise InputError(f"videos must both be [F, H, W, 3], got {list(a.shape)}, {list(b.shape)}")


def psnr_per_frame(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """PSNR in dB ``[F]`` (inf for identical frames)."""
    _check(a, b)
    diff = a.astype(np.float64) - b.astype(np.float64)
    mse = (diff**2).reshape(len(a), -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        return 10 * np.log10(DATA_RANGE**2 / mse)


def ssim_per_frame(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM ``[F]`` in [-1, 1] (see the module docstring)."""
    _check(a, b)
    values = []
    for x, y in zip(a, b, strict=True):
        tx = torch.from_numpy(x).double().permute(2, 0, 1)[None, :, None]
        ty = torch.from_numpy(y).double().permute(2, 0, 1)[None, :, None]
        values.append(float(ssim_mean(tx, ty, data_range=DATA_RANGE)))
    return np.array(values)
