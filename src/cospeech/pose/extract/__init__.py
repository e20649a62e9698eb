"""Keypoint extraction: video or photo -> :class:`~cospeech.pose.sequence.PoseSequence`.

Two backends give COCO-WholeBody-133 keypoints per frame:

* ``mediapipe`` (default): MediaPipe Holistic, models inside the wheel, mapped to
  COCO-WholeBody by :mod:`cospeech.pose.extract.mapping`;
* ``onnx``: a DWPose / RTMW whole-body ``.onnx`` file the user provides, run top-down on
  the person box found by MediaPipe pose (the whole frame when none is found).

Video tracks are smoothed with a One-Euro filter (:mod:`cospeech.pose.extract.smoothing`).
A photo gives a one-frame sequence (``fps`` = :data:`IMAGE_FPS`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, UnidentifiedImageError

from cospeech.errors import InputError
from cospeech.media.video import iter_frames, probe
from cospeech.pose.extract.smoothing import DEFAULT_SMOOTHING, OneEuroConfig, smooth_keypoints
from cospeech.pose.sequence import PoseSequence
from cospeech.progress import track

BACKENDS = ("mediapipe", "onnx")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})
# A photo is a one-frame sequence; its frame rate is nominal: nothing is timed by it.
IMAGE_FPS = 1.0


class KeypointExtractor(Protocol):
    """RGB frame ``[H, W, 3]`` uint8 -> ``[133, 3]`` keypoints (x, y pixels, confidence)."""

    def __call__(self, frame: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


class _TopDownOnnx:
    """ONNX whole-body model on the MediaPipe person box of each frame."""

    def __init__(self, pose_model: str | Path, static_images: bool) -> None:
        from cospeech.pose.extract.mediapipe_backend import MediaPipePersonBox
        from cospeech.pose.extract.onnx_backend import OnnxWholeBody

        self._model = OnnxWholeBody(pose_model)
        self._boxes = MediaPipePersonBox(static_images=static_images)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        return self._model(frame, self._boxes(frame))

    def close(self) -> None:
        self._boxes.close()


def open_extractor(
    backend: str = "mediapipe", pose_model: str | Path | None = None, static_images: bool = False
) -> KeypointExtractor:
    """A per-frame extractor; ``static_images`` for unrelated photos instead of a video."""
    if backend == "mediapipe":
        from cospeech.pose.extract.mediapipe_backend import MediaPipeHolistic

        return MediaPipeHolistic(static_images=static_images)
    if backend == "onnx":
        if pose_model is None:
            raise InputError("the onnx backend needs --pose-model FILE.onnx (DWPose or RTMW)")
        return _TopDownOnnx(pose_model, static_images)
    raise InputError(f"unknown pose backend {backend!r}; choose one of {list(BACKENDS)}")


def is_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def read_image(path: str | Path) -> np.ndarray:
    """A photo as ``[H, W, 3]`` uint8 RGB."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"image {path}: is a folder, not a file")
    if not path.is_file():
        raise InputError(f"image {path}: no such file")
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except UnidentifiedImageError:
        raise InputError(f"image {path}: not an image (or a format Pillow cannot read)") from None
    except (OSError, Image.DecompressionBombError) as exc:
        raise InputError(f"image {path}: cannot be read ({exc})") from None


def extract_keypoints(
    frames: Iterable[np.ndarray],
    extractor: KeypointExtractor,
    name: str,
    total: int | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Run ``extractor`` over RGB frames -> ``[T, 133, 3]`` and the frame (width, height)."""
    rows = []
    size = (0, 0)
    for frame in track(frames, "keypoints", total, "frame", enabled=progress, leave=False):
        size = (frame.shape[1], frame.shape[0])
        rows.append(extractor(frame))
    if not rows:
        raise InputError(f"{name}: no decodable frames")
    return np.stack(rows), size


def extract_video(
    path: str | Path,
    backend: str = "mediapipe",
    pose_model: str | Path | None = None,
    smoothing: OneEuroConfig | None = DEFAULT_SMOOTHING,
    progress: bool = False,
) -> PoseSequence:
    """Keypoints of every frame of a video, smoothed unless ``smoothing`` is None."""
    info = probe(path)
    if not info.fps > 0:
        raise InputError(f"video {path}: unknown frame rate")
    extractor = open_extractor(backend, pose_model)
    try:
        keypoints, (width, height) = extract_keypoints(
            iter_frames(path), extractor, f"video {path}", total=info.frames, progress=progress
        )
    finally:
        extractor.close()
    if not (keypoints[..., 2] > 0).any():
        raise InputError(f"video {path}: no person found in {len(keypoints)} frame(s)")
    if smoothing is not None:
        keypoints = smooth_keypoints(keypoints, info.fps, height, smoothing)
    return PoseSequence(keypoints, info.fps, width, height)


def extract_image(
    path: str | Path, backend: str = "mediapipe", pose_model: str | Path | None = None
) -> PoseSequence:
    """Keypoints of a photo as a one-frame sequence."""
    image = read_image(path)
    extractor = open_extractor(backend, pose_model, static_images=True)
    try:
        keypoints = extractor(image)
    finally:
        extractor.close()
    if not (keypoints[:, 2] > 0).any():
        raise InputError(f"image {path}: no person found")
    return PoseSequence(keypoints[None], IMAGE_FPS, image.shape[1], image.shape[0])


def extract_pose(
    path: str | Path,
    backend: str = "mediapipe",
    pose_model: str | Path | None = None,
    smoothing: OneEuroConfig | None = DEFAULT_SMOOTHING,
    progress: bool = False,
) -> PoseSequence:
    """A photo or a video -> PoseSequence (photos by their file suffix)."""
    if is_image(path):
        return extract_image(path, backend, pose_model)
    return extract_video(path, backend, pose_model, smoothing, progress)
