"""A contact sheet of a generated video, for checking lip-sync and gestures by eye.

Three bands, ``columns`` moments evenly spread over the video:

1. the frames, enlarged, labelled with their time;
2. the mouth of each frame, cut around the lip keypoints and enlarged;
3. a chart over the whole video: the speech's loudness (grey,
   :func:`cospeech.eval.video.sync.loudness_envelope`), the mouth opening measured on the
   generated frames by dlib's 68 landmarks (red, inner-lip gap over inter-ocular distance,
   :func:`cospeech.pose.face68.mouth_opening`; frames where dlib finds no face are gaps
   in the line), and the height of each wrist in the driving keypoints (blue: left, green:
   right), with the chosen moments marked. The legend gives the number of frames with a
   face, the correlation of the opening with the loudness and the best audio-visual offset
   (:func:`cospeech.eval.video.sync.estimate_sync`), as ``cospeech eval video`` reports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cospeech.eval.video.faces import FaceAnalyzer, FaceConfig
from cospeech.eval.video.report import FrameRecords
from cospeech.eval.video.sync import SyncResult, estimate_sync, loudness_envelope
from cospeech.media.image import evenly_spaced, image_grid, write_image
from cospeech.pose import schema
from cospeech.pose.face68 import mouth_opening

COLUMNS = 8
ZOOM_SIDE = 256  # frames are enlarged by whole factors to about this side (128 x 2, 256 x 1)
MOUTH_CROP = 0.1875  # side of the square around the mouth centre, of the frame's width
CHART_HEIGHT = 120
BACKGROUND = (255, 255, 255)
LOUDNESS_RGB = (150, 150, 150)
MOUTH_RGB = (210, 30, 30)
WRIST_RGB = ((40, 80, 220), (30, 150, 60))
TEXT_RGB = (20, 20, 20)
FONT = cv2.FONT_HERSHEY_SIMPLEX
DETECT_SIDE = 1024  # dlib's detector upsamples the frame until its shorter side reaches this


def detector_upsample(height: int, width: int) -> int:
    """Times dlib's detector doubles a ``height x width`` frame (0-3) so that its shorter
    side reaches :data:`DETECT_SIDE`: the faces of small generated frames (about 30 px at
    128x128) are found only at 8x."""
    doublings = np.ceil(np.log2(DETECT_SIDE / max(1, min(height, width))))
    return int(np.clip(doublings, 0, 3))


def zoom_for(width: int) -> int:
    """Whole-number enlargement of frames ``width`` pixels wide on the sheet."""
    return max(1, ZOOM_SIDE // max(1, width))


def _number(value: float) -> str:
    """Two decimals, or ``n/a`` for NaN (too few frames with a face, or a flat series)."""
    return f"{value:.2f}" if np.isfinite(value) else "n/a"


@dataclass(frozen=True)
class MouthTrack:
    """The landmark mouth measure of a video: ``opening`` ``[F]`` (NaN: no face found),
    ``loudness`` ``[F]`` dB per frame and their ``sync``."""

    opening: np.ndarray
    loudness: np.ndarray
    sync: SyncResult

    def legend(self) -> str:
        """The chart's line on the mouth: faces found, r at offset 0, best offset."""
        found, count = int(np.isfinite(self.opening).sum()), len(self.opening)
        offset = "none" if self.sync.offset is None else f"{self.sync.offset:+d} frames"
        return (
            f"red: mouth opening (dlib lips), face found in {found} of {count} frames, "
            f"r vs loudness {_number(self.sync.zero_offset_correlation)}, best offset {offset}"
        )


def mouth_track(
    frames: np.ndarray, audio: np.ndarray, sample_rate: int, fps: float, analyzer: FaceAnalyzer
) -> MouthTrack:
    """:class:`MouthTrack` of uint8 RGB ``frames`` ``[F, H, W, 3]`` spoken over ``audio``
    ``[S]`` (mono at ``sample_rate``), the measures of ``cospeech eval video``'s sync."""
    records = FrameRecords(faces=[analyzer(frame) for frame in frames])
    opening = mouth_opening(records.landmarks())
    loudness = loudness_envelope(audio, sample_rate, fps, len(frames))
    return MouthTrack(opening, loudness, estimate_sync(opening, loudness))


def _mouth_crop(frame: np.ndarray, keypoints: np.ndarray, side: int) -> np.ndarray:
    """A ``side x side`` enlargement of the square around the lips (:data:`MOUTH_CROP` of
    the frame's width: 24 px at 128x128, 48 px at 256x256)."""
    centre = keypoints[list(schema.FACE_OUTER_LIPS), :2].mean(axis=0)
    crop = MOUTH_CROP * frame.shape[1]
    half = crop / 2
    scale = side / crop
    matrix = np.array(
        [[scale, 0, (half - centre[0]) * scale], [0, scale, (half - centre[1]) * scale]]
    )
    return cv2.warpAffine(frame, matrix, (side, side), flags=cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_REPLICATE)  # fmt: skip


def _normalised(values: np.ndarray) -> np.ndarray:
    """``values`` mapped to [0, 1] over their finite entries (NaN stays NaN; flat: 0)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return values.astype(np.float64)
    low, span = finite.min(), finite.max() - finite.min()
    return (values - low) / span if span > 0 else np.where(np.isfinite(values), 0.0, np.nan)


def _polyline(chart: np.ndarray, values: np.ndarray, colour: tuple, margin: int) -> None:
    """Draw ``values`` ``[N]`` in [0, 1] across the chart; NaN entries are gaps."""
    height, width = chart.shape[:2]
    xs = np.linspace(0, width - 1, len(values))
    ys = height - margin - values * (height - 2 * margin)
    points = np.stack([xs, np.nan_to_num(ys)], axis=1).round().astype(np.int32)
    finite = np.isfinite(values)
    starts = np.flatnonzero(finite & ~np.r_[False, finite[:-1]])
    stops = np.flatnonzero(finite & ~np.r_[finite[1:], False]) + 1
    runs = [points[a:b] for a, b in zip(starts, stops, strict=True)]
    cv2.polylines(chart, [run for run in runs if len(run) > 1], False, colour, 2, cv2.LINE_AA)
    for run in runs:  # a lone frame between gaps is a dot
        if len(run) == 1:
            cv2.circle(chart, tuple(int(v) for v in run[0]), 2, colour, -1, cv2.LINE_AA)


def contact_sheet(
    frames: np.ndarray,
    keypoints: np.ndarray,
    audio: np.ndarray,
    sample_rate: int,
    fps: float,
    columns: int = COLUMNS,
    analyzer: FaceAnalyzer | None = None,
    notes: tuple[str, ...] = (),
) -> np.ndarray:
    """The sheet (see the module docstring) as uint8 RGB ``[H', W', 3]``.

    ``frames`` ``[N, H, W, 3]`` uint8, ``keypoints`` ``[N, 133, 3]`` in frame pixels,
    ``audio`` ``[S]`` mono floats at ``sample_rate``; ``analyzer`` finds the faces
    (default: landmarks only, upsampling by :func:`detector_upsample`); ``notes``: more
    lines for the chart's legend (e.g. what was found in the photo).
    """
    if analyzer is None:
        config = FaceConfig(upsample=detector_upsample(*frames.shape[1:3]))
        analyzer = FaceAnalyzer(config, descriptors=False)
    mouth = mouth_track(frames, audio, sample_rate, fps, analyzer)
    count, height, width = frames.shape[:3]
    zoom = zoom_for(width)
    cell = width * zoom
    picks = evenly_spaced(count, columns)
    top, middle = [], []  # the frames band, then the mouths band
    for index in picks:
        big = cv2.resize(frames[index], (cell, height * zoom), interpolation=cv2.INTER_NEAREST)
        cv2.putText(big, f"{index / fps:.2f} s", (4, 16), FONT, 0.45, TEXT_RGB, 3, cv2.LINE_AA)
        cv2.putText(big, f"{index / fps:.2f} s", (4, 16), FONT, 0.45, BACKGROUND, 1, cv2.LINE_AA)
        top.append(big)
        middle.append(_mouth_crop(frames[index], keypoints[index], cell))
    legends = ("grey: speech loudness   blue/green: wrist heights", mouth.legend(), *notes)
    chart_height = max(CHART_HEIGHT, 14 * len(legends) + 40)
    chart = np.full((chart_height, cell * columns, 3), BACKGROUND, np.uint8)
    margin = 8
    loudness = np.nan_to_num(_normalised(mouth.loudness))
    xs = np.linspace(0, chart.shape[1] - 1, count).round().astype(int)
    for x, value in zip(xs, loudness, strict=True):
        y = round(chart_height - margin - value * (chart_height - 2 * margin))
        cv2.line(chart, (x, chart_height - margin), (x, y), LOUDNESS_RGB, 1)
    _polyline(chart, _normalised(mouth.opening), MOUTH_RGB, margin)
    for wrist, colour in zip((schema.LEFT_WRIST, schema.RIGHT_WRIST), WRIST_RGB, strict=True):
        _polyline(chart, _normalised(-keypoints[:, wrist, 1]), colour, margin)
    for index in picks:
        x = int(xs[index])
        cv2.line(chart, (x, 0), (x, chart_height - 1), TEXT_RGB, 1)
    for row, legend in enumerate(legends):
        cv2.putText(chart, legend, (6, 14 + 14 * row), FONT, 0.4, TEXT_RGB, 1, cv2.LINE_AA)
    return np.concatenate([image_grid(top + middle, columns), chart], 0)


def write_contact_sheet(
    video: str | Path,
    keypoints: np.ndarray,
    audio: str | Path,
    fps: float,
    path: str | Path,
    notes: tuple[str, ...] = (),
) -> None:
    """Write the :func:`contact_sheet` of the mp4 ``video`` (driven by ``keypoints``
    ``[N, 133, 3]``, spoken ``audio`` a sound file; ``notes``: more legend lines) as a PNG
    at ``path`` (atomically)."""
    from cospeech.audio.load import SAMPLE_RATE, load_audio
    from cospeech.media.video import read_video

    frames, _ = read_video(video)
    sheet = contact_sheet(frames, keypoints, load_audio(audio), SAMPLE_RATE, fps, notes=notes)
    write_image(sheet, path)
