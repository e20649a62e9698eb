"""cospeech.audio.load: formats, resampling, loudness, and the inputs it must refuse."""

from __future__ import annotations

import av
import numpy as np
import pytest
import soundfile

from cospeech.audio.load import AudioConfig, frame_levels_db, load_audio, prepare_samples
from cospeech.errors import InputError

RATE = 16000


def sine(freq: float, seconds: float, rate: int, amplitude: float = 0.1) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_frequency(audio: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / rate)[spectrum.argmax()])


def rms_dbfs(audio: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(audio.astype(np.float64) ** 2))))


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg"])
def test_soundfile_formats_resampled_to_mono_16k(tmp_path, suffix):
    rate = 44100
    left, right = sine(440, 1.0, rate), sine(440, 1.0, rate)
    path = tmp_path / f"a{suffix}"
    soundfile.write(path, np.stack([left, right], axis=1), rate)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - RATE) <= 1
    assert abs(peak_frequency(audio, RATE) - 440) < 3
    assert abs(rms_dbfs(audio) - AudioConfig().target_dbfs) < 0.5


def _write_mp3(path, audio: np.ndarray, rate: int) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libmp3lame", rate=rate, layout="mono")
        frame_size = 1152
        for start in range(0, len(audio), frame_size):
            chunk = audio[start : start + frame_size][None]
            frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def test_mp3_through_pyav(tmp_path):
    path = tmp_path / "a.mp3"
    _write_mp3(path, sine(300, 1.5, 22050), 22050)
    audio = load_audio(path)
    assert abs(len(audio) / RATE - 1.5) < 0.1  # codec priming adds a few ms
    assert abs(peak_frequency(audio, RATE) - 300) < 3


def test_loudness_of_quiet_speech_like_signal_is_raised_to_target():
    # 1 s of tone bursts at -40 dBFS with gaps of silence: only the active frames count.
    tone = sine(200, 1.0, RATE, amplitude=0.01 * np.sqrt(2))
    gate = (np.arange(tone.size) // 3200) % 2 == 0
    audio = prepare_samples(tone * gate, RATE)
    active = audio[gate]
    assert abs(rms_dbfs(active) - AudioConfig().target_dbfs) < 0.5


def test_peaks_are_limited():
    audio = np.zeros(RATE, np.float32)
    audio[100] = 1.0  # a click in faint noise: the gain to the target would clip it
    audio += np.random.default_rng(0).normal(0, 1e-3, RATE).astype(np.float32)
    assert np.abs(prepare_samples(audio, RATE)).max() <= 0.99 + 1e-6


def test_silence_is_valid_and_unchanged(tmp_path):
    path = tmp_path / "silence.wav"
    soundfile.write(path, np.zeros(8000, np.float32), RATE)
    audio = load_audio(path)
    assert audio.shape == (8000,) and not audio.any()


def test_frame_levels_of_a_sine():
    levels = frame_levels_db(sine(1000, 0.2, RATE, amplitude=1.0), RATE)
    assert np.allclose(levels, 20 * np.log10(1 / np.sqrt(2)), atol=0.01)


def test_refusals(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_audio(tmp_path / "missing.wav")
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 20)
    with pytest.raises(InputError, match="not an audio file"):
        load_audio(text)
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0, np.float32), RATE)
    with pytest.raises(InputError, match="no samples"):
        load_audio(empty)
    long = tmp_path / "long.wav"
    soundfile.write(long, np.zeros(3 * RATE, np.float32), RATE)
    with pytest.raises(InputError, match="longer than the limit"):
        load_audio(long, AudioConfig(max_duration_s=2.0))
    with pytest.raises(InputError, match="NaN"):
        prepare_samples(np.array([0.0, np.nan], np.float32), RATE)
