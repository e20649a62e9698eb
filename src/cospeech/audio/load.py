"""Reading speech from a file: decode, mono, resample to 16 kHz, loudness-normalise.

WAV, FLAC and OGG go through soundfile (libsndfile); anything else (MP3, M4A, the audio
track of a video) through PyAV. Every problem a user can cause (missing file, a file that is
not audio, no samples, too long) ends in one :class:`~cospeech.errors.InputError`. Silence
is valid input: it is returned unchanged (no gain is applied to it).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np

from cospeech.errors import InputError

SAMPLE_RATE = 16000
LOUDNESS_FRAME_S = 0.02  # frames over which the RMS level of speech is measured
PEAK_LIMIT = 0.99  # the normalised signal never exceeds this absolute value


@dataclass(frozen=True)
class AudioConfig:
    """How speech is read.

    ``max_duration_s``: longer inputs are refused (before decoding when the header tells).
    Loudness: the RMS of the *active* 20 ms frames (those within ``active_range_db`` of the
    loudest frame and above ``silence_dbfs``) is brought to ``target_dbfs``, with the gain
    capped at ``max_gain_db`` and lowered further if a peak would pass ``PEAK_LIMIT``.
    """

    sample_rate: int = SAMPLE_RATE
    max_duration_s: float = 1800.0
    target_dbfs: float = -20.0
    silence_dbfs: float = -60.0
    active_range_db: float = 40.0
    max_gain_db: float = 40.0


def _soundfile_read(path: Path, max_duration_s: float) -> tuple[np.ndarray, int] | None:
    """``(samples [N, C], rate)`` through libsndfile, or None if it cannot read the file."""
    import soundfile

    try:
        info = soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError):
        return None
    if info.samplerate > 0 and info.frames / info.samplerate > max_duration_s:
        raise InputError(
            f"audio {path}: {info.frames / info.samplerate:.0f} s is longer than the limit "
            f"of {max_duration_s:.0f} s"
        )
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise InputError(f"audio {path}: cannot be decoded ({exc})") from None
    return data, int(rate)


def _pyav_read(path: Path, max_duration_s: float, sample_rate: int) -> np.ndarray:
    """Mono float32 samples at ``sample_rate`` through PyAV (FFmpeg)."""
    import av

    from cospeech.media.video import _reason  # FFmpeg's words, without errno and file name

    try:
        container = av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"audio {path}: not an audio file ({_reason(exc)})") from None
    with contextlib.closing(container):
        if not container.streams.audio:
            raise InputError(f"audio {path}: not an audio file (no audio stream)")
        stream = container.streams.audio[0]
        if stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
            if seconds > max_duration_s:
                raise InputError(
                    f"audio {path}: {seconds:.0f} s is longer than the limit of "
                    f"{max_duration_s:.0f} s"
                )
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        total = 0
        limit = int(max_duration_s * sample_rate)
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                    total += chunks[-1].size
                if total > limit:
                    raise InputError(
                        f"audio {path}: longer than the limit of {max_duration_s:.0f} s"
                    )
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
        except av.FFmpegError as exc:
            raise InputError(f"audio {path}: cannot be decoded ({_reason(exc)})") from None
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited polyphase resampling of ``[N]`` samples (scipy ``resample_poly``)."""
    if rate_in == rate_out:
        return audio.astype(np.float32, copy=False)
    from scipy.signal import resample_poly  # imported only when needed: about 2 s

    g = gcd(rate_in, rate_out)
    return resample_poly(audio, rate_out // g, rate_in // g).astype(np.float32)


def frame_levels_db(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """RMS level in dBFS of consecutive ``LOUDNESS_FRAME_S`` frames ``[F]`` (a partial last
    frame is dropped; audio shorter than one frame is one frame)."""
    size = max(1, round(LOUDNESS_FRAME_S * sample_rate))
    count = max(1, audio.size // size)
    frames = np.zeros((count, size), np.float64)
    usable = audio[: count * size].astype(np.float64)
    frames.reshape(-1)[: usable.size] = usable
    rms = np.sqrt(np.mean(frames**2, axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-12))


def normalize_loudness(audio: np.ndarray, sample_rate: int, config: AudioConfig) -> np.ndarray:
    """Scale ``[N]`` samples so that their active speech sits at ``config.target_dbfs`` RMS.

    Silence (no frame above ``silence_dbfs``) is returned unchanged.
    """
    if audio.size == 0:
        return audio
    levels = frame_levels_db(audio, sample_rate)
    loudest = float(levels.max())
    if loudest < config.silence_dbfs:
        return audio.astype(np.float32, copy=True)
    active = levels >= max(config.silence_dbfs, loudest - config.active_range_db)
    power = np.mean(10 ** (levels[active] / 10))
    gain_db = min(config.target_dbfs - 10 * np.log10(power), config.max_gain_db)
    gain = 10 ** (gain_db / 20)
    peak = float(np.abs(audio).max())
    if peak * gain > PEAK_LIMIT:
        gain = PEAK_LIMIT / peak
    return (audio * gain).astype(np.float32)


def load_audio(path: str | Path, config: AudioConfig | None = None) -> np.ndarray:
    """Speech from ``path`` as mono float32 ``[N]`` at ``config.sample_rate``, normalised.

    ``InputError`` for a missing file, a folder, an empty file, a file that is not audio,
    no samples, or more than ``config.max_duration_s`` seconds.
    """
    config = config or AudioConfig()
    path = Path(path)
    if path.is_dir():
        raise InputError(f"audio {path}: is a folder, not a file")
    if not path.is_file():
        raise InputError(f"audio {path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"audio {path}: the file is empty (0 bytes)")
    read = _soundfile_read(path, config.max_duration_s)
    if read is not None:
        data, rate = read
        audio = resample(data.mean(axis=1), rate, config.sample_rate)
    else:
        audio = _pyav_read(path, config.max_duration_s, config.sample_rate)
    if audio.size == 0:
        raise InputError(f"audio {path}: the file holds no samples")
    if audio.size > config.max_duration_s * config.sample_rate:
        raise InputError(
            f"audio {path}: {audio.size / config.sample_rate:.0f} s is longer than the limit "
            f"of {config.max_duration_s:.0f} s"
        )
    if not np.isfinite(audio).all():
        raise InputError(f"audio {path}: samples contain NaN or infinite values")
    return normalize_loudness(audio, config.sample_rate, config)


def prepare_samples(
    audio: np.ndarray, sample_rate: int, config: AudioConfig | None = None
) -> np.ndarray:
    """In-memory samples ``[N]`` or ``[N, C]`` -> the same mono, resampled, normalised form
    that :func:`load_audio` returns (``InputError`` on empty or non-finite input)."""
    config = config or AudioConfig()
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if audio.ndim != 1 or audio.size == 0:
        raise InputError(f"audio: expected samples [N] or [N, C], got shape {list(audio.shape)}")
    if not np.isfinite(audio).all():
        raise InputError("audio: samples contain NaN or infinite values")
    if sample_rate <= 0:
        raise InputError(f"audio: sample rate must be positive, got {sample_rate}")
    audio = resample(audio, int(sample_rate), config.sample_rate)
    if audio.size > config.max_duration_s * config.sample_rate:
        raise InputError(
            f"audio: {audio.size / config.sample_rate:.0f} s is longer than the limit "
            f"of {config.max_duration_s:.0f} s"
        )
    return normalize_loudness(audio, config.sample_rate, config)
