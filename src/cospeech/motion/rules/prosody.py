"""Per-frame prosody envelopes (energy, pitch) that drive head motion and mouth emphasis.

:func:`prosody_from_audio` measures them from a waveform with numpy (RMS energy and an
autocorrelation pitch tracker); :func:`prosody_from_phonemes` estimates them from phoneme
timings alone (vowels loud, stressed vowels high) when no audio is at hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cospeech.audio.phonemes import SILENCE, STRESS_PRIMARY, VOWELS, PhonemeSegment, frame_phones
from cospeech.errors import InputError
from cospeech.motion.rules.signals import frame_times, gaussian_smooth

WINDOW_S = 0.04  # analysis window around each frame centre
PITCH_RANGE_HZ = (70.0, 400.0)
VOICING_THRESHOLD = 0.45  # normalised autocorrelation peak above which a frame is voiced
ENERGY_FLOOR_DB = 40.0  # energy 0 is this many dB below the loud frames
LOUD_PERCENTILE = 98.0
MIN_VOICED_ENERGY = 0.25  # quieter frames are never called voiced
# Phoneme-only estimate: frame energy per phone class, and the pitch accent of a stressed vowel.
VOWEL_ENERGY, CONSONANT_ENERGY = 1.0, 0.45
ACCENT_SEMITONES = 2.0
DECLINATION_SEMITONES_PER_S = -0.5
PHONEME_SMOOTH_S = 0.04


@dataclass(frozen=True)
class Prosody:
    """Per-frame envelopes, each ``[T]``: ``energy`` in [0, 1] (0 = silence), ``pitch`` in
    semitones relative to the speaker's median (interpolated through unvoiced frames),
    ``voiced`` bool."""

    energy: np.ndarray
    pitch: np.ndarray
    voiced: np.ndarray

    def __len__(self) -> int:
        return len(self.energy)


def _fill_unvoiced(values: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    if not voiced.any():
        return np.zeros_like(values)
    idx = np.flatnonzero(voiced)
    return np.interp(np.arange(len(values)), idx, values[idx])


def prosody_from_audio(audio: np.ndarray, sample_rate: int, fps: float, num_frames: int) -> Prosody:
    """Energy and pitch at every frame centre of mono ``audio`` ``[N]`` (float, [-1, 1])."""
    audio = np.asarray(audio, dtype=np.float64).reshape(-1)
    if num_frames <= 0 or fps <= 0 or sample_rate <= 0:
        raise InputError(
            f"prosody: needs frames, fps and sample rate > 0, got {num_frames}, {fps}, "
            f"{sample_rate}"
        )
    half = round(WINDOW_S * sample_rate / 2)
    centres = np.round(frame_times(num_frames, fps) * sample_rate).astype(np.int64)
    index = centres[:, None] + np.arange(-half, half)[None, :]
    padded = np.pad(audio, (half, half))
    frames = padded[np.clip(index + half, 0, len(padded) - 1)] * np.hanning(2 * half)  # [T, W]

    rms_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-10)
    loud = np.percentile(rms_db, LOUD_PERCENTILE)
    energy = np.clip((rms_db - (loud - ENERGY_FLOOR_DB)) / ENERGY_FLOOR_DB, 0.0, 1.0)

    n_fft = 1 << int(np.ceil(np.log2(4 * half)))
    spectrum = np.fft.rfft(frames, n=n_fft, axis=1)
    autocorr = np.fft.irfft(np.abs(spectrum) ** 2, n=n_fft, axis=1)
    lo = int(sample_rate / PITCH_RANGE_HZ[1])
    hi = min(int(sample_rate / PITCH_RANGE_HZ[0]), 2 * half - 1)
    norm = autocorr[:, lo : hi + 1] / np.maximum(autocorr[:, :1], 1e-12)
    best = norm.argmax(axis=1)
    voiced = (norm[np.arange(num_frames), best] > VOICING_THRESHOLD) & (energy > MIN_VOICED_ENERGY)
    f0 = sample_rate / (best + lo)
    semitones = np.zeros(num_frames)
    if voiced.any():
        semitones = 12 * np.log2(f0 / np.median(f0[voiced]))
    return Prosody(energy=energy, pitch=_fill_unvoiced(semitones, voiced), voiced=voiced)


def prosody_from_phonemes(
    segments: Sequence[PhonemeSegment], fps: float, num_frames: int
) -> Prosody:
    """Energy and pitch estimated from phoneme timings: vowels loud, consonants softer,
    silence 0; a pitch accent on primary-stressed vowels over a slow declination."""
    phones = frame_phones(segments, fps, num_frames)
    voiced = np.array([p != SILENCE for p in phones])
    energy = np.array(
        [VOWEL_ENERGY if p in VOWELS else 0.0 if p == SILENCE else CONSONANT_ENERGY for p in phones]
    )
    t = frame_times(num_frames, fps)
    accent = np.zeros(num_frames)
    for seg in segments:
        if seg.phone in VOWELS and seg.stress == STRESS_PRIMARY:
            accent[(t >= seg.start) & (t < seg.end)] = ACCENT_SEMITONES
    sigma = PHONEME_SMOOTH_S * fps
    pitch = gaussian_smooth(accent, sigma) + DECLINATION_SEMITONES_PER_S * t
    pitch -= np.median(pitch[voiced]) if voiced.any() else pitch.mean()
    return Prosody(energy=gaussian_smooth(energy, sigma), pitch=pitch, voiced=voiced)
