"""The Frechet distance between two Gaussians: the shared core of FID and FVD.

FID (Heusel et al. 2017) and FVD (Unterthiner et al. 2018) fit a Gaussian to the network
features of each set of images / videos and report

    d^2 = |mu_1 - mu_2|^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)).

``Tr((S_1 S_2)^(1/2))`` is computed as the sum of the square roots of the eigenvalues of the
symmetric positive semi-definite ``S_1^(1/2) S_2 S_1^(1/2)`` (it has the eigenvalues of
``S_1 S_2``), in float64 with rounding-negative eigenvalues set to 0. Unlike
``scipy.linalg.sqrtm(S_1 @ S_2)`` (pytorch-fid's way) this needs no offset for singular
covariances (fewer samples than feature dimensions) and gives no complex parts; it agrees
with it where that is accurate (tested). The covariances are the unbiased sample ones
(``numpy.cov``, ``N - 1``), as in the reference FID code.
"""

from __future__ import annotations

import numpy as np

from cospeech.errors import InputError


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and sample covariance ``[D, D]`` of ``[N, D]`` features (N >= 2)."""
    mean, _ = _mean_of(features)
    return mean, np.atleast_2d(np.cov(np.asarray(features, np.float64), rowvar=False))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (eigenvalues clipped at 0)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def _check_statistics(mu: np.ndarray, sigma: np.ndarray, name: str) -> None:
    if mu.ndim != 1 or sigma.shape != (mu.size, mu.size):
        raise InputError(
            f"{name}: mean [D] and covariance [D, D] expected, got {list(mu.shape)}, "
            f"{list(sigma.shape)}"
        )
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise InputError(f"{name}: statistics contain NaN or infinite values")


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Squared Frechet distance ``d^2`` between N(mu1, sigma1) and N(mu2, sigma2) (>= 0;
    rounding below 0 is returned as 0)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    _check_statistics(mu1, sigma1, "first set")
    _check_statistics(mu2, sigma2, "second set")
    if mu1.shape != mu2.shape:
        raise InputError(f"feature sizes differ: {mu1.size} and {mu2.size}")
    root1 = _psd_sqrt(sigma1)
    product = root1 @ sigma2 @ root1
    eigenvalues = np.linalg.eigvalsh((product + product.T) / 2)
    cross = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
    difference = mu1 - mu2
    value = difference @ difference + np.trace(sigma1) + np.trace(sigma2) - 2 * cross
    return float(max(value, 0.0))


def frechet_distance_of_features(first: np.ndarray, second: np.ndarray) -> float:
    """``d^2`` between the Gaussians fitted to features ``[N, D]`` and ``[M, D]``.

    With fewer samples than dimensions (``N + M <= D``, the usual case for a small FID on
    2048-d features) the ``[D, D]`` covariances are never formed: with the centred features
    ``A [N, D]``, ``B [M, D]``, ``S_1 = A^T A / (N - 1)`` and ``S_2 = B^T B / (M - 1)``, the
    non-zero eigenvalues of ``S_1 S_2`` are the squared singular values of
    ``A B^T / sqrt((N - 1)(M - 1))``, so ``Tr((S_1 S_2)^(1/2))`` is the sum of those singular
    values (an ``[N, M]`` SVD) and ``Tr S_1 = |A|_F^2 / (N - 1)``. Exact, not an
    approximation (tested against the covariance form).
    """
    mu1, _ = _mean_of(first)
    mu2, _ = _mean_of(second)
    if mu1.shape != mu2.shape:
        raise InputError(f"feature sizes differ: {mu1.size} and {mu2.size}")
    a = np.asarray(first, np.float64)
    b = np.asarray(second, np.float64)
    if len(a) + len(b) > a.shape[1]:
        return frechet_distance(*gaussian_statistics(a), *gaussian_statistics(b))
    a, b = a - mu1, b - mu2
    n, m = len(a) - 1, len(b) - 1
    cross = np.linalg.svd(a @ b.T, compute_uv=False).sum() / np.sqrt(n * m)
    difference = mu1 - mu2
    value = difference @ difference + (a * a).sum() / n + (b * b).sum() / m - 2 * cross
    return float(max(value, 0.0))


def _mean_of(features: np.ndarray) -> tuple[np.ndarray, int]:
    """Validated mean ``[D]`` and sample count of ``[N, D]`` features (N >= 2)."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or features.shape[0] < 2 or features.shape[1] < 1:
        raise InputError(f"features must be [N >= 2, D >= 1], got {list(features.shape)}")
    if not np.isfinite(features).all():
        raise InputError("features contain NaN or infinite values")
    return features.mean(axis=0), features.shape[0]
