"""The flow-matching schedule against closed forms and diffusers' flow schedulers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler
from scipy import stats

from cospeech.diffusion import (
    add_noise,
    flow_target,
    flow_to_noise,
    flow_to_x0,
    sample_dmd_sigmas,
    sample_euler,
    sample_training_sigmas,
    sampling_sigmas,
    shift_sigma,
    sigma_to_timestep,
    step_list_sigmas,
    unshift_sigma,
    x0_to_flow,
)
from cospeech.errors import InputError


def test_shift_formula_and_inverse():
    u = torch.linspace(0, 1, 11, dtype=torch.float64)
    s = 5.0
    expected = s * u / (1 + (s - 1) * u)
    torch.testing.assert_close(shift_sigma(u, s), expected)
    torch.testing.assert_close(unshift_sigma(expected, s), u)
    torch.testing.assert_close(shift_sigma(u, 1.0), u)
    assert float(shift_sigma(0.5, 3.0)) == pytest.approx(0.75)


@pytest.mark.parametrize(("num_steps", "shift"), [(4, 1.0), (10, 3.0), (25, 5.0)])
def test_sigmas_match_diffusers_flow_match_euler(num_steps, shift):
    ours = sampling_sigmas(num_steps, shift)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
    u = np.linspace(1.0, 0.0, num_steps + 1)[:-1]
    scheduler.set_timesteps(sigmas=u.tolist())
    torch.testing.assert_close(scheduler.sigmas.double(), ours, atol=1e-6, rtol=0)
    torch.testing.assert_close(
        scheduler.timesteps.double(), sigma_to_timestep(ours[:-1]), atol=1e-4, rtol=0
    )


@pytest.mark.parametrize(("num_steps", "shift"), [(10, 3.0), (50, 5.0)])
def test_sigmas_match_diffusers_unipc_flow_schedule(num_steps, shift):
    # The schedule of diffusers' Wan pipelines: UniPC with flow sigmas and flow_shift.
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift
    )
    scheduler.set_timesteps(num_steps)
    ours = sampling_sigmas(num_steps, shift, end=1 / 1000)
    # diffusers nudges a first sigma of exactly 1 down by 1e-6.
    torch.testing.assert_close(scheduler.sigmas.double(), ours, atol=2e-6, rtol=0)


def test_euler_sampler_equals_diffusers_euler_steps():
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(4, 4, generator=gen) * 0.3
    x = torch.randn(2, 4, 3, 2, 2, generator=gen)

    def model(x_t, t):
        # A nonlinear, time-dependent flow, so that every step matters.
        mixed = torch.einsum("oc,bcfhw->bofhw", weight, x_t)
        return torch.tanh(mixed) * (t / 1000).view(-1, 1, 1, 1, 1) + 0.1 * x_t

    num_steps, shift = 12, 3.0
    scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 0.0, num_steps + 1)[:-1].tolist())
    reference = x.clone()
    for t in scheduler.timesteps:
        flow = model(reference, t.expand(reference.shape[0]))
        reference = scheduler.step(flow, t, reference).prev_sample
    ours = sample_euler(model, x, sigmas=sampling_sigmas(num_steps, shift))
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


def test_noising_matches_diffusers_scale_noise():
    scheduler = FlowMatchEulerDiscreteScheduler(shift=5.0)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 0.0, 9)[:-1].tolist())
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(1, 4, 5, 8, 8, generator=gen)
    noise = torch.randn(1, 4, 5, 8, 8, generator=gen)
    t = scheduler.timesteps[3]
    expected = scheduler.scale_noise(x0, t.reshape(1), noise)
    torch.testing.assert_close(add_noise(x0, noise, scheduler.sigmas[3]), expected)


def test_flow_conversions_round_trip():
    gen = torch.Generator().manual_seed(2)
    x0, noise = torch.randn(2, 3, 4, generator=gen), torch.randn(2, 3, 4, generator=gen)
    sigma = torch.tensor([0.3, 0.85])
    x_t = add_noise(x0, noise, sigma)
    v = flow_target(x0, noise)
    torch.testing.assert_close(x_t, (1 - sigma.view(2, 1, 1)) * x0 + sigma.view(2, 1, 1) * noise)
    torch.testing.assert_close(flow_to_x0(x_t, v, sigma), x0)
    torch.testing.assert_close(flow_to_noise(x_t, v, sigma), noise)
    torch.testing.assert_close(x0_to_flow(x_t, x0, sigma), v)
    # Scalars broadcast too, and the flow is the sigma-derivative of x_t.
    # In float64: x_t is linear in sigma, so only rounding (1e-16 x |x_t| / 2 eps) remains;
    # in float32 that rounding alone would be ~1e-4.
    eps, x0, noise = 1e-3, x0.double(), noise.double()
    numeric = (add_noise(x0, noise, 0.5 + eps) - add_noise(x0, noise, 0.5 - eps)) / (2 * eps)
    torch.testing.assert_close(numeric, flow_target(x0, noise), atol=1e-9, rtol=0)


def test_step_list_warping_matches_self_forcing_table():
    # Self-Forcing warps its steps through a 1000-entry shifted table:
    # warped(t) = table[1000 - t] with table[i] = 1000 * shift(1 - i / 1000).
    shift = 5.0
    table = 1000 * shift_sigma(torch.linspace(1, 0, 1001, dtype=torch.float64)[:-1], shift)
    steps = [1000, 750, 500, 250]
    expected = torch.stack([table[1000 - t] for t in steps]) / 1000
    torch.testing.assert_close(step_list_sigmas(steps, shift), expected)
    torch.testing.assert_close(
        step_list_sigmas(steps, shift),
        torch.tensor([1.0, 0.9375, 5 / 6, 0.625], dtype=torch.float64),
    )


@pytest.mark.parametrize("bad", [[], [1000, 1000], [500, 750], [1200, 500], [1000, 0]])
def test_step_list_rejects_bad_lists(bad):
    with pytest.raises(InputError):
        step_list_sigmas(bad, 5.0)


def test_training_sigmas_are_shifted_uniform():
    gen = torch.Generator().manual_seed(3)
    sigmas = sample_training_sigmas(20000, 3.0, generator=gen)
    assert sigmas.dtype == torch.float32 and sigmas.shape == (20000,)
    u = unshift_sigma(sigmas.double(), 3.0).numpy()
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    assert sample_training_sigmas((2, 3), 1.0, generator=gen).shape == (2, 3)


def test_dmd_sigmas_follow_the_reference_recipe():
    gen = torch.Generator().manual_seed(4)
    n, shift = 40000, 5.0
    sigmas = sample_dmd_sigmas(n, shift, 20, 980, generator=gen).double()
    assert float(sigmas.min()) >= 0.02 - 1e-7 and float(sigmas.max()) <= 0.98 + 1e-7
    # Clamped mass: shift(t/1000) >= 0.98 for t >= 908, <= 0.02 for t <= 4.
    assert float((sigmas > 0.98 - 1e-6).double().mean()) == pytest.approx(0.092, abs=0.006)
    assert float((sigmas < 0.02 + 1e-6).double().mean()) == pytest.approx(0.005, abs=0.002)
    inner = sigmas[(sigmas > 0.0201) & (sigmas < 0.9799)]
    raw = unshift_sigma(inner, shift) * 1000
    torch.testing.assert_close(raw, raw.round(), atol=2e-3, rtol=0)
    counts = torch.bincount(raw.round().long(), minlength=1000)[5:908].double()
    assert stats.chisquare(counts.numpy()).pvalue > 1e-4


def test_sampling_sigmas_validates():
    with pytest.raises(InputError):
        sampling_sigmas(0, 3.0)
    with pytest.raises(InputError):
        sampling_sigmas(4, 3.0, start=0.5, end=0.6)
    with pytest.raises(InputError):
        shift_sigma(0.5, 0.0)
