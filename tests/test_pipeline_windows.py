"""Long-video windows: tent weights, window layout, fusion of window predictions, and the
window chain of streaming (held shared frames, per-frame noise)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from cospeech.errors import InputError
from cospeech.pipeline.windows import (
    FusedWindows,
    SequentialNoise,
    WindowChain,
    WindowPlan,
    tent_weights,
    window_starts,
)


def test_tent_weights_match_mimicmotion_formula():
    # MimicMotion: w(j) = min((j + .5) * 2 / T, 2 - (j + .5) * 2 / T), T = 72 there.
    length = 72
    expected = [min((j + 0.5) * 2 / length, 2 - (j + 0.5) * 2 / length) for j in range(length)]
    np.testing.assert_allclose(tent_weights(length).numpy(), expected, rtol=0, atol=1e-15)
    weights = tent_weights(5).numpy()
    np.testing.assert_allclose(weights, [0.2, 0.6, 1.0, 0.6, 0.2], atol=1e-15)
    assert (weights > 0).all()


@pytest.mark.parametrize(("total", "window", "overlap"), [(5, 5, 2), (3, 5, 2), (26, 5, 2), (
    27, 5, 2), (100, 7, 3), (9, 3, 0)])  # fmt: skip
def test_windows_cover_every_frame_and_overlap_as_asked(total, window, overlap):
    starts = window_starts(total, window, overlap)
    length = min(window, total)
    assert starts[0] == 0 and starts[-1] + length == total
    covered = np.zeros(total, int)
    for start in starts:
        covered[start : start + length] += 1
    assert (covered >= 1).all()
    # consecutive windows share at least `overlap` frames, and all but the last exactly that
    gaps = np.diff(starts)
    assert (gaps <= window - overlap).all() and (gaps[:-1] == window - overlap).all()


def test_window_plan_rejects_bad_overlap():
    with pytest.raises(InputError):
        window_starts(10, 4, 4)
    with pytest.raises(InputError):
        window_starts(0, 4, 1)


def test_fusion_is_exact_when_windows_agree():
    """A per-frame function of the global latent gives the same flow through any windows."""
    x = torch.randn(2, 3, 17, 4, 4)
    frame_scale = torch.linspace(0.5, 2.0, 17).view(1, 1, -1, 1, 1)

    def window_flow(xw, t, start):
        return xw * frame_scale[:, :, start : start + xw.shape[2]] + t.view(-1, 1, 1, 1, 1)

    fused = FusedWindows(window_flow, WindowPlan(17, 5, 2))
    t = torch.tensor([3.0, 7.0])
    torch.testing.assert_close(fused(x, t), x * frame_scale + t.view(-1, 1, 1, 1, 1))


def test_fusion_is_the_tent_weighted_mean_of_window_predictions():
    """Each window predicts a constant (its index); the fused value of a frame is the
    tent-weighted mean of the constants of the windows covering it (closed form)."""
    total, window, overlap = 11, 5, 2
    plan = WindowPlan(total, window, overlap)
    starts = plan.starts
    calls = []

    def window_flow(xw, t, start):
        calls.append(start)
        return torch.full_like(xw, float(starts.index(start)))

    fused = FusedWindows(window_flow, plan)(torch.zeros(1, 1, total, 1, 1), torch.zeros(1))
    weights = tent_weights(window).numpy()
    for frame in range(total):
        pairs = [(k, weights[frame - s]) for k, s in enumerate(starts) if s <= frame < s + window]
        expected = sum(k * w for k, w in pairs) / sum(w for _, w in pairs)
        assert fused[0, 0, frame, 0, 0].item() == pytest.approx(expected, abs=1e-6)
    assert calls == starts  # one model call per window, in order


# --- the window chain of streaming ----------------------------------------------------------


def _euler(flow, x, sigmas):
    """Plain Euler over ``sigmas`` (the closed-form reference of the samplers' loop)."""
    for sigma, sigma_next in itertools.pairwise(sigmas):
        x = x + (sigma_next - sigma) * flow(x, torch.full((x.shape[0],), 1000 * sigma))
    return x


@pytest.mark.parametrize(("total", "window", "overlap"), [(17, 5, 2), (3, 5, 2), (12, 4, 1)])
def test_chain_equals_whole_sequence_sampling_for_a_frame_local_flow(total, window, overlap):
    """A flow that acts on each frame alone does not care about windows: the chain's frames,
    concatenated, are plain Euler over the whole sequence (and every frame comes once)."""
    torch.manual_seed(0)
    noise = torch.randn(1, 3, total, 2, 2)
    scale = torch.linspace(0.5, 1.5, total).view(1, 1, -1, 1, 1)

    def window_flow(xw, t, start):
        return -xw * scale[:, :, start : start + xw.shape[2]] + t.view(-1, 1, 1, 1, 1) / 1000

    sigmas = torch.tensor([1.0, 0.7, 0.4, 0.0], dtype=torch.float64)
    plan = WindowPlan(total, window, overlap)
    results = list(WindowChain(window_flow, plan, lambda a, b: noise[:, :, a:b], sigmas))
    starts = [r.start for r in results]
    stops = [r.start + r.latents.shape[2] for r in results]
    assert starts[0] == 0 and stops[-1] == total and starts[1:] == stops[:-1]
    chained = torch.cat([r.latents for r in results], dim=2)
    expected = _euler(lambda x, t: window_flow(x, t, 0), noise, sigmas.tolist())
    torch.testing.assert_close(chained, expected, rtol=1e-5, atol=1e-6)  # fp32, 3 steps


def test_chain_holds_the_shared_frames_to_the_previous_result():
    """Before every model call the frames a window shares with the one before are that
    window's result re-noised to the level of the call with their starting noise,
    ``(1 - sigma) x0 + sigma eps``; the new frames are what the sampler carries."""
    total, window, overlap = 7, 4, 2
    noise = torch.randn(1, 2, total, 1, 1, generator=torch.Generator().manual_seed(1))
    seen = []

    def window_flow(xw, t, start):  # couples frames: every frame moves to the window mean
        seen.append((start, float(t[0]) / 1000, xw.clone()))
        return xw.mean(dim=2, keepdim=True) - xw

    sigmas = torch.tensor([1.0, 0.5, 0.25, 0.0], dtype=torch.float64)
    plan = WindowPlan(total, window, overlap)  # starts 0, 2, 3
    results = list(WindowChain(window_flow, plan, lambda a, b: noise[:, :, a:b], sigmas))
    final = torch.cat([r.latents for r in results], dim=2)
    assert [r.start for r in results] == [0, 4, 6]
    for start, sigma, xw in seen:
        if start == 0:
            continue
        shared = {2: 2, 3: 3}[start]  # the end-aligned last window shares 3 frames
        held = (1 - sigma) * final[:, :, start : start + shared] + sigma * noise[
            :, :, start : start + shared
        ]
        torch.testing.assert_close(xw[:, :, :shared], held, rtol=1e-6, atol=1e-6)
    assert len(seen) == 3 * len(plan.starts)


def test_sequential_noise_is_per_frame_and_forgets_passed_frames():
    shape = (1, 2, 3, 3)
    noise = SequentialNoise(shape, seed=5)
    first, second = noise(0, 3), noise(2, 5)
    draws = torch.Generator().manual_seed(5)
    expected = torch.cat([torch.randn((1, 2, 1, 3, 3), generator=draws) for _ in range(5)], 2)
    torch.testing.assert_close(first, expected[:, :, :3], rtol=0, atol=0)  # same draws
    torch.testing.assert_close(second, expected[:, :, 2:5], rtol=0, atol=0)
    assert len(noise.frames) == 3  # frames 0-1 dropped
    with pytest.raises(InputError, match="already dropped"):
        noise(1, 4)
