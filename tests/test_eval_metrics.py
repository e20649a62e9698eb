"""Video metrics against scikit-image, and the mouth-openness lip-sync measure."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from cospeech.data.synth.colours import MOUTH_INTERIOR_RGB, TEETH_RGB
from cospeech.eval.lipsync import MOUTH_BOX_MARGIN, mouth_openness
from cospeech.eval.video_metrics import psnr_per_frame, ssim_per_frame
from cospeech.motion.metrics import correlation
from cospeech.pose import schema


def _videos(seed: int = 0, noise: int = 40):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (3, 37, 45, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-noise, noise + 1, a.shape), 0, 255)
    return a, b.astype(np.uint8)


def test_psnr_and_ssim_equal_scikit_image_per_frame():
    a, b = _videos()
    ssim = ssim_per_frame(a, b)
    psnr = psnr_per_frame(a, b)
    for i in range(len(a)):
        want_ssim = structural_similarity(
            a[i], b[i], gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
            data_range=255, channel_axis=-1,
        )  # fmt: skip
        assert ssim[i] == pytest.approx(want_ssim, abs=1e-9)
        assert psnr[i] == pytest.approx(peak_signal_noise_ratio(a[i], b[i], data_range=255))
    assert ssim_per_frame(a, a) == pytest.approx(np.ones(3))
    assert np.isinf(psnr_per_frame(a, a)).all()


def _face(mouth_pixels: int, colour) -> tuple[np.ndarray, np.ndarray]:
    """A skin-coloured frame with lips around (50, 60) and ``mouth_pixels`` pixels of
    ``colour`` inside them, plus keypoints for the lips."""
    frame = np.full((100, 100, 3), (200, 150, 120), np.uint8)
    keypoints = np.zeros((schema.NUM_KEYPOINTS, 3), np.float32)
    angles = np.linspace(0, 2 * np.pi, len(schema.FACE_OUTER_LIPS), endpoint=False)
    keypoints[list(schema.FACE_OUTER_LIPS), 0] = 50 + 10 * np.cos(angles)
    keypoints[list(schema.FACE_OUTER_LIPS), 1] = 60 + 5 * np.sin(angles)
    keypoints[list(schema.FACE_OUTER_LIPS), 2] = 1
    rows, cols = np.divmod(np.arange(mouth_pixels), 10)
    frame[58 + rows, 45 + cols] = colour
    frame[10:20, 10:20] = MOUTH_INTERIOR_RGB  # outside the lip box: must not count
    return frame, keypoints


def test_mouth_openness_counts_reserved_colours_inside_the_lips():
    for count in (0, 7, 20):
        for colour in (MOUTH_INTERIOR_RGB, TEETH_RGB):
            frame, keypoints = _face(count, colour)
            assert mouth_openness(frame[None], keypoints[None])[0] == pytest.approx(count)
    # a colour half the tolerance away counts half
    frame, keypoints = _face(10, (100 + 40, 0, 60))
    assert mouth_openness(frame[None], keypoints[None])[0] == pytest.approx(5.0)
    assert MOUTH_BOX_MARGIN > 0


def test_correlation_closed_forms():
    x = np.array([0.0, 1.0, 2.0, 3.0])
    assert correlation(x, 2 * x + 1) == pytest.approx(1.0)
    assert correlation(x, -x) == pytest.approx(-1.0)
    assert correlation(np.array([1.0, -1.0, 1.0, -1.0]), np.array([1.0, 1.0, -1.0, -1.0])) == 0
    assert np.isnan(correlation(x, np.ones(4)))
