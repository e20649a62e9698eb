"""``Renderer``: a deterministic 2D cartoon speaker drawn from COCO-WholeBody-133 keypoints.

Draw order: background (cached), back hair, upper arms (behind the torso unless reaching
across it), neck, clothed torso, forearms, ears, head, eyes, eyebrows, nose, mouth, front
hair, hands. A part is drawn only when its keypoints have confidence >= ``MIN_CONFIDENCE``;
sizes follow the body (shoulder, face and hand size), not the image. Frames are drawn at
``SUPERSAMPLE`` times the output size and averaged down, which anti-aliases the small
features (eyes, fingers) well.
"""

from __future__ import annotations

import cv2
import numpy as np

from cospeech.data.synth.appearance import Appearance
from cospeech.data.synth.background import make_background
from cospeech.data.synth.colours import MOUTH_INTERIOR_RGB, TEETH_RGB
from cospeech.data.synth.frames import MIN_CONFIDENCE, Frame, body_frame, face_frame
from cospeech.data.synth.palette import Palette
from cospeech.data.synth.render_body import (
    draw_forearm,
    draw_neck,
    draw_torso,
    draw_upper_arm,
    elbow_inward,
)
from cospeech.data.synth.render_face import (
    draw_brows,
    draw_ears,
    draw_eyes,
    draw_head,
    draw_mouth,
    draw_nose,
)
from cospeech.data.synth.render_hair import draw_back_hair, draw_front_hair
from cospeech.data.synth.render_hands import draw_hand
from cospeech.errors import InputError
from cospeech.pose.schema import (
    LEFT_HAND,
    LEFT_SHOULDER,
    NUM_KEYPOINTS,
    RIGHT_HAND,
    RIGHT_SHOULDER,
)

__all__ = ["MIN_CONFIDENCE", "MOUTH_INTERIOR_RGB", "SUPERSAMPLE", "TEETH_RGB", "Renderer"]

SUPERSAMPLE = 2  # drawing resolution / output resolution
COORDINATE_LIMIT = 8.0  # keypoints are clipped to +- this many frame sizes
ARM_SIDES = (-1, 1)  # the person's right arm, then the left


class Renderer:
    """Draws one appearance at ``width`` x ``height``; ``render`` is a pure function of the
    keypoints (same keypoints -> same pixels)."""

    def __init__(self, appearance: Appearance, width: int = 256, height: int = 256) -> None:
        if int(width) <= 0 or int(height) <= 0:
            raise InputError(f"renderer: size must be positive, got {width}x{height}")
        self.appearance = appearance
        self.width = int(width)
        self.height = int(height)
        self._palette = Palette.from_appearance(appearance)
        self._background = make_background(appearance, self.width, self.height)
        self._background.setflags(write=False)
        # Nearest-neighbour upsampling: averaging it back down restores the exact background.
        self._canvas = cv2.resize(
            self._background,
            (self.width * SUPERSAMPLE, self.height * SUPERSAMPLE),
            interpolation=cv2.INTER_NEAREST,
        )

    @property
    def background(self) -> np.ndarray:
        """The cached background, uint8 RGB ``[H, W, 3]`` (read-only)."""
        return self._background

    def render(self, keypoints: np.ndarray) -> np.ndarray:
        """Keypoints ``[133, 3]`` (x, y pixels, confidence) -> uint8 RGB ``[H, W, 3]``."""
        keypoints = np.asarray(keypoints)
        if keypoints.shape != (NUM_KEYPOINTS, 3):
            raise InputError(
                f"renderer: expected keypoints [{NUM_KEYPOINTS}, 3], got {list(keypoints.shape)}"
            )
        if not np.isfinite(keypoints).all():
            raise InputError("renderer: keypoints contain NaN or infinite values")
        # Far off-frame points are pulled in to keep fixed-point coordinates in int32 range.
        limit = COORDINATE_LIMIT * max(self.width, self.height)
        points = np.clip(keypoints[:, :2].astype(np.float64), -limit, limit)
        # Output pixel i covers canvas pixels SUPERSAMPLE*i ... SUPERSAMPLE*i + SUPERSAMPLE-1.
        points = points * SUPERSAMPLE + (SUPERSAMPLE - 1) / 2
        visible = keypoints[:, 2] >= MIN_CONFIDENCE
        image = self._canvas.copy()
        face = face_frame(points, visible)
        body = body_frame(points, visible, face)
        if face is not None:
            draw_back_hair(image, face, self._palette, self.appearance.hair_style)
        if body is not None:
            self._draw_body(image, points, visible, body, face)
        if face is not None:
            self._draw_head(image, points, visible, face)
        for hand in (RIGHT_HAND, LEFT_HAND):
            if visible[list(hand)].all():
                draw_hand(image, points[list(hand)], self._palette)
        return cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_AREA)

    def _draw_body(
        self, image: np.ndarray, points: np.ndarray, visible: np.ndarray, body: Frame,
        face: Frame | None,
    ) -> None:  # fmt: skip
        """Arms, neck and torso. An upper arm hanging beside the body goes behind the torso
        (the shoulder blends into the clothing); one reaching across it, in front."""
        palette, style = self._palette, self.appearance.clothing_style
        across = {side for side in ARM_SIDES if elbow_inward(points, body, side)}
        for side in ARM_SIDES:
            if side not in across:
                draw_upper_arm(image, points, visible, body, palette, style, side)
        if visible[[RIGHT_SHOULDER, LEFT_SHOULDER]].all():
            if face is not None:
                draw_neck(image, body, face, palette)
            draw_torso(image, points, visible, body, palette, style)
        for side in ARM_SIDES:
            if side in across:
                draw_upper_arm(image, points, visible, body, palette, style, side)
            draw_forearm(image, points, visible, body, palette, style, side)

    def _draw_head(
        self, image: np.ndarray, points: np.ndarray, visible: np.ndarray, face: Frame
    ) -> None:
        """Ears, skull, face features and the hair in front."""
        palette = self._palette
        draw_ears(image, face, palette)
        draw_head(image, points, face, palette)
        draw_eyes(image, points, visible, face, palette)
        draw_brows(image, points, visible, face, palette)
        draw_nose(image, points, visible, face, palette)
        draw_mouth(image, points, visible, face, palette)
        draw_front_hair(image, face, palette, self.appearance.hair_style)
