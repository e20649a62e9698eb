"""Long-video window fusion: tent weights, window layout, fusion of window predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cospeech.errors import InputError
from cospeech.pipeline.windows import FusedWindows, WindowPlan, tent_weights, window_starts


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
