"""Distribution matching distillation (DMD, paper Eq. 4), as CausVid / Self-Forcing run it.

The student's clean prediction ``x0`` is noised to a random level, ``x_t = (1 - sigma) x0
+ sigma eps``; the frozen teacher (real score, with guidance) and the critic (fake score,
trained on the student's samples) each predict the clean sample from ``x_t``. For flow
matching the score is ``s(x_t) = ((1 - sigma) x0_hat - x_t) / sigma^2``, so

    s_fake - s_real = (1 - sigma) / sigma^2 * (x0_fake - x0_real),

and the KL gradient of Eq. 4 points along ``x0_fake - x0_real``. It is normalised per sample
by ``mean |x0 - x0_real|`` (DMD Eq. 8) and applied through the surrogate
``0.5 * ||x0 - stopgrad(x0 - grad)||^2`` (mean, float64), whose gradient with respect to
``x0`` is exactly ``grad / numel``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from cospeech.diffusion import add_noise, flow_target

X0Predictor = Callable[[Tensor, Tensor], Tensor]
"""``predict(x_t [B, C, F, h, w], sigma [B]) -> x0 [B, C, F, h, w]``."""

FlowPredictor = Callable[[Tensor, Tensor], Tensor]
"""``predict(x_t [B, C, F, h, w], sigma [B]) -> flow [B, C, F, h, w]``."""


def dmd_gradient(x0: Tensor, x0_real: Tensor, x0_fake: Tensor) -> Tensor:
    """The normalised DMD direction ``(x0_fake - x0_real) / mean|x0 - x0_real|`` per sample
    (mean over all but the batch dimension); non-finite entries (a zero normaliser) -> 0.
    All ``[B, ...]``."""
    dims = tuple(range(1, x0.ndim))
    normaliser = (x0 - x0_real).abs().mean(dim=dims, keepdim=True)
    return torch.nan_to_num((x0_fake - x0_real) / normaliser)


def dmd_surrogate(x0: Tensor, grad: Tensor) -> Tensor:
    """``0.5 * mean((x0 - stopgrad(x0 - grad))^2)`` in float64: its gradient with respect to
    ``x0`` is ``grad / x0.numel()`` (the loss value itself is ``0.5 * mean(grad^2)``)."""
    x0 = x0.double()
    return 0.5 * F.mse_loss(x0, (x0 - grad.double()).detach())


def dmd_loss(
    x0: Tensor, noise: Tensor, sigma: Tensor, real: X0Predictor, fake: X0Predictor
) -> tuple[Tensor, dict[str, float]]:
    """The generator's DMD loss for student samples ``x0`` ``[B, C, F, h, w]`` (with grad),
    noised with ``noise`` (same shape) to levels ``sigma`` ``[B]``. ``real`` / ``fake``: the
    guided teacher's and the critic's clean predictions (evaluated without gradient)."""
    with torch.no_grad():
        x_t = add_noise(x0.detach(), noise, sigma)
        x0_real, x0_fake = real(x_t, sigma), fake(x_t, sigma)
        grad = dmd_gradient(x0.detach(), x0_real, x0_fake)
    return dmd_surrogate(x0, grad), {"dmd_grad": float(grad.abs().mean())}


def critic_loss(flow: FlowPredictor, x0: Tensor, noise: Tensor, sigma: Tensor) -> Tensor:
    """The critic's flow-matching loss on student samples ``x0`` (detached: no gradient
    reaches the student): ``mse(flow(x_t, sigma), noise - x0)``."""
    x0 = x0.detach()
    prediction = flow(add_noise(x0, noise, sigma), sigma)
    return F.mse_loss(prediction, flow_target(x0, noise))
