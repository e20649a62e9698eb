"""MFCC exactly as ``python_speech_features.mfcc`` computes it (the features SyncNet reads).

With its defaults (16 kHz, 25 ms frames every 10 ms, 13 coefficients, 26 filters, 512-point
FFT, pre-emphasis 0.97, lifter 22, the first coefficient replaced by the log frame energy):

```
x'[n]      = x[n] - 0.97 x[n - 1]            (x'[0] = x[0])
frames     = 1 + ceil((N - 400) / 160)  (1 when N <= 400), the last one zero-padded
frame_i[n] = x'[160 i + n], n < 400          (rectangular window)
P_i[k]     = |rfft(frame_i, 512)[k]|^2 / 512, k = 0..256
E_i        = sum_k P_i[k]                    (eps where 0)
bin_j      = floor(513 mel^-1(m_j) / 16000), m_j = 27 points equally spaced in HTK mel
             (2595 log10(1 + f / 700)) from low_hz to high_hz (0 and 8000 Hz)
H_j[k]     = (k - bin_j) / (bin_{j+1} - bin_j)          on [bin_j, bin_{j+1})
           = (bin_{j+2} - k) / (bin_{j+2} - bin_{j+1})  on [bin_{j+1}, bin_{j+2})
F_ij       = sum_k P_i[k] H_j[k]             (eps where 0)
c_i        = DCT-II(log F_i, orthonormal)[:13] * (1 + 11 sin(pi n / 22))
c_i[0]     = log E_i
```

Amplitudes are the caller's: SyncNet reads 16-bit PCM, so its input is in int16 units
(:data:`INT16_SCALE` times the float samples), which shifts ``c[0]`` by ``2 ln 32768``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.fft import dct

from cospeech.audio.features import hz_to_mel, mel_to_hz
from cospeech.errors import InputError

INT16_SCALE = 32768.0
EPS = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class MfccConfig:
    """``python_speech_features.mfcc``'s parameters and defaults (``high_hz`` None: half the
    sample rate)."""

    sample_rate: int = 16000
    win_length_s: float = 0.025
    hop_s: float = 0.01
    n_cepstra: int = 13
    n_filters: int = 26
    n_fft: int = 512
    low_hz: float = 0.0
    high_hz: float | None = None
    preemphasis: float = 0.97
    lifter: int = 22
    append_energy: bool = True

    def __post_init__(self) -> None:
        if self.win_samples > self.n_fft:
            raise InputError(f"MFCC window of {self.win_samples} samples exceeds the FFT size")
        if self.top_hz > self.sample_rate / 2 or self.low_hz < 0 or self.low_hz >= self.top_hz:
            raise InputError(f"MFCC band [{self.low_hz}, {self.top_hz}] Hz is not in the signal")

    @property
    def win_samples(self) -> int:
        return round_half_up(self.win_length_s * self.sample_rate)

    @property
    def hop_samples(self) -> int:
        return round_half_up(self.hop_s * self.sample_rate)

    @property
    def top_hz(self) -> float:
        return self.sample_rate / 2 if self.high_hz is None else self.high_hz


def round_half_up(value: float) -> int:
    """Round to the nearest integer, halves upwards (python_speech_features' rounding)."""
    return math.floor(value + 0.5)


def frame_signal(signal: np.ndarray, config: MfccConfig) -> np.ndarray:
    """``[frames, win_samples]``: frames every hop, the signal zero-padded to fill the last."""
    win, hop = config.win_samples, config.hop_samples
    count = 1 if signal.size <= win else 1 + math.ceil((signal.size - win) / hop)
    padded = np.zeros((count - 1) * hop + win)
    padded[: signal.size] = signal
    windows = np.lib.stride_tricks.sliding_window_view(padded, win)
    return windows[::hop][:count]


@lru_cache(maxsize=8)
def mel_triangles(config: MfccConfig) -> np.ndarray:
    """``[n_filters, n_fft // 2 + 1]`` triangular filters on FFT bins (peak 1, unnormalised)."""
    mels = np.linspace(hz_to_mel(config.low_hz), hz_to_mel(config.top_hz), config.n_filters + 2)
    bins = np.floor((config.n_fft + 1) * mel_to_hz(mels) / config.sample_rate)
    bank = np.zeros((config.n_filters, config.n_fft // 2 + 1))
    k = np.arange(bank.shape[1])
    for j in range(config.n_filters):
        low, mid, high = bins[j], bins[j + 1], bins[j + 2]
        rising = (k >= low) & (k < mid)
        falling = (k >= mid) & (k < high)
        bank[j, rising] = (k[rising] - low) / (mid - low)
        bank[j, falling] = (high - k[falling]) / (high - mid)
    return bank


def mfcc(signal: np.ndarray, config: MfccConfig | None = None) -> np.ndarray:
    """MFCC ``[frames, n_cepstra]`` (float64) of a mono signal ``[N]`` (see the module
    docstring; frames = 1 + ceil((N - win) / hop))."""
    config = config or MfccConfig()
    signal = np.asarray(signal, np.float64)
    if signal.ndim != 1 or signal.size == 0:
        raise InputError(f"MFCC: expected a mono signal [N], got shape {list(signal.shape)}")
    emphasised = np.append(signal[0], signal[1:] - config.preemphasis * signal[:-1])
    frames = frame_signal(emphasised, config)
    power = np.abs(np.fft.rfft(frames, config.n_fft)) ** 2 / config.n_fft
    energy = power.sum(axis=1)
    energy = np.where(energy == 0, EPS, energy)
    bands = power @ mel_triangles(config).T
    bands = np.where(bands == 0, EPS, bands)
    cepstra = dct(np.log(bands), type=2, axis=1, norm="ortho")[:, : config.n_cepstra]
    if config.lifter > 0:
        n = np.arange(config.n_cepstra)
        cepstra = cepstra * (1 + config.lifter / 2 * np.sin(np.pi * n / config.lifter))
    if config.append_energy:
        cepstra[:, 0] = np.log(energy)
    return cepstra
