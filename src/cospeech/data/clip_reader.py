"""Reading a window of frames from a clip's ``video.mp4`` without decoding all of it.

:func:`read_frames` seeks to the key frame at or before the window and decodes from there
to the window's end, so a window late in a long clip costs one GOP plus the window, not
the whole clip. :class:`FrameCache` keeps whole decoded clips in memory, up to a byte
budget, for small corpora that are read over and over in training.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from pathlib import Path

import av
import numpy as np

from cospeech.errors import InputError


def read_frames(path: str | Path, start: int, count: int) -> np.ndarray:
    """Frames ``[start, start + count)`` of the first video stream as ``[count, H, W, 3]``
    uint8 RGB. Frame numbers follow presentation time: frame ``i`` is shown at ``i / fps``
    after the stream's start."""
    if start < 0 or count <= 0:
        raise InputError(f"video {path}: bad frame window start={start} count={count}")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise InputError(f"video {path}: cannot be opened ({exc})") from None
    frames: list[np.ndarray] = []
    with contextlib.closing(container):
        if not container.streams.video:
            raise InputError(f"video {path}: no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        if not rate:
            raise InputError(f"video {path}: unknown frame rate")
        origin = stream.start_time or 0
        ticks_per_frame = 1 / (rate * stream.time_base)
        try:
            if start > 0:
                container.seek(origin + int(start * ticks_per_frame), stream=stream, backward=True)
            for frame in container.decode(stream):
                index = round((frame.pts - origin) / ticks_per_frame)
                if index < start:
                    continue
                frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) == count:
                    break
        except av.FFmpegError as exc:
            raise InputError(f"video {path}: decoding failed ({exc})") from None
    if len(frames) < count:
        raise InputError(
            f"video {path}: frames {start}..{start + count - 1} requested, "
            f"only {start + len(frames)} decodable"
        )
    return np.stack(frames)


class FrameCache:
    """Whole decoded clips ``[T, H, W, 3]`` in memory, least recently used dropped first.

    ``max_bytes`` = 0 turns the cache off. Each DataLoader worker holds its own cache.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._clips: OrderedDict[Path, np.ndarray] = OrderedDict()
        self._bytes = 0

    def window(self, path: Path, shape: tuple[int, int, int], start: int, count: int) -> np.ndarray:
        """Frames ``[start, start + count)`` of a clip of ``shape`` = (frames, H, W)."""
        clip = self._clips.get(path)
        if clip is None:
            frames, height, width = shape
            if frames * height * width * 3 > self.max_bytes:
                return read_frames(path, start, count)
            clip = read_frames(path, 0, frames)
            self._add(path, clip)
        self._clips.move_to_end(path)
        return clip[start : start + count]

    def _add(self, path: Path, clip: np.ndarray) -> None:
        self._clips[path] = clip
        self._bytes += clip.nbytes
        while self._bytes > self.max_bytes and len(self._clips) > 1:
            _, dropped = self._clips.popitem(last=False)
            self._bytes -= dropped.nbytes
