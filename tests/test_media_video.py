"""mp4 writing/reading through PyAV: round trip, durations, atomic failure, bad files."""

from __future__ import annotations

import numpy as np
import pytest

from cospeech.errors import InputError
from cospeech.media.video import VideoWriter, probe, read_audio_track, read_video, write_video


def _frames(count: int = 20, size: int = 32) -> np.ndarray:
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    base = np.stack([np.add.outer(ramp, ramp) / 2] * 3, axis=-1)
    return np.stack([np.roll(base, i, axis=1) for i in range(count)]).astype(np.uint8)


def test_round_trip_with_audio(tmp_path):
    frames = _frames()
    audio = 0.3 * np.sin(2 * np.pi * 300 * np.arange(12800) / 16000).astype(np.float32)
    path = tmp_path / "v.mp4"
    write_video(path, frames, fps=25, audio=audio)
    info = probe(path)
    assert (info.frames, info.fps, info.width, info.height) == (20, 25.0, 32, 32)
    assert info.video_codec == "h264" and info.audio_codec == "aac"
    assert abs(info.audio_duration - 0.8) < 1 / 25
    decoded, fps = read_video(path)
    assert decoded.shape == frames.shape and fps == 25.0
    # smooth content survives H.264 at crf 18 closely
    assert np.abs(decoded.astype(float) - frames).mean() < 4.0
    track = read_audio_track(path)
    assert abs(len(track) - len(audio)) <= 2048  # AAC frames are 1024 samples
    n = min(len(track), len(audio))
    corr = np.corrcoef(track[:n], audio[:n])[0, 1]
    assert corr > 0.9


def test_failure_inside_writer_leaves_no_file(tmp_path):
    path = tmp_path / "v.mp4"
    with pytest.raises(RuntimeError), VideoWriter(path, fps=25) as writer:
        writer.add(_frames(2)[0])
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_bad_frames_and_files(tmp_path):
    with pytest.raises(InputError, match="even"), VideoWriter(tmp_path / "odd.mp4", 25) as w:
        w.add(np.zeros((31, 32, 3), np.uint8))
    with pytest.raises(InputError, match="uint8"), VideoWriter(tmp_path / "f.mp4", 25) as w:
        w.add(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(InputError, match="no frames"):
        write_video(tmp_path / "empty.mp4", np.zeros((0, 32, 32, 3), np.uint8), 25)
    assert list(tmp_path.iterdir()) == []
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    with pytest.raises(InputError):
        probe(fake)
    with pytest.raises(InputError, match="no such file"):
        read_video(tmp_path / "missing.mp4")
