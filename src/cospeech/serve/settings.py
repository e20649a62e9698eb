"""What the server accepts and how much it runs at once (``cospeech serve`` flags)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from cospeech.errors import InputError, check_range

MIB = 1024 * 1024
FORM_OVERHEAD_BYTES = 64 * 1024  # multipart boundaries and part headers around the two files


@dataclass(frozen=True)
class ServeSettings:
    """Limits and pool size of one server.

    ``workers``: jobs generated at once (None: derived from ``speed``, see
    :func:`workers_for_speed`); ``max_queue``: jobs waiting beyond those (a full queue answers
    429); ``job_ttl_s``: how long a finished job's video stays downloadable.
    Upload caps: ``max_image_bytes`` / ``max_image_pixels`` for the photo,
    ``max_audio_bytes`` / ``max_audio_seconds`` for the speech.
    Generation settings (``steps``, ``guidance``, ``size``, ``fps``): None takes the model's.
    """

    workers: int | None = None
    max_queue: int = 8
    job_ttl_s: float = 900.0
    max_image_bytes: int = 15 * MIB
    max_image_pixels: int = 25_000_000
    max_audio_bytes: int = 20 * MIB
    max_audio_seconds: float = 60.0
    steps: int | None = None
    guidance: float | None = None
    size: int | None = None
    fps: float | None = None

    def __post_init__(self) -> None:
        if self.workers is not None:
            check_range("--workers", self.workers, 1, 64)
        check_range("--max-queue", self.max_queue, 0, 10_000)
        check_range("--job-ttl", self.job_ttl_s, 1.0)
        check_range("--max-image-mb", self.max_image_bytes / MIB, 0.001, 1024)
        check_range("--max-image-megapixels", self.max_image_pixels / 1e6, 0.0001, 1000)
        check_range("--max-audio-mb", self.max_audio_bytes / MIB, 0.001, 1024)
        check_range("--max-audio-seconds", self.max_audio_seconds, 0.1, 3600)

    @property
    def max_body_bytes(self) -> int:
        """The largest upload request accepted (both files and the form around them)."""
        return self.max_image_bytes + self.max_audio_bytes + FORM_OVERHEAD_BYTES


def workers_for_speed(frames_per_second: float, video_fps: float) -> int:
    """Jobs that can run at once and each still keep up with playback: one job generating
    ``frames_per_second`` alone can be split into ``floor(frames_per_second / video_fps)``
    real-time streams (at least 1: a slower machine runs one job at a time)."""
    if not (math.isfinite(frames_per_second) and frames_per_second > 0 and video_fps > 0):
        raise InputError(
            f"speed must be a positive number of frames per second, got {frames_per_second}"
        )
    return max(1, math.floor(frames_per_second / video_fps))
