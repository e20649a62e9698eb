"""cospeech.audio.features against direct, independently written computations."""

from __future__ import annotations

import math

import numpy as np

from cospeech.audio.features import (
    MelConfig,
    frame_stacked_mel,
    log_mel,
    mel_filterbank,
    phone_ids,
    phone_one_hot,
    resample_frames,
)
from cospeech.audio.phonemes import PHONE_INDEX, PhonemeSegment

CONFIG = MelConfig()


def reference_filterbank(config: MelConfig) -> np.ndarray:
    """Triangles by a loop over filters and bins, straight from the HTK formula."""

    def mel(f):
        return 2595 * math.log10(1 + f / 700)

    def hz(m):
        return 700 * (10 ** (m / 2595) - 1)

    lo, hi = mel(config.f_min), mel(config.f_max)
    points = [hz(lo + (hi - lo) * i / (config.n_mels + 1)) for i in range(config.n_mels + 2)]
    bins = config.n_fft // 2 + 1
    out = np.zeros((config.n_mels, bins))
    for m in range(config.n_mels):
        a, b, c = points[m], points[m + 1], points[m + 2]
        for k in range(bins):
            f = k * config.sample_rate / config.n_fft
            if a < f <= b:
                out[m, k] = (f - a) / (b - a)
            elif b < f < c:
                out[m, k] = (c - f) / (c - b)
        out[m] *= 2 / (c - a)
    return out


def test_filterbank_matches_the_formula():
    assert np.allclose(mel_filterbank(CONFIG), reference_filterbank(CONFIG), atol=1e-7)


def test_log_mel_matches_a_direct_stft():
    rng = np.random.default_rng(0)
    audio = rng.normal(0, 0.1, 4000).astype(np.float32)
    mel = log_mel(audio)
    assert mel.shape == (4000 // 160 + 1, 80)
    padded = np.concatenate([np.zeros(256), audio, np.zeros(256)])
    n = np.arange(400)
    window = np.concatenate([np.zeros(56), 0.5 - 0.5 * np.cos(2 * np.pi * n / 400), np.zeros(56)])
    filters = reference_filterbank(CONFIG)
    for i in (0, 7, 25):
        frame = padded[i * 160 : i * 160 + 512] * window
        power = np.abs(np.fft.rfft(frame)) ** 2
        expected = np.log(np.maximum(filters @ power, 1e-5))
        assert np.allclose(mel[i], expected, atol=1e-3)


def test_sine_peaks_in_the_filter_around_its_frequency():
    t = np.arange(16000) / 16000
    mel = log_mel(np.sin(2 * np.pi * 1000 * t).astype(np.float32))
    centres = 700 * (10 ** (np.linspace(0, 2595 * np.log10(1 + 8000 / 700), 82)[1:-1] / 2595) - 1)
    assert abs(centres[mel[50].argmax()] - 1000) < 60


def test_prefix_gives_the_first_frames():
    audio = np.random.default_rng(1).normal(0, 0.1, 8000).astype(np.float32)
    whole, prefix = log_mel(audio), log_mel(audio[:4800])
    # Frames whose window lies inside the prefix are the same numbers, computed in a
    # matrix product of another row count (BLAS may pick another kernel and summation order).
    # Each mel value sums at most 17 non-negative float32 terms (relative error <= 17 eps =
    # 1e-6 in any order), which the log turns into an absolute error: 1e-5 covers both runs
    # (4.8e-7 seen); a frame off by one hop, or padding leaking in, changes values by O(1).
    usable = (4800 - 256) // 160 + 1
    np.testing.assert_allclose(whole[:usable], prefix[:usable], rtol=0, atol=1e-5)


def test_silence_is_the_floor():
    # float32 log of the floor: a few ulps (1e-6 each at |log 1e-5| = 11.5) by CPU's log code.
    np.testing.assert_allclose(log_mel(np.zeros(1600, np.float32)), np.log(1e-5), rtol=1e-6)


def test_resample_frames_is_linear_interpolation():
    features = np.arange(10, dtype=np.float32)[:, None] * np.array([[1.0, -2.0]], np.float32)
    same = resample_frames(features, 100, 100, 12, fill=-1.0)
    # Exact: at equal rates every weight is 1 or 0, and x * 1 + y * 0 == x in floats.
    assert np.array_equal(same[:10], features) and np.all(same[10:] == -1.0)
    up = resample_frames(features, 100, 120, 6, fill=0.0)
    times = np.arange(6) * 100 / 120
    assert np.allclose(up[:, 0], times) and np.allclose(up[:, 1], -2 * times)


def test_frame_stacked_mel_groups_four_mel_frames_per_video_frame():
    audio = np.random.default_rng(2).normal(0, 0.1, 16000).astype(np.float32)
    stacked = frame_stacked_mel(audio, 25.0, 25, 4)
    mel = log_mel(audio)
    assert stacked.shape == (25, 320)
    # Two log_mel calls on the same samples in other buffers: BLAS may take another path by
    # alignment, so as for the prefix test (<= 17 non-negative float32 terms per mel value)
    # 1e-5 in log units; the 100 Hz -> 100 Hz resampling (weights 1 and 0) adds nothing.
    np.testing.assert_allclose(stacked[3].reshape(4, 80), mel[12:16], rtol=0, atol=1e-5)


def test_phone_ids_against_a_loop():
    segments = [
        PhonemeSegment("SIL", 0.0, 0.12), PhonemeSegment("HH", 0.12, 0.2),
        PhonemeSegment("AH", 0.2, 0.31), PhonemeSegment("L", 0.35, 0.4),
    ]  # fmt: skip
    ids = phone_ids(segments, 100.0, 50)
    for k, value in enumerate(ids):
        t = k / 100
        inside = [s.phone for s in segments if s.start <= t < s.end]
        assert value == PHONE_INDEX[inside[0] if inside else "SIL"]
    one_hot = phone_one_hot(ids)
    assert one_hot.shape == (50, len(PHONE_INDEX)) and np.array_equal(one_hot.argmax(1), ids)
