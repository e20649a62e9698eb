"""Samplers against closed-form flows, guidance arithmetic, re-noising and determinism."""

from __future__ import annotations

import pytest
import torch

from cospeech.diffusion import (
    Guidance,
    SamplerStep,
    add_noise,
    sample_euler,
    sample_few_step,
    sampling_sigmas,
    step_list_sigmas,
    unshift_sigma,
)
from cospeech.errors import InputError

SHAPE = (2, 4, 3, 4, 4)  # [B, C, F, H, W]


def point_mass_model(target):
    """Exact flow when the data is the single point ``target``: v = (x_t - x*) / sigma."""

    def model(x_t, t):
        sigma = (t / 1000).view(-1, 1, 1, 1, 1)
        return (x_t - target) / sigma

    return model


def gaussian_model(mu: float, c: float):
    """Exact flow E[noise - x0 | x_t] for data N(mu, c^2) per element."""

    def model(x_t, t):
        s = (t.double() / 1000).view(-1, 1, 1, 1, 1)
        mean_t = (1 - s) * mu
        var_t = (1 - s) ** 2 * c**2 + s**2
        return ((s - (1 - s) * c**2) / var_t * (x_t - mean_t) - mu).to(x_t.dtype)

    return model


@pytest.mark.parametrize("shift", [1.0, 5.0])
def test_euler_lands_on_a_point_mass(shift):
    gen = torch.Generator().manual_seed(0)
    target = torch.randn(SHAPE, generator=gen, dtype=torch.float64)
    noise = torch.randn(SHAPE, generator=gen, dtype=torch.float64)
    out = sample_euler(point_mass_model(target), noise, sigmas=sampling_sigmas(7, shift))
    # Exact up to the float32 timestep the model receives.
    torch.testing.assert_close(out, target, atol=1e-6, rtol=0)


def test_euler_reaches_gaussian_statistics():
    mu, c = 1.5, 0.3
    gen = torch.Generator().manual_seed(1)
    noise = torch.randn(4, 4, 8, 32, 32, generator=gen, dtype=torch.float64)
    out = sample_euler(gaussian_model(mu, c), noise, sigmas=sampling_sigmas(200, 3.0))
    # 131k samples: standard errors ~1e-3 for the mean and ~6e-4 for the std.
    assert float(out.mean()) == pytest.approx(mu, abs=0.01)
    assert float(out.std()) == pytest.approx(c, abs=0.01)
    # A wrong flow (e.g. sign flipped) would not get there.
    wrong = sample_euler(
        lambda x, t: -gaussian_model(mu, c)(x, t), noise, sigmas=sampling_sigmas(200, 3.0)
    )
    assert abs(float(wrong.mean()) - mu) > 1.0


def test_euler_passes_timesteps_and_reports_steps():
    seen_t, steps = [], []

    def model(x_t, t, pose):
        seen_t.append(t.clone())
        assert t.shape == (x_t.shape[0],)
        return torch.zeros_like(x_t) + pose.mean()

    sigmas = sampling_sigmas(5, 3.0)
    sample_euler(
        model,
        torch.zeros(SHAPE),
        {"pose": torch.ones(2, 3)},
        sigmas=sigmas,
        callback=steps.append,
    )
    expected = (1000 * sigmas[:-1]).float()
    torch.testing.assert_close(torch.stack([t[0] for t in seen_t]), expected)
    assert [s.index for s in steps] == list(range(5))
    assert all(isinstance(s, SamplerStep) and s.num_steps == 5 for s in steps)
    assert steps[-1].sigma_next == 0.0


def test_guidance_combines_the_two_branches():
    calls = []

    def model(x_t, t, pose, reference, audio=None):
        calls.append({"pose": pose.clone(), "reference": reference.clone()})
        return x_t * 0 + 2.0 * pose.sum() + 5.0 * reference.sum() + 100.0

    pose, reference = torch.ones(2, 3), torch.full((2, 2), 0.5)
    x = torch.zeros(SHAPE)
    t = torch.full((2,), 500.0)
    for drop, uncond_value in [
        (("pose",), 5.0 * 2 + 100),
        (("reference",), 2.0 * 6 + 100),
        (("pose", "reference"), 100.0),
    ]:
        calls.clear()
        guidance = Guidance(scale=3.0, drop=drop)
        out = guidance(model, x, t, {"pose": pose, "reference": reference})
        cond_value = 2.0 * 6 + 5.0 * 2 + 100
        expected = uncond_value + 3.0 * (cond_value - uncond_value)
        torch.testing.assert_close(out, torch.full(SHAPE, expected))
        assert len(calls) == 2
        for name in ("pose", "reference"):
            dropped = calls[1][name]
            assert bool((dropped == 0).all()) == (name in drop)


def test_guidance_null_values_and_scale_one():
    calls = []

    def model(x_t, t, pose, style):
        calls.append((pose.clone(), style))
        return x_t + pose.mean()

    guidance = Guidance(
        2.0, drop=("pose", "style"), null={"pose": lambda p: p - 1, "style": "none"}
    )
    out = guidance(model, torch.zeros(SHAPE), torch.ones(2), {"pose": torch.ones(3), "style": "x"})
    torch.testing.assert_close(calls[1][0], torch.zeros(3))
    assert calls[1][1] == "none" and calls[0][1] == "x"
    torch.testing.assert_close(out, torch.full(SHAPE, 0.0 + 2.0 * (1.0 - 0.0)))
    calls.clear()
    Guidance(1.0)(model, torch.zeros(SHAPE), torch.ones(2), {"pose": torch.ones(3), "style": "x"})
    assert len(calls) == 1


def test_guidance_rejects_bad_specs():
    with pytest.raises(InputError):
        Guidance(2.0, drop=())
    with pytest.raises(InputError):
        Guidance(2.0, drop=("pose",), null={"reference": 0})
    with pytest.raises(InputError, match="reference"):
        Guidance(2.0, drop=("reference",)).unconditional({"pose": torch.ones(1)})
    with pytest.raises(InputError, match="null value"):
        Guidance(2.0, drop=("style",)).unconditional({"style": "abc"})
    assert Guidance(2.0, drop="pose").drop == ("pose",)


def test_euler_with_guidance_uses_the_guided_flow():
    # Two point masses: cond flow towards a, uncond flow towards b; guided flow at scale g
    # is the point-mass flow towards b + g (a - b), so Euler lands there exactly.
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(SHAPE, generator=gen, dtype=torch.float64)
    b = torch.randn(SHAPE, generator=gen, dtype=torch.float64)

    def model(x_t, t, pose):
        target = a if bool((pose != 0).any()) else b
        return point_mass_model(target)(x_t, t)

    noise = torch.randn(SHAPE, generator=gen, dtype=torch.float64)
    out = sample_euler(
        model,
        noise,
        {"pose": torch.ones(1)},
        sigmas=sampling_sigmas(6, 5.0),
        guidance=Guidance(2.5, drop=("pose",)),
    )
    torch.testing.assert_close(out, b + 2.5 * (a - b), atol=1e-10, rtol=0)


def test_few_step_renoises_with_fresh_noise_from_the_generator():
    sigmas = step_list_sigmas([1000, 750, 500, 250], 5.0)
    inputs, timesteps = [], []

    def model(x_t, t):
        inputs.append(x_t.clone())
        timesteps.append(t.clone())
        return torch.sin(x_t) + t.view(-1, 1, 1, 1, 1) / 1000  # an arbitrary flow

    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))
    out = sample_few_step(model, noise, sigmas=sigmas, generator=torch.Generator().manual_seed(9))

    # Independent replay: x0_k = x_k - s_k v(x_k); x_{k+1} = (1 - s_{k+1}) x0_k + s_{k+1} eps_k.
    replay_gen = torch.Generator().manual_seed(9)
    x = noise
    for k, sigma in enumerate(sigmas.tolist()):
        torch.testing.assert_close(inputs[k], x)
        torch.testing.assert_close(timesteps[k], torch.full((2,), 1000 * sigma))
        v = torch.sin(x) + sigma
        x0 = x - sigma * v
        if k + 1 < len(sigmas):
            eps = torch.randn(SHAPE, generator=replay_gen)
            x = (1 - float(sigmas[k + 1])) * x0 + float(sigmas[k + 1]) * eps
    torch.testing.assert_close(out, x0)
    assert len(inputs) == 4


def test_few_step_returns_the_point_mass_and_is_deterministic():
    gen = torch.Generator().manual_seed(3)
    target = torch.randn(SHAPE, generator=gen)
    noise = torch.randn(SHAPE, generator=gen)
    sigmas = step_list_sigmas([1000, 750, 500, 250], 5.0)
    out = sample_few_step(point_mass_model(target), noise, sigmas=sigmas)
    torch.testing.assert_close(out, target, atol=1e-5, rtol=0)

    def noisy_model(x_t, t):
        return 0.5 * x_t

    def run(seed):
        gen = torch.Generator().manual_seed(seed)
        return sample_few_step(noisy_model, noise, sigmas=sigmas, generator=gen)

    assert torch.equal(run(11), run(11))  # same seed, same elementwise ops: exact
    assert not torch.allclose(run(11), run(12))


def test_euler_starting_mid_schedule_uses_the_given_state():
    # Starting at sigma 0.6 from x_t built from a known point lands on that point.
    gen = torch.Generator().manual_seed(4)
    target = torch.randn(SHAPE, generator=gen, dtype=torch.float64)
    x_t = add_noise(target, torch.randn(SHAPE, generator=gen, dtype=torch.float64), 0.6)
    sigmas = sampling_sigmas(5, 3.0, start=float(unshift_sigma(0.6, 3.0)))
    assert float(sigmas[0]) == pytest.approx(0.6)
    out = sample_euler(point_mass_model(target), x_t, sigmas=sigmas)
    torch.testing.assert_close(out, target, atol=1e-6, rtol=0)


def test_samplers_validate_inputs():
    def model(x_t, t):
        return x_t[:, :1]

    with pytest.raises(InputError, match="shape"):
        sample_euler(model, torch.zeros(SHAPE), sigmas=sampling_sigmas(2, 1.0))
    with pytest.raises(InputError):
        sample_euler(lambda x, t: x, torch.zeros(SHAPE), sigmas=torch.tensor([0.2, 0.5]))
    with pytest.raises(InputError):
        sample_few_step(lambda x, t: x, torch.zeros(SHAPE), sigmas=torch.tensor([1.0, 0.0]))
