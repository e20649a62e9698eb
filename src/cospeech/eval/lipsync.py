"""Lip-sync measured on pixels: how much open mouth a frame shows (synthetic corpus only).

Only for frames drawn by the synthetic renderer, whose ground truth the teacher evaluation
(:mod:`cospeech.eval.teacher`, :mod:`cospeech.eval.vae`) compares against; any other video
(``generate --contact-sheet``, ``eval video``) is measured with dlib's landmarks
(:func:`cospeech.pose.face68.mouth_opening`).

The synthetic renderer paints the inside of an open mouth and the teeth in two reserved
colours (:mod:`cospeech.data.synth.colours`) that no appearance comes near. The mouth
openness of a frame is a soft count of pixels of those colours inside the box around the
outer-lip keypoints: a pixel at RGB distance ``d`` from the nearer reserved colour counts
``max(0, 1 - d / MOUTH_COLOUR_TOLERANCE)``. The soft count survives video compression and
blur (on the corpus it correlates 0.84-0.93 with the keypoints' inner-lip gap); the
correlation (:func:`cospeech.motion.metrics.correlation`) of a generated video's series
with the ground truth's is the lip-sync score.
"""

from __future__ import annotations

import numpy as np

from cospeech.data.synth.colours import MOUTH_INTERIOR_RGB, TEETH_RGB
from cospeech.errors import InputError
from cospeech.pose import schema

MOUTH_COLOUR_TOLERANCE = 80.0
MOUTH_BOX_MARGIN = 2.0  # pixels around the outer lips


def mouth_openness(frames: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """Soft mouth-colour pixel counts ``[F]`` of uint8 frames ``[F, H, W, 3]`` in the lip
    boxes of ``keypoints`` ``[F, 133, 3]`` (pixels of the frames)."""
    if len(frames) != len(keypoints):
        raise InputError(f"{len(frames)} frames but {len(keypoints)} keypoint frames")
    colours = np.array([MOUTH_INTERIOR_RGB, TEETH_RGB], np.float64)
    height, width = frames.shape[1:3]
    out = np.zeros(len(frames))
    for index, (frame, points) in enumerate(zip(frames, keypoints, strict=True)):
        lips = points[list(schema.FACE_OUTER_LIPS), :2]
        x0, y0 = np.floor(lips.min(axis=0) - MOUTH_BOX_MARGIN).astype(int)
        x1, y1 = np.ceil(lips.max(axis=0) + MOUTH_BOX_MARGIN).astype(int)
        crop = frame[max(y0, 0) : min(y1, height), max(x0, 0) : min(x1, width)]
        if crop.size == 0:
            continue
        pixels = crop.reshape(-1, 1, 3).astype(np.float64)
        distance = np.linalg.norm(pixels - colours[None], axis=-1).min(axis=1)
        out[index] = np.clip(1 - distance / MOUTH_COLOUR_TOLERANCE, 0, 1).sum()
    return out
