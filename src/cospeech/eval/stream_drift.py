"""``cospeech bench stream``: a long speech streamed through ``Generator.stream``, checked
for drift (first span of frames vs the last, a minute each by default) and for memory.

Nothing is written to disk and no frames are kept: each span is summarised by running sums
(:class:`SpanStats`), so the measurement itself holds a fixed amount of memory. Measures
of a span (frames uint8 RGB, 0-255 levels):

- **mean colour** per channel (R, G, B) over all pixels of all frames;
- **colour histogram**: 32 bins per channel over all pixels; the distance of two spans is
  the total variation ``0.5 * sum |p - q|`` of the normalised histograms, averaged over
  the channels (0 = same colour distribution, 1 = disjoint);
- **sharpness**: the mean over frames of the variance of the Laplacian of the luma
  (:func:`cospeech.eval.video.image_quality.laplacian_variance`);
- **mean frame**: the per-pixel mean of the span; the two spans' mean frames are compared
  with PSNR and SSIM (:mod:`cospeech.eval.video_metrics`). The speaker moves but stays in
  place, so the mean frames of two minutes of the same speaker agree closely, and a
  drifting face, clothes or background lowers the agreement;
- **face distance** (identity): for each frame, the square around its face keypoints (the
  68 face points of the driving pose, side ``(1 + 2 * FACE_MARGIN)`` times the larger
  extent) is cut out, resized to ``FACE_SIDE`` pixels and compared with the same cut of the
  framed reference photo: mean absolute difference in levels, averaged over the frames.
  The mouth and head move, so it is not 0, but it stays the same when the identity holds.
  (dlib finds no face on the bundled cartoon speaker, hence this appearance measure.)

Memory: the resident set size of the process (:func:`cospeech.pipeline.bench.rss_bytes`)
is sampled after every chunk; flat memory means the size at the end of the first span is
the size at the end of the stream, whatever its length.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from cospeech.errors import InputError
from cospeech.eval.video.image_quality import laplacian_variance, luma
from cospeech.eval.video_metrics import psnr_per_frame, ssim_per_frame
from cospeech.pipeline.bench import rss_bytes
from cospeech.pipeline.generate import GenerateOptions
from cospeech.pipeline.generator import Generator, ImageInput, PoseInput
from cospeech.pose import schema

HISTOGRAM_BINS = 32
FACE_SIDE = 32
FACE_MARGIN = 0.15
CHANNELS = ("red", "green", "blue")


def face_box(keypoints: np.ndarray, height: int, width: int) -> tuple[int, int, int, int] | None:
    """``(x0, y0, x1, y1)`` (exclusive ends, inside the frame) of the square around the
    visible face points of ``keypoints`` ``[133, 3]``, or None without two of them or when
    the square leaves the frame entirely."""
    points = keypoints[list(schema.FACE)]
    seen = points[points[:, 2] > 0, :2]
    if len(seen) < 2:
        return None
    (x0, y0), (x1, y1) = seen.min(axis=0), seen.max(axis=0)
    half = max(x1 - x0, y1 - y0) * (0.5 + FACE_MARGIN)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    box = (max(0, round(cx - half)), max(0, round(cy - half)),
           min(width, round(cx + half)), min(height, round(cy + half)))  # fmt: skip
    return box if box[2] - box[0] >= 2 and box[3] - box[1] >= 2 else None


def face_crop(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The ``box`` of ``frame`` ``[H, W, 3]`` resized to ``[FACE_SIDE, FACE_SIDE, 3]``
    float32 (area averaging, linear in the pixel values)."""
    x0, y0, x1, y1 = box
    piece = np.ascontiguousarray(frame[y0:y1, x0:x1], np.float32)
    return cv2.resize(piece, (FACE_SIDE, FACE_SIDE), interpolation=cv2.INTER_AREA)


@dataclass
class SpanStats:
    """Running sums over the frames of one span (see the module docstring).
    ``reference_face``: the reference's :func:`face_crop` (None: no face distance)."""

    reference_face: np.ndarray | None = None
    frames: int = 0
    frame_sum: np.ndarray | None = field(default=None, repr=False)  # [H, W, 3] float64
    histogram: np.ndarray = field(default_factory=lambda: np.zeros((3, HISTOGRAM_BINS)))
    sharpness_sum: float = 0.0
    face_distance_sum: float = 0.0
    face_frames: int = 0

    def add(self, frames: np.ndarray, keypoints: np.ndarray) -> None:
        """Add frames uint8 ``[n, H, W, 3]`` driven by ``keypoints`` ``[n, 133, 3]``."""
        if frames.ndim != 4 or frames.shape[-1] != 3 or len(keypoints) != len(frames):
            raise InputError(f"frames [n, H, W, 3] with n keypoint frames expected, got "
                             f"{list(frames.shape)} and {list(keypoints.shape)}")  # fmt: skip
        if not len(frames):
            return
        total = frames.sum(axis=0, dtype=np.float64)
        self.frame_sum = total if self.frame_sum is None else self.frame_sum + total
        self.frames += len(frames)
        for channel in range(3):
            counts, _ = np.histogram(frames[..., channel], HISTOGRAM_BINS, (0, 256))
            self.histogram[channel] += counts
        self.sharpness_sum += sum(laplacian_variance(luma(frame)) for frame in frames)
        if self.reference_face is not None:
            height, width = frames.shape[1:3]
            for frame, points in zip(frames, keypoints, strict=True):
                box = face_box(points, height, width)
                if box is not None:
                    distance = np.abs(face_crop(frame, box) - self.reference_face).mean()
                    self.face_distance_sum += float(distance)
                    self.face_frames += 1

    def _check(self) -> None:
        if self.frame_sum is None:
            raise InputError("a span without frames has no measures")

    @property
    def mean_frame(self) -> np.ndarray:
        """``[H, W, 3]`` float64, the per-pixel mean of the span's frames."""
        self._check()
        return self.frame_sum / self.frames

    @property
    def mean_colour(self) -> np.ndarray:
        """``[3]`` mean level of R, G, B."""
        return self.mean_frame.mean(axis=(0, 1))

    @property
    def sharpness(self) -> float:
        self._check()
        return self.sharpness_sum / self.frames

    @property
    def face_distance(self) -> float:
        """Mean absolute difference to the reference's face, levels (NaN: no face)."""
        return self.face_distance_sum / self.face_frames if self.face_frames else float("nan")

    def summary(self) -> dict:
        return {
            "frames": self.frames,
            "mean_colour": dict(zip(CHANNELS, self.mean_colour.tolist(), strict=True)),
            "sharpness": self.sharpness,
            "face_distance": self.face_distance,
            "face_frames": self.face_frames,
        }


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total variation of two ``[3, bins]`` count histograms, normalised per channel and
    averaged over the channels, in [0, 1]."""
    p = a / a.sum(axis=1, keepdims=True)
    q = b / b.sum(axis=1, keepdims=True)
    return float(0.5 * np.abs(p - q).sum(axis=1).mean())


def drift(first: SpanStats, last: SpanStats) -> dict:
    """How ``last`` differs from ``first`` (see the module docstring): colour shift per
    channel (last - first, levels), histogram distance, sharpness ratio (last / first),
    PSNR (dB, inf when equal) and SSIM of the mean frames, face distance change (levels)."""
    shift = last.mean_colour - first.mean_colour
    means = first.mean_frame[None], last.mean_frame[None]
    return {
        "mean_colour_shift": dict(zip(CHANNELS, shift.tolist(), strict=True)),
        "mean_colour_shift_max": float(np.abs(shift).max()),
        "histogram_distance": histogram_distance(first.histogram, last.histogram),
        "sharpness_ratio": last.sharpness / first.sharpness if first.sharpness else float("nan"),
        "mean_frame_psnr_db": float(psnr_per_frame(*means)[0]),
        "mean_frame_ssim": float(ssim_per_frame(*means)[0]),
        "face_distance_change": last.face_distance - first.face_distance,
    }


@dataclass
class MemoryTrace:
    """Resident memory after each chunk: ``samples`` of ``(seconds of video made, bytes)``."""

    samples: list[tuple[float, int]] = field(default_factory=list)

    def add(self, video_s: float, rss: int) -> None:
        self.samples.append((video_s, rss))

    def at(self, video_s: float) -> int:
        """Bytes at the first sample made once ``video_s`` seconds of video existed (the
        last sample when none is that late)."""
        if not self.samples:
            raise InputError("no memory samples")
        return next((rss for s, rss in self.samples if s >= video_s), self.samples[-1][1])

    def summary(self, span_s: float) -> dict:
        """Sizes in MiB: after the first span, at the end, the peak, and end - first span."""
        mib = 2.0**20
        start, end = self.at(span_s), self.samples[-1][1]
        return {
            "rss_after_first_span_mib": start / mib,
            "rss_end_mib": end / mib,
            "rss_peak_mib": max(rss for _, rss in self.samples) / mib,
            "rss_growth_mib": (end - start) / mib,
            "samples": len(self.samples),
        }


def long_speech(speech: np.ndarray, seconds: float, sample_rate: int) -> np.ndarray:
    """``speech`` ``[samples]`` repeated end to end and cut to ``seconds``."""
    return np.resize(speech, round(seconds * sample_rate)).astype(np.float32)


@dataclass(frozen=True)
class DriftReport:
    """What :func:`stream_drift` measured (seconds of wall time; spans of ``span_s``)."""

    frames: int
    fps: float
    size: int
    span_s: float
    wall_s: float
    compute_s: float
    first_chunk_s: float | None
    peak_latent_frames: int
    first: dict
    last: dict
    drift: dict
    memory: dict

    def as_dict(self) -> dict:
        return {**asdict(self), "video_s": self.frames / self.fps,
                "compute_fps": self.frames / self.compute_s}  # fmt: skip

    def format(self) -> str:
        d, m = self.drift, self.memory
        shift = ", ".join(f"{v:+.2f}" for v in d["mean_colour_shift"].values())
        return "\n".join([
            f"streamed {self.frames} frames ({self.frames / self.fps / 60:.2f} min) at "
            f"{self.size}x{self.size} in {self.wall_s:.1f} s; compute "
            f"{self.compute_s:.1f} s = {self.frames / self.compute_s:.2f} FPS; first chunk "
            f"after {self.first_chunk_s:.2f} s; peak latent frames held "
            f"{self.peak_latent_frames}",
            f"first vs last {self.span_s:g} s: mean colour R, G, B shift {shift} levels; "
            f"histogram distance {d['histogram_distance']:.4f}; sharpness "
            f"{self.first['sharpness']:.1f} -> {self.last['sharpness']:.1f} (x"
            f"{d['sharpness_ratio']:.3f}); mean frames PSNR {d['mean_frame_psnr_db']:.2f} dB, "
            f"SSIM {d['mean_frame_ssim']:.4f}; face distance to the reference "
            f"{self.first['face_distance']:.2f} -> {self.last['face_distance']:.2f} levels",
            f"memory (RSS): {m['rss_after_first_span_mib']:.0f} MiB after the first "
            f"{self.span_s:g} s, {m['rss_end_mib']:.0f} MiB at the end "
            f"({m['rss_growth_mib']:+.1f} MiB), peak {m['rss_peak_mib']:.0f} MiB",
        ])  # fmt: skip


def stream_drift(
    generator: Generator,
    speech: np.ndarray,
    image: ImageInput,
    *,
    reference_pose: PoseInput = None,
    options: GenerateOptions | None = None,
    span_s: float = 60.0,
    on_frames: Callable[[int], None] | None = None,
) -> DriftReport:
    """Stream ``speech`` (float32 ``[samples]`` at the generator's rate) through
    ``generator.stream`` and measure the first and last ``span_s`` seconds and the memory
    (see the module docstring). ``on_frames(n)`` after each chunk of ``n`` frames."""
    started = time.perf_counter()
    stream = generator.stream(speech, image, reference_pose=reference_pose, options=options)
    span = round(span_s * stream.fps)
    if not 1 <= span <= stream.total // 2:
        stream.close()
        raise InputError(
            f"--span-s {span_s:g}: the first and last spans must hold at least one frame and "
            f"not overlap in {stream.total / stream.fps:.1f} s of speech"
        )
    reference = stream.job.reference
    ref_box = face_box(reference.keypoints, reference.size, reference.size)
    ref_face = face_crop(reference.image, ref_box) if ref_box is not None else None
    first, last, memory = SpanStats(ref_face), SpanStats(ref_face), MemoryTrace()
    with closing(stream):
        for chunk in stream:
            for stats, lo, hi in ((first, 0, span), (last, stream.total - span, stream.total)):
                a, b = max(lo, chunk.start), min(hi, chunk.stop)
                if a < b:
                    pick = slice(a - chunk.start, b - chunk.start)
                    stats.add(chunk.frames[pick], stream.keypoints[a:b])
            memory.add(chunk.stop / stream.fps, rss_bytes())
            if on_frames is not None:
                on_frames(len(chunk.frames))
    return DriftReport(
        stream.total, stream.fps, stream.size, span_s, time.perf_counter() - started,
        stream.phases["sampling"] + stream.phases["decode"], stream.first_chunk_seconds,
        stream.peak_latent_frames, first.summary(), last.summary(), drift(first, last),
        memory.summary(span_s),
    )  # fmt: skip
