"""Samplers for flow models: Euler over a sigma schedule, and a few-step re-noising sampler.

Both take the model as a plain callable ``model(x_t [B, C, F, H, W], t [B], **conditions)
-> flow``, so a caller can pass anything with that signature in its place: a guided
teacher, a compiled module, or a function that runs the model on overlapping windows of a
long video and fuses them. Guidance wraps whatever callable is given.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from cospeech.diffusion.guidance import FlowModel, Guidance
from cospeech.diffusion.schedule import add_noise, flow_to_x0, sigma_to_timestep
from cospeech.errors import InputError
from cospeech.progress import track


@dataclass(frozen=True)
class SamplerStep:
    """What a progress callback sees after each step.

    ``latents`` is the sampler's state after the step (at ``sigma_next``), ``x0`` the
    clean-sample prediction made at ``sigma``; both ``[B, C, F, H, W]``.
    """

    index: int
    num_steps: int
    sigma: float
    sigma_next: float
    latents: Tensor
    x0: Tensor


StepCallback = Callable[[SamplerStep], None]


def sample_euler(
    model: FlowModel,
    latents: Tensor,
    conditions: Mapping[str, Any] | None = None,
    *,
    sigmas: Tensor,
    guidance: Guidance | None = None,
    callback: StepCallback | None = None,
    progress: bool = False,
) -> Tensor:
    """Integrate the flow ODE with Euler steps ``x <- x + (sigma_next - sigma) * v``.

    ``latents`` ``[B, C, F, H, W]`` is the state at ``sigmas[0]`` (pure noise when it is 1);
    ``sigmas`` ``[N + 1]`` is decreasing and ends at the level to stop at (0 for data, see
    :func:`~cospeech.diffusion.schedule.sampling_sigmas`). Returns the final state, in the
    dtype of ``latents``.
    """
    sigma_list = _check_sigmas(sigmas, latents)
    if len(sigma_list) < 2:
        raise InputError("Euler sigmas need at least a start and an end level")
    x = latents
    num_steps = len(sigma_list) - 1
    for index in track(range(num_steps), "sampling", unit="step", enabled=progress, leave=False):
        sigma, sigma_next = sigma_list[index], sigma_list[index + 1]
        flow = _predict_flow(model, x, sigma, conditions, guidance)
        x0 = flow_to_x0(x, flow, sigma)
        x = x + (sigma_next - sigma) * flow
        if callback is not None:
            callback(SamplerStep(index, num_steps, sigma, sigma_next, x, x0))
    return x


def sample_few_step(
    model: FlowModel,
    latents: Tensor,
    conditions: Mapping[str, Any] | None = None,
    *,
    sigmas: Tensor,
    generator: torch.Generator | None = None,
    guidance: Guidance | None = None,
    callback: StepCallback | None = None,
    progress: bool = False,
) -> Tensor:
    """Few-step sampling of a distilled student (CausVid / Self-Forcing inference).

    At each level ``sigmas[k]`` the model's flow gives an x0 prediction; before the next
    level it is re-noised with fresh noise, ``x = (1 - sigma_next) x0 + sigma_next * eps``
    (``eps`` drawn from ``generator`` on the device of ``latents``). Returns the x0
    prediction of the last level. ``sigmas`` ``[K]`` is decreasing and all > 0, e.g.
    :func:`~cospeech.diffusion.schedule.step_list_sigmas` of ``[1000, 750, 500, 250]``.
    """
    sigma_list = _check_sigmas(sigmas, latents)
    if sigma_list[-1] <= 0:
        raise InputError("few-step sigmas must all be > 0 (the last x0 prediction is returned)")
    x = latents
    num_steps = len(sigma_list)
    for index in track(range(num_steps), "sampling", unit="step", enabled=progress, leave=False):
        sigma = sigma_list[index]
        sigma_next = sigma_list[index + 1] if index + 1 < num_steps else 0.0
        x0 = flow_to_x0(x, _predict_flow(model, x, sigma, conditions, guidance), sigma)
        if index + 1 < num_steps:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = add_noise(x0, noise, sigma_next)
        else:
            x = x0
        if callback is not None:
            callback(SamplerStep(index, num_steps, sigma, sigma_next, x, x0))
    return x0


def _predict_flow(
    model: FlowModel,
    x: Tensor,
    sigma: float,
    conditions: Mapping[str, Any] | None,
    guidance: Guidance | None,
) -> Tensor:
    """The (guided) flow at ``x``, cast to ``x``'s dtype; timestep ``1000 * sigma`` per sample."""
    t = sigma_to_timestep(torch.full((x.shape[0],), sigma, device=x.device, dtype=torch.float32))
    conditions = conditions or {}
    flow = model(x, t, **conditions) if guidance is None else guidance(model, x, t, conditions)
    if flow.shape != x.shape:
        raise InputError(f"model returned flow of shape {list(flow.shape)} for {list(x.shape)}")
    return flow.to(x.dtype)


def _check_sigmas(sigmas: Tensor, latents: Tensor) -> list[float]:
    """``sigmas`` as a list of floats, after checking it is a decreasing 1-D schedule in [0, 1]."""
    if latents.ndim < 2:
        raise InputError(f"latents must be batched [B, ...], got shape {list(latents.shape)}")
    sigma_list = [float(s) for s in torch.as_tensor(sigmas).flatten()]
    if torch.as_tensor(sigmas).ndim != 1 or not sigma_list:
        raise InputError("sigmas must be a non-empty 1-D schedule")
    if any(not 0.0 <= s <= 1.0 for s in sigma_list):
        raise InputError(f"sigmas must lie in [0, 1], got {sigma_list}")
    if any(b >= a for a, b in itertools.pairwise(sigma_list)):
        raise InputError(f"sigmas must be strictly decreasing, got {sigma_list}")
    return sigma_list
