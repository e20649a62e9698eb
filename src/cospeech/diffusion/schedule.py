"""Rectified-flow noise schedule with a timestep shift, in Wan2.1 / diffusers conventions.

A noise level is ``sigma`` in [0, 1]: ``x_t = (1 - sigma) * x0 + sigma * noise``. The model
sees the timestep ``t = 1000 * sigma`` and predicts the flow ``v = noise - x0``. Schedules
are built on an unshifted grid ``u`` in [0, 1] and warped by the shift
``sigma(u) = s * u / (1 + (s - 1) * u)`` (s > 1 spends more steps at high noise).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from cospeech.errors import InputError

NUM_TRAIN_TIMESTEPS = 1000


def shift_sigma(u: Tensor | float, shift: float) -> Tensor:
    """The shifted noise level ``s * u / (1 + (s - 1) * u)`` of unshifted levels ``u`` in [0, 1]."""
    _check_shift(shift)
    u = u if isinstance(u, Tensor) else torch.tensor(u, dtype=torch.float64)
    return shift * u / (1 + (shift - 1) * u)


def unshift_sigma(sigma: Tensor | float, shift: float) -> Tensor:
    """Inverse of :func:`shift_sigma`: ``u = sigma / (s - (s - 1) * sigma)``."""
    _check_shift(shift)
    sigma = sigma if isinstance(sigma, Tensor) else torch.tensor(sigma, dtype=torch.float64)
    return sigma / (shift - (shift - 1) * sigma)


def sigma_to_timestep(sigma: Tensor) -> Tensor:
    """The model's timestep input ``t = 1000 * sigma``."""
    return sigma * NUM_TRAIN_TIMESTEPS


def timestep_to_sigma(timestep: Tensor) -> Tensor:
    """Inverse of :func:`sigma_to_timestep`."""
    return timestep / NUM_TRAIN_TIMESTEPS


def sampling_sigmas(num_steps: int, shift: float, start: float = 1.0, end: float = 0.0) -> Tensor:
    """Noise levels of an ``num_steps``-step sampler, ``[num_steps + 1]`` float64, ending at 0.

    ``u = linspace(start, end, num_steps + 1)[:-1]`` is shifted and a final 0 appended, the
    construction of diffusers' flow schedulers given explicit sigmas. ``end=0`` (default)
    is the plain Euler grid from pure noise to data; ``end=1/1000`` reproduces diffusers'
    ``UniPCMultistepScheduler(use_flow_sigmas=True, flow_shift=shift)`` (Wan pipelines);
    ``start=0.999`` the schedule of Wan2.1's own solver.
    """
    if num_steps < 1:
        raise InputError(f"num_steps must be >= 1, got {num_steps}")
    if not 0.0 <= end < start <= 1.0:
        raise InputError(f"need 0 <= end < start <= 1, got start={start}, end={end}")
    u = torch.linspace(start, end, num_steps + 1, dtype=torch.float64)[:-1]
    return torch.cat([shift_sigma(u, shift), torch.zeros(1, dtype=torch.float64)])


def step_list_sigmas(timesteps: Sequence[float], shift: float) -> Tensor:
    """Noise levels ``[len(timesteps)]`` of a few-step student's step list, warped by the shift.

    ``[1000, 750, 500, 250]`` with shift 5 gives the CausVid / Self-Forcing schedule
    ``sigma_k = shift_sigma(t_k / 1000)`` (1.0, 0.9375, 0.8333, 0.625). Steps must be strictly
    decreasing in (0, 1000]; the sampler returns its x0 prediction at the last one.
    """
    steps = torch.as_tensor(list(timesteps), dtype=torch.float64)
    if steps.ndim != 1 or steps.numel() == 0:
        raise InputError("the step list must be a non-empty list of timesteps")
    if bool((steps <= 0).any() or (steps > NUM_TRAIN_TIMESTEPS).any()):
        raise InputError(f"timesteps must lie in (0, {NUM_TRAIN_TIMESTEPS}], got {list(timesteps)}")
    if bool((steps[1:] >= steps[:-1]).any()):
        raise InputError(f"timesteps must be strictly decreasing, got {list(timesteps)}")
    return shift_sigma(timestep_to_sigma(steps), shift)


def add_noise(x0: Tensor, noise: Tensor, sigma: Tensor | float) -> Tensor:
    """``x_t = (1 - sigma) * x0 + sigma * noise``; ``sigma`` a scalar or ``[B]``."""
    sigma = _broadcast(sigma, x0)
    return (1 - sigma) * x0 + sigma * noise


def flow_target(x0: Tensor, noise: Tensor) -> Tensor:
    """The flow-matching regression target ``v = noise - x0`` (``dx_t / dsigma``)."""
    return noise - x0


def flow_to_x0(x_t: Tensor, flow: Tensor, sigma: Tensor | float) -> Tensor:
    """Clean sample implied by a flow prediction: ``x0 = x_t - sigma * v``."""
    return x_t - _broadcast(sigma, x_t) * flow


def flow_to_noise(x_t: Tensor, flow: Tensor, sigma: Tensor | float) -> Tensor:
    """Noise implied by a flow prediction: ``noise = x_t + (1 - sigma) * v``."""
    return x_t + (1 - _broadcast(sigma, x_t)) * flow


def x0_to_flow(x_t: Tensor, x0: Tensor, sigma: Tensor | float) -> Tensor:
    """Flow implied by a clean-sample prediction: ``v = (x_t - x0) / sigma`` (sigma > 0)."""
    return (x_t - x0) / _broadcast(sigma, x_t)


def sample_training_sigmas(
    size: int | Sequence[int],
    shift: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Noise levels for flow-matching training: ``u ~ U[0, 1)``, then shifted. float32."""
    size = (size,) if isinstance(size, int) else tuple(size)
    u = torch.rand(size, generator=generator, device=device, dtype=torch.float64)
    return shift_sigma(u, shift).float()


def sample_dmd_sigmas(
    size: int | Sequence[int],
    shift: float = 5.0,
    min_timestep: float = 20.0,
    max_timestep: float = 980.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Noise levels for DMD score evaluation (CausVid / Self-Forcing). float32.

    An integer timestep uniform in [0, 1000) is shifted, ``t' = 1000 * shift_sigma(t / 1000)``,
    and clamped to ``[min_timestep, max_timestep]``; the result is returned as ``t' / 1000``.
    """
    if not 0 <= min_timestep <= max_timestep <= NUM_TRAIN_TIMESTEPS:
        raise InputError(f"need 0 <= min <= max <= 1000, got {min_timestep}, {max_timestep}")
    size = (size,) if isinstance(size, int) else tuple(size)
    t = torch.randint(0, NUM_TRAIN_TIMESTEPS, size, generator=generator, device=device)
    shifted = sigma_to_timestep(shift_sigma(timestep_to_sigma(t.double()), shift))
    return timestep_to_sigma(shifted.clamp(min_timestep, max_timestep)).float()


def _broadcast(sigma: Tensor | float, like: Tensor) -> Tensor | float:
    """A ``[B]`` sigma reshaped to ``[B, 1, ...]`` against ``like``; scalars pass through."""
    if isinstance(sigma, Tensor) and sigma.ndim > 0:
        sigma = sigma.to(device=like.device, dtype=like.dtype)
        return sigma.reshape(sigma.shape + (1,) * (like.ndim - sigma.ndim))
    return float(sigma)


def _check_shift(shift: float) -> None:
    if not shift > 0:
        raise InputError(f"shift must be > 0, got {shift}")
