"""A fragmented mp4 (H.264 + AAC) written to any byte sink while the video is made.

The byte stream is what Media Source Extensions take: an init segment (``ftyp`` + ``moov``,
written by the constructor) and then ``moof`` + ``mdat`` fragments (ffmpeg's mp4 muxer with
``movflags=frag_keyframe+empty_moov+default_base_moof``). Each :meth:`~FragmentedMp4Writer.write`
starts with a key frame, so every write becomes one fragment holding its video and the
speech that goes with it; the muxer finishes a fragment when the next key frame arrives,
so the bytes of a write reach the sink when the next write starts (PyAV exposes no muxer
flush), and the last ones on :meth:`~FragmentedMp4Writer.close`. The encoder runs with
``tune=zerolatency`` (no B-frames, no look-ahead), so no frame waits for later ones.
"""

from __future__ import annotations

import io
from fractions import Fraction
from typing import BinaryIO

import av
import numpy as np

from cospeech.errors import InputError

MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"
AAC_FRAME = 1024  # samples per AAC frame
AAC_CODEC = "mp4a.40.2"  # AAC-LC, what ffmpeg's native encoder writes
MAX_KEYFRAME_SECONDS = 2.0  # a key frame at least this often, however long a write is


class _Sink(io.RawIOBase):
    """A write-only raw stream over ``sink`` (PyAV writes through ``write`` only; no seek,
    so the muxer never goes back over bytes already sent)."""

    def __init__(self, sink: BinaryIO) -> None:
        super().__init__()
        self.sink = sink
        self.written = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        view = memoryview(data)
        self.sink.write(view)
        flush = getattr(self.sink, "flush", None)
        if flush is not None:
            flush()
        self.written += len(view)
        return len(view)


class FragmentedMp4Writer:
    """``write(frames [n, H, W, 3] uint8, audio [samples] float32 mono)`` as the video is
    made, then ``close()``. ``size``: frame side (or ``(width, height)``), even;
    ``mime``: the MSE type string, e.g. ``video/mp4; codecs="avc1.64000a, mp4a.40.2"``
    (the H.264 profile and level read from the encoder's own SPS); ``bytes_written``: bytes
    sent to ``sink`` so far. Nothing is seeked: ``sink`` may be a pipe or a socket."""

    def __init__(
        self,
        sink: BinaryIO,
        size: int | tuple[int, int],
        fps: float,
        sample_rate: int = 16000,
        crf: int = 20,
    ) -> None:
        width, height = (size, size) if isinstance(size, int) else size
        if width < 2 or height < 2 or width % 2 or height % 2:
            raise InputError(f"video frame: H.264 needs even sizes, got {width}x{height}")
        self.width, self.height = width, height
        self.fps = Fraction(fps).limit_denominator(1001)
        self.sample_rate = int(sample_rate)
        self.frames_written = 0
        self.samples_written = 0
        self._pending = np.zeros(0, np.float32)  # audio not yet a whole AAC frame
        self._sink = _Sink(sink)
        self._container = av.open(
            self._sink, mode="w", format="mp4", options={"movflags": MOVFLAGS}
        )
        self._video = self._container.add_stream("libx264", rate=self.fps)
        self._video.width, self._video.height, self._video.pix_fmt = width, height, "yuv420p"
        self._video.codec_context.gop_size = max(1, round(MAX_KEYFRAME_SECONDS * self.fps))
        self._video.options = {
            "crf": str(crf), "preset": "veryfast", "tune": "zerolatency", "forced-idr": "1",
        }  # fmt: skip
        self._audio = self._container.add_stream("aac", rate=self.sample_rate)
        self._audio.layout = "mono"
        self._container.start_encoding()  # writes the init segment (ftyp + moov)
        codecs = f"{_avc1(self._video.codec_context.extradata)}, {AAC_CODEC}"
        self.mime = f'video/mp4; codecs="{codecs}"'
        self.closed = False

    @property
    def bytes_written(self) -> int:
        return self._sink.written

    def write(self, frames: np.ndarray, audio: np.ndarray) -> None:
        """Append ``frames`` (the first one a key frame) and the speech ``audio`` that plays
        with them; audio and video are interleaved by time."""
        if self.closed:
            raise InputError("fragmented mp4: write after close")
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[1:] != (self.height, self.width, 3):
            raise InputError(
                f"video frames: expected [n, {self.height}, {self.width}, 3], "
                f"got {list(frames.shape)}"
            )
        if frames.dtype != np.uint8:
            raise InputError(f"video frames: expected uint8, got {frames.dtype}")
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        self._pending = np.concatenate([self._pending, np.clip(audio, -1.0, 1.0)])
        for index, frame in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            picture.pts = self.frames_written
            if index == 0:
                picture.pict_type = av.video.frame.PictureType.I
            self._container.mux(self._video.encode(picture))
            self.frames_written += 1
            self._encode_audio(round(self.frames_written / self.fps * self.sample_rate))

    def _encode_audio(self, until: int) -> None:
        """Encode whole AAC frames of the pending audio up to sample ``until``."""
        while self.samples_written + AAC_FRAME <= until and len(self._pending) >= AAC_FRAME:
            self._encode_samples(AAC_FRAME)

    def _encode_samples(self, count: int) -> None:
        piece, self._pending = self._pending[:count], self._pending[count:]
        frame = av.AudioFrame.from_ndarray(piece[None, :], format="flt", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self.samples_written
        self._container.mux(self._audio.encode(frame))
        self.samples_written += count

    def close(self) -> None:
        """Encode what is left (the last audio, the encoders' tails) and end the stream."""
        if self.closed:
            return
        self.closed = True
        try:
            while len(self._pending):
                self._encode_samples(min(AAC_FRAME, len(self._pending)))
            self._container.mux(self._video.encode(None))
            self._container.mux(self._audio.encode(None))
        finally:
            self._container.close()

    def __enter__(self) -> FragmentedMp4Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()


def _avc1(extradata: bytes | None) -> str:
    """The RFC 6381 codec string ``avc1.PPCCLL`` of an H.264 stream from its SPS (profile,
    constraint flags, level), found in the encoder's extradata (Annex B or avcC)."""
    data = bytes(extradata or b"")
    if data[:1] == b"\x01" and len(data) >= 4:  # avcC: version 1, then the three bytes
        return f"avc1.{data[1:4].hex().upper()}"
    for start in (b"\x00\x00\x00\x01", b"\x00\x00\x01"):
        at = data.find(start)
        while at >= 0:
            nal = data[at + len(start) :]
            if nal and nal[0] & 0x1F == 7 and len(nal) >= 4:  # NAL type 7: SPS
                return f"avc1.{nal[1:4].hex().upper()}"
            at = data.find(start, at + 1)
    raise InputError("H.264 encoder gave no sequence parameter set (cannot name the codec)")
