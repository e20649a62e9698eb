"""Reading and writing mp4 files with PyAV: H.264 video, optional AAC audio.

Writes are atomic (see :mod:`cospeech.atomic`): a failure leaves no partial file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from cospeech.atomic import atomic_path
from cospeech.errors import InputError


@dataclass(frozen=True)
class VideoInfo:
    """What a container holds: frame count, rate, size, codecs, durations in seconds."""

    frames: int
    fps: float
    width: int
    height: int
    video_codec: str
    audio_codec: str | None
    video_duration: float
    audio_duration: float | None


class VideoWriter:
    """Streaming mp4 writer: ``add(frame)`` one ``[H, W, 3]`` uint8 RGB frame at a time.

    Audio (mono float in [-1, 1]) is muxed as AAC on :meth:`close`. Used as a context
    manager; on an exception inside the ``with`` block nothing is written to ``path``.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float,
        audio: np.ndarray | None = None,
        sample_rate: int = 16000,
        crf: int = 18,
    ) -> None:
        self.path = Path(path)
        self.fps = Fraction(fps).limit_denominator(1001)
        self.audio = None if audio is None else np.asarray(audio, dtype=np.float32).reshape(-1)
        self.sample_rate = int(sample_rate)
        self.crf = crf
        self.frames_written = 0
        self._atomic = atomic_path(self.path, suffix=".mp4")
        self._container: av.container.OutputContainer | None = None
        self._stream: av.VideoStream | None = None
        self._audio_stream: av.AudioStream | None = None
        self._audio_done = 0

    def __enter__(self) -> VideoWriter:
        tmp = self._atomic.__enter__()
        self._container = av.open(str(tmp), mode="w", format="mp4")
        return self

    def add(self, frame: np.ndarray) -> None:
        """Append one ``[H, W, 3]`` uint8 RGB frame (H and W must be even for yuv420p)."""
        frame = np.ascontiguousarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise InputError(
                f"video frame: expected uint8 [H, W, 3], got {frame.dtype} {list(frame.shape)}"
            )
        if self._stream is None:
            height, width = frame.shape[:2]
            if height % 2 or width % 2:
                raise InputError(f"video frame: H.264 needs even sizes, got {width}x{height}")
            self._stream = self._container.add_stream("libx264", rate=self.fps)
            self._stream.width, self._stream.height = width, height
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": str(self.crf), "preset": "veryfast"}
            if self.audio is not None and len(self.audio):
                self._audio_stream = self._container.add_stream("aac", rate=self.sample_rate)
                self._audio_stream.layout = "mono"
        elif frame.shape[:2] != (self._stream.height, self._stream.width):
            raise InputError("video frame: every frame must have the size of the first")
        packet_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        packet_frame.pts = self.frames_written
        packet_frame.time_base = 1 / self.fps
        for packet in self._stream.encode(packet_frame):
            self._container.mux(packet)
        self.frames_written += 1
        self._write_audio(until=round(self.frames_written / self.fps * self.sample_rate))

    def _write_audio(self, until: int) -> None:
        """Encode audio samples up to ``until`` (interleaved with the video as it grows)."""
        if self._audio_stream is None:
            return
        chunk = 1024
        until = min(until, len(self.audio))
        while self._audio_done < until:
            stop = min(self._audio_done + chunk, until)
            piece = np.clip(self.audio[self._audio_done : stop], -1.0, 1.0)[None, :]
            frame = av.AudioFrame.from_ndarray(piece, format="flt", layout="mono")
            frame.sample_rate = self.sample_rate
            frame.pts = self._audio_done
            for packet in self._audio_stream.encode(frame):
                self._container.mux(packet)
            self._audio_done = stop

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                if self._stream is None:
                    raise InputError(f"video {self.path}: no frames to write")
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
                if self._audio_stream is not None:
                    self._write_audio(until=len(self.audio))
                    for packet in self._audio_stream.encode(None):
                        self._container.mux(packet)
        finally:
            self._container.close()
        # Renames the temporary file on success, deletes it on failure.
        self._atomic.__exit__(exc_type, exc, tb)
        if exc_type is None and self._stream is None:
            raise InputError(f"video {self.path}: no frames to write")


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
) -> None:
    """Write ``[T, H, W, 3]`` uint8 frames (plus optional mono audio) as an mp4."""
    with VideoWriter(path, fps, audio=audio, sample_rate=sample_rate) as writer:
        for frame in frames:
            writer.add(frame)


def _reason(exc: Exception) -> str:
    """FFmpeg's words for an error, without its errno and the file name."""
    return str(getattr(exc, "strerror", None) or exc)


def _open(path: str | Path) -> av.container.InputContainer:
    path = Path(path)
    if path.is_dir():
        raise InputError(f"video {path}: is a folder, not a file")
    if not path.is_file():
        raise InputError(f"video {path}: no such file")
    try:
        return av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise InputError(
            f"video {path}: cannot be opened ({_reason(exc)}; not a video, or truncated)"
        ) from None


def iter_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Decode the first video stream as ``[H, W, 3]`` uint8 RGB frames."""
    container = _open(path)
    with contextlib.closing(container):
        if not container.streams.video:
            raise InputError(f"video {path}: no video stream")
        if container.streams.video[0].codec_context is None:
            raise InputError(f"video {path}: its video codec cannot be decoded here")
        try:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")
        except av.FFmpegError as exc:
            raise InputError(f"video {path}: decoding failed ({_reason(exc)})") from None


def read_video(path: str | Path) -> tuple[np.ndarray, float]:
    """All frames ``[T, H, W, 3]`` uint8 and the frame rate."""
    fps = probe(path).fps
    frames = list(iter_frames(path))
    if not frames:
        raise InputError(f"video {path}: no decodable frames")
    return np.stack(frames), fps


def read_audio_track(path: str | Path, sample_rate: int = 16000) -> np.ndarray | None:
    """The first audio stream as mono float32 at ``sample_rate``; None when there is none."""
    container = _open(path)
    with contextlib.closing(container):
        if not container.streams.audio:
            return None
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks = []
        try:
            for frame in container.decode(audio=0):
                chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
        except av.FFmpegError as exc:
            raise InputError(f"video {path}: audio decoding failed ({_reason(exc)})") from None
        return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def probe(path: str | Path) -> VideoInfo:
    """Container facts without decoding pixels (frames counted from packets)."""
    container = _open(path)
    with contextlib.closing(container):
        if not container.streams.video:
            raise InputError(f"video {path}: no video stream")
        video = container.streams.video[0]
        if video.codec_context is None:
            raise InputError(f"video {path}: its video codec cannot be decoded here")
        fps = float(video.average_rate or video.guessed_rate or 0)
        audio = container.streams.audio[0] if container.streams.audio else None
        frames = 0
        try:
            for packet in container.demux(video):
                if packet.size == 0:
                    continue
                if packet.stream is video:
                    frames += 1
        except av.FFmpegError as exc:
            raise InputError(f"video {path}: unreadable ({_reason(exc)})") from None
        return VideoInfo(
            frames=frames,
            fps=fps,
            width=video.width,
            height=video.height,
            video_codec=video.codec_context.name,
            audio_codec=(
                None if audio is None else getattr(audio.codec_context, "name", "unknown")
            ),
            video_duration=frames / fps if fps else 0.0,
            # The stream duration honours the edit list, so AAC priming samples do not count.
            audio_duration=(
                float(audio.duration * audio.time_base)
                if audio is not None and audio.duration
                else None
            ),
        )
