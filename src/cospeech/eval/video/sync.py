"""Audio-visual sync: mouth opening against the speech loudness, over a range of offsets.

The mouth opening of a frame is the inner-lip gap, dlib points 62 (upper inner lip, middle)
and 66 (lower inner lip, middle) -- 0-based, i.e. iBUG points 63 and 67 -- divided by the
inter-ocular distance (between the centres of the eyes, points 36-41 and 42-47), so that it
does not depend on the size of the face. The loudness of frame ``t`` is the RMS level in
dB of the audio in ``[(t - 1/2) / fps, (t + 1/2) / fps)``, floored ``FLOOR_DB`` below the
loudest frame.

For each offset ``k`` in ``[-K, K]`` the Pearson correlation of ``mouth[t]`` with
``loudness[t + k]`` is taken over the frames where both exist. The offset is the ``k``
with the highest correlation (positive: the audio is late, the sound of a mouth movement
comes ``k`` frames after it), the confidence that peak minus the median over the offsets
(SyncNet's confidence, Chung & Zisserman 2016, with correlation in place of distance).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cospeech.errors import InputError
from cospeech.motion.metrics import correlation

FLOOR_DB = 50.0
MAX_OFFSET = 15
MIN_OVERLAP = 8  # fewer frame pairs than this give no correlation at an offset


@dataclass(frozen=True)
class SyncResult:
    """``offsets`` ``[2K + 1]`` and the correlation at each (NaN: too few frames); the best
    ``offset`` (None when every correlation is NaN), ``confidence`` and the correlation at
    offset 0."""

    offsets: np.ndarray
    correlations: np.ndarray
    offset: int | None
    confidence: float
    zero_offset_correlation: float


def loudness_envelope(audio: np.ndarray, sample_rate: int, fps: float, frames: int) -> np.ndarray:
    """RMS level in dB per video frame ``[frames]`` (see the module docstring); NaN for frames
    whose window holds no audio (audio shorter than the video)."""
    if fps <= 0 or sample_rate <= 0:
        raise InputError(f"loudness: fps and sample rate must be > 0, got {fps}, {sample_rate}")
    audio = np.asarray(audio, np.float64).reshape(-1)
    level = np.full(frames, np.nan)
    for t in range(frames):
        start = max(0, round((t - 0.5) / fps * sample_rate))
        stop = min(audio.size, round((t + 0.5) / fps * sample_rate))
        if stop > start:
            rms = np.sqrt(np.mean(audio[start:stop] ** 2))
            level[t] = 20 * np.log10(max(rms, 1e-10))
    if np.isfinite(level).any():
        level = np.maximum(level, np.nanmax(level) - FLOOR_DB)
    return level


def offset_correlations(
    mouth: np.ndarray, loudness: np.ndarray, max_offset: int = MAX_OFFSET
) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets [2K + 1], correlation of mouth[t] with loudness[t + k] [2K + 1])`` over the
    frames where both are finite; NaN where fewer than ``MIN_OVERLAP`` pairs remain."""
    mouth, loudness = np.asarray(mouth, np.float64), np.asarray(loudness, np.float64)
    if mouth.shape != loudness.shape or mouth.ndim != 1:
        raise InputError(f"series must be [F] of one length, got {mouth.shape}, {loudness.shape}")
    if max_offset < 0:
        raise InputError(f"the largest offset must be >= 0 frames, got {max_offset}")
    offsets = np.arange(-max_offset, max_offset + 1)
    values = np.full(offsets.size, np.nan)
    frames = mouth.size
    for index, k in enumerate(offsets):
        t = np.arange(max(0, -k), min(frames, frames - k))
        a, b = mouth[t], loudness[t + k]
        both = np.isfinite(a) & np.isfinite(b)
        if both.sum() >= MIN_OVERLAP:
            values[index] = correlation(a[both], b[both])
    return offsets, values


def estimate_sync(
    mouth: np.ndarray, loudness: np.ndarray, max_offset: int = MAX_OFFSET
) -> SyncResult:
    """The offset with the highest correlation and its confidence (peak minus median)."""
    offsets, values = offset_correlations(mouth, loudness, max_offset)
    zero = float(values[max_offset])
    if not np.isfinite(values).any():
        return SyncResult(offsets, values, None, float("nan"), zero)
    best = int(np.nanargmax(values))
    confidence = float(values[best] - np.nanmedian(values))
    return SyncResult(offsets, values, int(offsets[best]), confidence, zero)
