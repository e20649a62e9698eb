"""Speech features: log-mel spectrogram (80 bins, 100 Hz) and frame-level phone ids.

Log-mel: frames centred at ``i * hop`` (zero padding beyond the signal, so a prefix of a
signal gives exactly the first frames of the whole signal's spectrogram), a Hann window of
``win_length`` samples zero-padded to ``n_fft``, power spectrum, triangular filters equally
spaced on the HTK mel scale ``2595 log10(1 + f / 700)`` with unit area (Slaney
normalisation), natural log with a floor. Long signals are processed in blocks, so memory
does not grow with the frames held in flight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from cospeech.audio.phonemes import PHONE_INDEX, PHONES, SILENCE, PhonemeSegment
from cospeech.errors import InputError

STFT_BLOCK_FRAMES = 2048  # frames transformed at once (bounds peak memory on long audio)


@dataclass(frozen=True)
class MelConfig:
    """Log-mel settings (defaults: 16 kHz, 25 ms window, 10 ms hop, 80 bins, 0-8 kHz)."""

    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float = 8000.0
    log_floor: float = 1e-5

    @property
    def frame_rate(self) -> float:
        """Mel frames per second (100 by default)."""
        return self.sample_rate / self.hop_length

    @property
    def floor_value(self) -> float:
        """The log-mel value of silence (digital zero)."""
        return float(np.log(self.log_floor))


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filterbank(config: MelConfig) -> np.ndarray:
    """``[n_mels, n_fft // 2 + 1]`` triangular filters of unit area in Hz."""
    bins = np.linspace(0.0, config.sample_rate / 2, config.n_fft // 2 + 1)
    edges = mel_to_hz(
        np.linspace(hz_to_mel(config.f_min), hz_to_mel(config.f_max), config.n_mels + 2)
    )
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None] - lower) / (centre - lower)
    falling = (upper - bins[None]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= 2.0 / (upper - lower)
    return weights.astype(np.float32)


@lru_cache(maxsize=8)
def _window(config: MelConfig) -> np.ndarray:
    """Periodic Hann window of ``win_length`` centred in ``n_fft`` samples."""
    n = np.arange(config.win_length)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / config.win_length)
    window = np.zeros(config.n_fft, np.float32)
    start = (config.n_fft - config.win_length) // 2
    window[start : start + config.win_length] = hann
    return window


def num_mel_frames(num_samples: int, config: MelConfig) -> int:
    """Frames of :func:`log_mel` for a signal of ``num_samples`` samples."""
    return num_samples // config.hop_length + 1


def log_mel(audio: np.ndarray, config: MelConfig | None = None) -> np.ndarray:
    """``[N]`` samples -> ``[F, n_mels]`` float32 log-mel, ``F = N // hop + 1``; frame ``i``
    is centred on sample ``i * hop``."""
    config = config or MelConfig()
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise InputError(f"log_mel: expected samples [N], got shape {list(audio.shape)}")
    half = config.n_fft // 2
    return log_mel_frames(np.pad(audio, (half, half)), num_mel_frames(audio.size, config), config)


def log_mel_frames(padded: np.ndarray, frames: int, config: MelConfig) -> np.ndarray:
    """Log-mel of the windows ``padded[j * hop : j * hop + n_fft]`` for ``j < frames`` ->
    ``[frames, n_mels]`` (the signal's own frame ``i`` is window ``i`` of the signal with
    ``n_fft // 2`` samples before it; streaming code passes such a slice)."""
    window = _window(config)
    filters = mel_filterbank(config)
    out = np.empty((frames, config.n_mels), np.float32)
    for start in range(0, frames, STFT_BLOCK_FRAMES):
        stop = min(frames, start + STFT_BLOCK_FRAMES)
        index = np.arange(start, stop)[:, None] * config.hop_length + np.arange(config.n_fft)
        spectrum = np.fft.rfft(padded[index] * window, axis=1)
        power = spectrum.real**2 + spectrum.imag**2
        out[start:stop] = np.log(np.maximum(power.astype(np.float32) @ filters.T, config.log_floor))
    return out


def resample_frames(
    features: np.ndarray, rate_in: float, rate_out: float, count: int, fill: float
) -> np.ndarray:
    """Features ``[F, C]`` at ``rate_in`` Hz (frame ``i`` at ``i / rate_in`` s) -> ``[count, C]``
    at ``rate_out`` Hz by linear interpolation; times past the last frame take ``fill``."""
    times = np.arange(count) * (rate_in / rate_out)
    left = np.floor(times).astype(np.int64)
    frac = (times - left)[:, None].astype(np.float32)
    padded = np.concatenate([features, np.full((2, features.shape[1]), fill, np.float32)])
    left = np.minimum(left, padded.shape[0] - 2)
    return (padded[left] * (1 - frac) + padded[left + 1] * frac).astype(np.float32)


def num_video_frames(num_samples: int, sample_rate: int, fps: float) -> int:
    """Video frames covering ``num_samples`` of audio (at least one)."""
    return max(1, round(num_samples / sample_rate * fps))


def phone_ids(segments: Sequence[PhonemeSegment], rate: float, count: int) -> np.ndarray:
    """Phone id (index into ``PHONES``) at times ``k / rate`` for ``k < count`` -> ``[count]``
    int64; gaps and times past the last segment are ``SIL``."""
    times = np.arange(count) / rate
    ids = np.full(count, PHONE_INDEX[SILENCE], np.int64)
    if not segments:
        return ids
    starts = np.array([s.start for s in segments])
    ends = np.array([s.end for s in segments])
    seg = np.searchsorted(starts, times, side="right") - 1
    inside = (seg >= 0) & (times < ends[np.maximum(seg, 0)])
    labels = np.array([PHONE_INDEX[s.phone] for s in segments])
    ids[inside] = labels[seg[inside]]
    return ids


def phone_one_hot(ids: np.ndarray) -> np.ndarray:
    """``[F]`` phone ids -> ``[F, len(PHONES)]`` float32 one-hot rows."""
    return np.eye(len(PHONES), dtype=np.float32)[ids]


def frame_stacked_mel(
    audio: np.ndarray, fps: float, frames: int, per_frame: int, config: MelConfig | None = None
) -> np.ndarray:
    """Log-mel resampled to ``per_frame * fps`` Hz and grouped per video frame ->
    ``[frames, per_frame * n_mels]``; frame ``j`` holds the mel frames at times
    ``(per_frame * j + k) / (per_frame * fps)``, ``k < per_frame``."""
    config = config or MelConfig()
    mel = log_mel(audio, config)
    rate = per_frame * fps
    resampled = resample_frames(
        mel, config.frame_rate, rate, per_frame * frames, config.floor_value
    )
    return resampled.reshape(frames, per_frame * config.n_mels)
