"""Image quality of a video without a reference: background flicker and sharpness.

All on the luma ``Y = 0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601), in 0-255 levels.

* Sharpness: the variance of the Laplacian (Pech-Pacheco et al. 2000), with the 4-neighbour
  kernel ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]`` over the pixels whose neighbours all lie
  inside the image (no border padding). Blur lowers it; it grows with noise and detail.
* Flicker: the static background is the set of pixels whose temporal standard deviation
  is at most its ``static_quantile`` quantile over the image (the person, who moves, is
  left out); flicker is the mean over consecutive frame pairs of the mean absolute luma
  change there, ``mean_t mean_{p in S} |Y_{t+1}(p) - Y_t(p)|``. A still video gives 0; a
  brightness that alternates by ``d`` levels gives ``d``. Camera motion counts as flicker.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from cospeech.errors import InputError

LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)
STATIC_QUANTILE = 0.5


def luma(frame: np.ndarray) -> np.ndarray:
    """``[H, W]`` float32 luma of an RGB frame ``[H, W, 3]``."""
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise InputError(f"frame: expected RGB [H, W, 3], got {list(frame.shape)}")
    return frame.astype(np.float32) @ LUMA_WEIGHTS


def laplacian_variance(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of ``[H, W]`` over the interior pixels (NaN
    for images smaller than 3 x 3)."""
    gray = np.asarray(gray, np.float64)
    if gray.ndim != 2:
        raise InputError(f"image must be [H, W], got {list(gray.shape)}")
    if min(gray.shape) < 3:
        return float("nan")
    centre = gray[1:-1, 1:-1]
    laplacian = gray[:-2, 1:-1] + gray[2:, 1:-1] + gray[1:-1, :-2] + gray[1:-1, 2:] - 4 * centre
    return float(laplacian.var())


def crop(gray: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The ``(x0, y0, x1, y1)`` box of ``[H, W]`` (x1, y1 exclusive)."""
    x0, y0, x1, y1 = box
    return gray[y0:y1, x0:x1]


def static_mask(lumas: np.ndarray, quantile: float = STATIC_QUANTILE) -> np.ndarray:
    """Pixels ``[H, W]`` whose temporal standard deviation over ``[F, H, W]`` is at most
    its ``quantile`` quantile."""
    if not 0 < quantile <= 1:
        raise InputError(f"static quantile must be in (0, 1], got {quantile}")
    spread = lumas.std(axis=0)
    return spread <= np.quantile(spread, quantile)


def flicker(lumas: np.ndarray, quantile: float = STATIC_QUANTILE) -> float:
    """Mean absolute frame-to-frame luma change over the static pixels of ``[F, H, W]``
    (NaN for fewer than two frames)."""
    lumas = np.asarray(lumas, np.float32)
    if lumas.ndim != 3:
        raise InputError(f"lumas must be [F, H, W], got {list(lumas.shape)}")
    if len(lumas) < 2:
        return float("nan")
    mask = static_mask(lumas, quantile)
    changes = [np.abs(b[mask] - a[mask]).mean(dtype=np.float64) for a, b in pairwise(lumas)]
    return float(np.mean(changes))
