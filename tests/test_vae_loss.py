"""The VAE reconstruction loss against scikit-image, numpy and torch.distributions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from cospeech.errors import InputError
from cospeech.models.vae.loss import VAELossWeights, gradient_l1, kl_divergence, ssim, vae_loss


def videos(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(2, 3, 2, 24, 20, generator=gen, dtype=torch.float64) * 2 - 1) * 0.8
    y = (x + 0.2 * torch.randn(x.shape, generator=gen, dtype=torch.float64)).clamp(-1, 1)
    return x, y


def test_ssim_matches_scikit_image():
    x, y = videos()
    expected = []
    for b in range(2):
        for f in range(2):
            expected.append(
                structural_similarity(
                    x[b, :, f].numpy(),
                    y[b, :, f].numpy(),
                    channel_axis=0,
                    data_range=2.0,
                    gaussian_weights=True,
                    sigma=1.5,
                    use_sample_covariance=False,
                )
            )
    assert float(ssim(x, y)) == pytest.approx(float(np.mean(expected)), abs=1e-6)
    assert float(ssim(x, x)) == pytest.approx(1.0, abs=1e-9)


def test_gradient_term_matches_numpy():
    x, y = videos(1)
    a, b = x.numpy(), y.numpy()
    dx = np.abs(np.diff(a, axis=-1) - np.diff(b, axis=-1)).mean()
    dy = np.abs(np.diff(a, axis=-2) - np.diff(b, axis=-2)).mean()
    assert float(gradient_l1(x, y)) == pytest.approx(0.5 * (dx + dy), rel=1e-9)
    # A constant offset has no edges to get wrong.
    assert float(gradient_l1(x, x + 0.3)) == pytest.approx(0.0, abs=1e-12)


def test_kl_matches_torch_distributions():
    gen = torch.Generator().manual_seed(2)
    mean = torch.randn(2, 4, 3, 2, 2, generator=gen, dtype=torch.float64)
    logvar = torch.randn(2, 4, 3, 2, 2, generator=gen, dtype=torch.float64)
    posterior = torch.distributions.Normal(mean, torch.exp(0.5 * logvar))
    prior = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    expected = torch.distributions.kl_divergence(posterior, prior).mean()
    torch.testing.assert_close(kl_divergence(mean, logvar), expected)


def test_total_is_the_weighted_sum():
    x, y = videos(3)
    mean, logvar = torch.randn(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    weights = VAELossWeights(l1=2.0, ssim=0.5, gradient=0.25, kl=0.1)
    terms = vae_loss(x, y, mean, logvar, weights)
    expected = (
        2.0 * (x - y).abs().mean()
        + 0.5 * (1 - ssim(x, y))
        + 0.25 * gradient_l1(x, y)
        + 0.1 * kl_divergence(mean, logvar)
    )
    torch.testing.assert_close(terms.total, expected)
    assert set(terms.as_dict()) == {"total", "l1", "ssim", "gradient", "kl"}
    assert float(vae_loss(x, x).total) == pytest.approx(0.0, abs=1e-9)
    assert float(vae_loss(x, y).kl) == 0.0


def test_loss_rejects_mismatched_or_small_inputs():
    x, y = videos()
    with pytest.raises(InputError):
        vae_loss(x, y[:, :, :1])
    with pytest.raises(InputError):
        ssim(x[..., :8, :8], y[..., :8, :8])


def test_pixel_weights_make_l1_and_gradient_weighted_means_as_in_numpy():
    x, y = videos(4)
    gen = torch.Generator().manual_seed(5)
    w = torch.rand(x.shape[0], 1, *x.shape[2:], generator=gen, dtype=x.dtype) * 3
    a, b, wn = x.numpy(), y.numpy(), np.broadcast_to(w.numpy(), x.shape)
    l1 = (wn * np.abs(a - b)).sum() / wn.sum()
    ex = np.abs(np.diff(a, axis=-1) - np.diff(b, axis=-1))
    ey = np.abs(np.diff(a, axis=-2) - np.diff(b, axis=-2))
    wx, wy = wn[..., :, 1:], wn[..., 1:, :]
    gradient = 0.5 * ((wx * ex).sum() / wx.sum() + (wy * ey).sum() / wy.sum())
    terms = vae_loss(x, y, pixel_weights=w)
    assert float(terms.l1) == pytest.approx(l1, rel=1e-9)
    assert float(terms.gradient) == pytest.approx(gradient, rel=1e-9)
    # Equal weights are the plain means; a weight map of the wrong shape is refused.
    plain = vae_loss(x, y)
    torch.testing.assert_close(
        vae_loss(x, y, pixel_weights=torch.full_like(w, 4.0)).total, plain.total
    )
    with pytest.raises(InputError, match="pixel weights"):
        vae_loss(x, y, pixel_weights=w[:, :, :1])
