"""A contact sheet of a generated video, for checking lip-sync and gestures by eye.

Three bands, ``columns`` moments evenly spread over the video:

1. the frames, enlarged, labelled with their time;
2. the mouth of each frame, cut around the lip keypoints and enlarged;
3. a chart over the whole video: the speech's loudness (grey), the mouth openness
   measured on the generated pixels (red, :func:`cospeech.eval.lipsync.mouth_openness`),
   and the height of each wrist in the driving keypoints (blue: left, green: right),
   with the chosen moments marked.
"""

from __future__ import annotations

import cv2
import numpy as np

from cospeech.eval.lipsync import mouth_openness
from cospeech.pose import schema

COLUMNS = 8
ZOOM = 2
MOUTH_CROP = 24  # pixels of the video frame around the mouth centre
CHART_HEIGHT = 120
LOUDNESS_WINDOW_S = 0.04
BACKGROUND = (255, 255, 255)
LOUDNESS_RGB = (150, 150, 150)
MOUTH_RGB = (210, 30, 30)
WRIST_RGB = ((40, 80, 220), (30, 150, 60))
TEXT_RGB = (20, 20, 20)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _mouth_crop(frame: np.ndarray, keypoints: np.ndarray, side: int) -> np.ndarray:
    """A ``side x side`` enlargement of the square around the lips."""
    centre = keypoints[list(schema.FACE_OUTER_LIPS), :2].mean(axis=0)
    half = MOUTH_CROP / 2
    scale = side / MOUTH_CROP
    matrix = np.array(
        [[scale, 0, (half - centre[0]) * scale], [0, scale, (half - centre[1]) * scale]]
    )
    return cv2.warpAffine(frame, matrix, (side, side), flags=cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_REPLICATE)  # fmt: skip


def _normalised(values: np.ndarray) -> np.ndarray:
    span = values.max() - values.min()
    return (values - values.min()) / span if span > 0 else np.zeros_like(values)


def _loudness(audio: np.ndarray, sample_rate: int, times: np.ndarray) -> np.ndarray:
    """RMS of ``audio`` in a short window around each time."""
    half = max(1, round(LOUDNESS_WINDOW_S * sample_rate / 2))
    centres = np.clip((times * sample_rate).round().astype(int), 0, len(audio) - 1)
    return np.array([np.sqrt(np.mean(audio[max(0, c - half) : c + half] ** 2)) for c in centres])


def _polyline(chart: np.ndarray, values: np.ndarray, colour: tuple, margin: int) -> None:
    height, width = chart.shape[:2]
    xs = np.linspace(0, width - 1, len(values))
    ys = height - margin - values * (height - 2 * margin)
    points = np.stack([xs, ys], axis=1).round().astype(np.int32)
    cv2.polylines(chart, [points], False, colour, 2, cv2.LINE_AA)


def contact_sheet(
    frames: np.ndarray,
    keypoints: np.ndarray,
    audio: np.ndarray,
    sample_rate: int,
    fps: float,
    columns: int = COLUMNS,
) -> np.ndarray:
    """The sheet (see the module docstring) as uint8 RGB ``[H', W', 3]``.

    ``frames`` ``[N, H, W, 3]`` uint8, ``keypoints`` ``[N, 133, 3]`` in frame pixels,
    ``audio`` ``[S]`` mono floats at ``sample_rate``.
    """
    count, height, width = frames.shape[:3]
    cell = width * ZOOM
    picks = np.linspace(0, count - 1, columns).round().astype(int)
    top, middle = [], []
    for index in picks:
        big = cv2.resize(frames[index], (cell, height * ZOOM), interpolation=cv2.INTER_NEAREST)
        cv2.putText(big, f"{index / fps:.2f} s", (4, 16), FONT, 0.45, TEXT_RGB, 3, cv2.LINE_AA)
        cv2.putText(big, f"{index / fps:.2f} s", (4, 16), FONT, 0.45, BACKGROUND, 1, cv2.LINE_AA)
        top.append(big)
        middle.append(_mouth_crop(frames[index], keypoints[index], cell))
    chart = np.full((CHART_HEIGHT, cell * columns, 3), BACKGROUND, np.uint8)
    times = np.arange(count) / fps
    margin = 8
    loudness = _normalised(_loudness(audio, sample_rate, times))
    xs = np.linspace(0, chart.shape[1] - 1, count).round().astype(int)
    for x, value in zip(xs, loudness, strict=True):
        y = round(CHART_HEIGHT - margin - value * (CHART_HEIGHT - 2 * margin))
        cv2.line(chart, (x, CHART_HEIGHT - margin), (x, y), LOUDNESS_RGB, 1)
    openness = mouth_openness(frames, keypoints)
    _polyline(chart, _normalised(openness), MOUTH_RGB, margin)
    for wrist, colour in zip((schema.LEFT_WRIST, schema.RIGHT_WRIST), WRIST_RGB, strict=True):
        _polyline(chart, _normalised(-keypoints[:, wrist, 1]), colour, margin)
    for index in picks:
        x = int(xs[index])
        cv2.line(chart, (x, 0), (x, CHART_HEIGHT - 1), TEXT_RGB, 1)
    legend = (
        f"grey: speech loudness   red: mouth openness (peak {openness.max():.1f} px)   "
        "blue/green: wrist heights"
    )
    cv2.putText(chart, legend, (6, 14), FONT, 0.4, TEXT_RGB, 1, cv2.LINE_AA)
    return np.concatenate([np.concatenate(top, 1), np.concatenate(middle, 1), chart], 0)
