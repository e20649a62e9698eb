"""Faces with dlib: frontal face detector, 68 landmarks, 128-d identity descriptors.

The weights are the ones of the PyPI package ``face-recognition-models`` (dlib's
``shape_predictor_68_face_landmarks.dat`` and ``dlib_face_recognition_resnet_model_v1.dat``);
dlib itself comes from ``dlib-bin``. The package's ``__init__`` imports the missing
``pkg_resources``, so its files are found through :func:`importlib.util.find_spec` without
importing it.

Landmarks follow dlib's numbering: 0-based, the iBUG 300-W order (the 1-based iBUG point
``n`` is dlib's ``n - 1``); the same convention as the face part of COCO-WholeBody in
:mod:`cospeech.pose.schema`. Two descriptors of one person are closer than 0.6 (Euclidean),
the rule dlib documents for this model (99.38 % on LFW).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from cospeech.errors import CospeechError, InputError

MODELS_PACKAGE = "face_recognition_models"
LANDMARKS_FILE = "shape_predictor_68_face_landmarks.dat"
DESCRIPTOR_FILE = "dlib_face_recognition_resnet_model_v1.dat"
LANDMARKS = 68
DESCRIPTOR_SIZE = 128
INSTALL_HINT = "pip install dlib-bin face-recognition-models"


@dataclass(frozen=True)
class FaceConfig:
    """``upsample``: times the detector doubles the image first (1 finds faces down to
    about 40 px, 0 only from about 80 px); ``same_person_distance``: descriptors closer
    than this are one person."""

    upsample: int = 1
    same_person_distance: float = 0.6

    def __post_init__(self) -> None:
        if not 0 <= self.upsample <= 3:
            raise InputError(f"face detector upsampling must be in [0, 3], got {self.upsample}")


@dataclass(frozen=True)
class Face:
    """One detected face: ``box`` ``(x0, y0, x1, y1)`` in pixels (x1, y1 exclusive, clipped
    to the frame), ``landmarks`` ``[68, 2]`` pixels, ``descriptor`` ``[128]`` or None."""

    box: tuple[int, int, int, int]
    landmarks: np.ndarray
    descriptor: np.ndarray | None


def _dlib() -> ModuleType:
    try:
        import dlib
    except ImportError as exc:
        raise CospeechError(f"face measures need dlib ({exc}); {INSTALL_HINT}") from None
    return dlib


def model_file(name: str) -> Path:
    """Path of one ``.dat`` file of ``face-recognition-models`` (found without importing it)."""
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CospeechError(
            f"face measures need the face-recognition-models package; {INSTALL_HINT}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise CospeechError(f"face-recognition-models has no {name} ({path}); {INSTALL_HINT}")
    return path


def _check_frame(frame: np.ndarray) -> np.ndarray:
    frame = np.ascontiguousarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise InputError(f"frame: expected uint8 RGB [H, W, 3], got {frame.dtype} {frame.shape}")
    return frame


class FaceAnalyzer:
    """RGB frame ``[H, W, 3]`` uint8 -> the largest :class:`Face` in it, or None.

    ``descriptors=False`` skips the identity network (the slow part).
    """

    def __init__(self, config: FaceConfig = FaceConfig(), descriptors: bool = True) -> None:
        dlib = _dlib()
        self.config = config
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(model_file(LANDMARKS_FILE)))
        self._encoder = (
            dlib.face_recognition_model_v1(str(model_file(DESCRIPTOR_FILE)))
            if descriptors
            else None
        )

    def __call__(self, frame: np.ndarray) -> Face | None:
        frame = _check_frame(frame)
        boxes = self._detector(frame, self.config.upsample)
        if len(boxes) == 0:
            return None
        box = max(boxes, key=lambda rect: rect.area())
        shape = self._predictor(frame, box)
        landmarks = np.array([(p.x, p.y) for p in shape.parts()], np.float64)
        descriptor = None
        if self._encoder is not None:
            descriptor = np.array(self._encoder.compute_face_descriptor(frame, shape), np.float64)
        height, width = frame.shape[:2]
        clipped = (
            max(box.left(), 0),
            max(box.top(), 0),
            min(box.right() + 1, width),
            min(box.bottom() + 1, height),
        )
        return Face(clipped, landmarks, descriptor)


def reference_descriptor(analyzer: FaceAnalyzer, image: np.ndarray, name: str) -> np.ndarray:
    """The descriptor ``[128]`` of the largest face in a reference photo (``InputError``
    naming ``name`` when it shows none)."""
    face = analyzer(image)
    if face is None or face.descriptor is None:
        raise InputError(f"reference {name}: no face found by dlib's frontal face detector")
    return face.descriptor


def identity_scores(
    descriptors: np.ndarray, reference: np.ndarray, same_person_distance: float
) -> tuple[float, float]:
    """``(same-person rate, mean distance)`` of descriptors ``[F, 128]`` (NaN rows: frames
    without a face, left out) to ``reference`` ``[128]``; NaN, NaN without any face."""
    found = np.isfinite(descriptors).all(axis=1)
    if not found.any():
        return float("nan"), float("nan")
    distance = np.linalg.norm(descriptors[found] - reference[None], axis=1)
    return float((distance < same_person_distance).mean()), float(distance.mean())
