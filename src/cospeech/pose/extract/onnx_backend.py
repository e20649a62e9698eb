"""Whole-body keypoints with a DWPose / RTMW ``.onnx`` model the user provides.

Top-down, as in MMPose's RTMPose deployment: the person box (from MediaPipe pose, or the
whole frame) is padded by 1.25, widened to the model's aspect ratio, and cut out by an
affine warp to the model input size (e.g. 288 x 384, read from the model); pixels are
normalised with the ImageNet mean/std (RGB, as MMPose's data preprocessor feeds them).
The model returns two SimCC vectors per keypoint, ``simcc_x [1, K, W * r]`` and
``simcc_y [1, K, H * r]`` with split ratio r = 2; the arg-max of each, divided by r, is the
keypoint in model-input pixels and the smaller of the two maxima its score. The inverse of
the warp puts the keypoint back into frame pixels.

MMPose (and OpenCV's warp) put pixel centres on integer coordinates; cospeech's keypoints
are continuous (pixel ``j`` covers ``[j, j + 1)``), so the result is shifted by
:data:`PIXEL_CENTRE`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cospeech.errors import InputError
from cospeech.pose.schema import NUM_KEYPOINTS

Box = tuple[float, float, float, float]
# Offset from OpenCV/MMPose pixel coordinates (centres on integers) to continuous ones.
PIXEL_CENTRE = 0.5


@dataclass(frozen=True)
class OnnxPoseConfig:
    """Pre/post-processing constants of MMPose's RTMPose/RTMW/DWPose models."""

    box_padding: float = 1.25
    simcc_split_ratio: float = 2.0
    mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    std: tuple[float, float, float] = (58.395, 57.12, 57.375)


def box_center_scale(box: Box, padding: float) -> tuple[np.ndarray, np.ndarray]:
    """``(x0, y0, x1, y1)`` -> center ``[2]`` and padded size ``[2]`` (w, h)."""
    x0, y0, x1, y1 = box
    center = np.array([(x0 + x1) / 2, (y0 + y1) / 2], np.float64)
    scale = np.array([x1 - x0, y1 - y0], np.float64) * padding
    return center, scale


def fit_aspect(scale: np.ndarray, input_width: int, input_height: int) -> np.ndarray:
    """Grow the box size ``[2]`` (w, h) to the model's aspect ratio, never shrinking it."""
    aspect = input_width / input_height
    width, height = scale
    if width > height * aspect:
        return np.array([width, width / aspect])
    return np.array([height * aspect, height])


def warp_matrix(
    center: np.ndarray, scale: np.ndarray, input_width: int, input_height: int
) -> np.ndarray:
    """``[2, 3]`` affine map from frame pixels into model-input pixels (no rotation)."""
    zoom = input_width / scale[0]
    return np.array(
        [
            [zoom, 0.0, input_width / 2 - zoom * center[0]],
            [0.0, zoom, input_height / 2 - zoom * center[1]],
        ]
    )


def decode_simcc(
    simcc_x: np.ndarray, simcc_y: np.ndarray, split_ratio: float
) -> tuple[np.ndarray, np.ndarray]:
    """``simcc_x [K, Wx]``, ``simcc_y [K, Wy]`` -> locations ``[K, 2]`` in model-input
    pixels and scores ``[K]`` (the smaller of the x and y maxima)."""
    x = np.argmax(simcc_x, axis=1)
    y = np.argmax(simcc_y, axis=1)
    locations = np.stack([x, y], axis=1).astype(np.float64) / split_ratio
    scores = np.minimum(simcc_x.max(axis=1), simcc_y.max(axis=1))
    return locations, scores


def back_transform(
    locations: np.ndarray, center: np.ndarray, scale: np.ndarray, input_size: tuple[int, int]
) -> np.ndarray:
    """Model-input pixels ``[K, 2]`` -> frame pixels (inverse of :func:`warp_matrix`)."""
    return locations / np.asarray(input_size, np.float64) * scale + center - scale / 2


class OnnxWholeBody:
    """RGB frame ``[H, W, 3]`` uint8 (+ optional person box ``(x0, y0, x1, y1)`` in
    continuous pixels, the whole frame if None) -> ``[133, 3]`` keypoints.

    ``model_path`` is a DWPose (``dw-ll_ucoco_384.onnx``) or RTMW whole-body ONNX export
    with input ``[1, 3, H, W]`` and the two SimCC outputs. Scores are clipped to [0, 1];
    a keypoint whose score is not above 0 has confidence 0.
    """

    def __init__(self, model_path: str | Path, config: OnnxPoseConfig = OnnxPoseConfig()):
        import onnxruntime

        path = Path(model_path)
        if path.is_dir():
            raise InputError(f"pose model {path}: is a folder, not a file")
        if not path.is_file():
            raise InputError(f"pose model {path}: no such file")
        try:
            self._session = onnxruntime.InferenceSession(
                str(path), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise InputError(f"pose model {path}: not a loadable ONNX model ({exc})") from None
        inputs = self._session.get_inputs()
        outputs = self._session.get_outputs()
        shape = inputs[0].shape if len(inputs) == 1 else None
        if shape is None or len(shape) != 4 or not all(isinstance(d, int) for d in shape[2:]):
            raise InputError(f"pose model {path}: expected one input [1, 3, H, W] of fixed size")
        if len(outputs) != 2:
            raise InputError(f"pose model {path}: expected two SimCC outputs, got {len(outputs)}")
        self.input_height, self.input_width = int(shape[2]), int(shape[3])
        self._input_name = inputs[0].name
        names = [o.name for o in outputs]
        self._output_names = (
            ["simcc_x", "simcc_y"] if {"simcc_x", "simcc_y"} <= set(names) else names
        )
        self.config = config
        self.path = path

    def __call__(self, frame: np.ndarray, box: Box | None = None) -> np.ndarray:
        height, width = frame.shape[:2]
        box = box if box is not None else (0.0, 0.0, float(width), float(height))
        center, scale = box_center_scale(box, self.config.box_padding)
        center = center - PIXEL_CENTRE  # into OpenCV pixel coordinates
        scale = fit_aspect(scale, self.input_width, self.input_height)
        matrix = warp_matrix(center, scale, self.input_width, self.input_height)
        crop = cv2.warpAffine(
            frame, matrix, (self.input_width, self.input_height), flags=cv2.INTER_LINEAR
        )
        pixels = (crop.astype(np.float32) - np.float32(self.config.mean)) / np.float32(
            self.config.std
        )
        batch = np.ascontiguousarray(pixels.transpose(2, 0, 1)[None])
        simcc_x, simcc_y = self._session.run(self._output_names, {self._input_name: batch})
        if simcc_x.shape[1] != NUM_KEYPOINTS or simcc_y.shape[1] != NUM_KEYPOINTS:
            raise InputError(
                f"pose model {self.path}: gives {simcc_x.shape[1]} keypoints, "
                f"a whole-body model gives {NUM_KEYPOINTS}"
            )
        locations, scores = decode_simcc(simcc_x[0], simcc_y[0], self.config.simcc_split_ratio)
        points = back_transform(locations, center, scale, (self.input_width, self.input_height))
        keypoints = np.zeros((NUM_KEYPOINTS, 3), np.float32)
        keypoints[:, :2] = points + PIXEL_CENTRE
        keypoints[:, 2] = np.clip(scores, 0.0, 1.0)
        return keypoints
