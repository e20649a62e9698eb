"""Hands from the 21 hand keypoints: a palm polygon and five tapered, outlined fingers.

Sizes are fractions of the hand length (wrist to middle-finger knuckle). A hand is drawn
only when all of its 21 keypoints are visible.
"""

from __future__ import annotations

import cv2
import numpy as np

from cospeech.data.synth.palette import Palette
from cospeech.data.synth.shapes import capsules, draw_fixed_convex, fill_convex, to_fixed
from cospeech.pose.schema import HAND_FINGERS

WRIST, MIDDLE_KNUCKLE = 0, 9
KNUCKLES = (5, 9, 13, 17)  # index, middle, ring, pinky bases
THUMB_BASE = 1
OUTLINE_WIDTH = 0.035
FINGER_GAP = 0.6  # rim between overlapping fingers, fraction of the silhouette rim
KNUCKLE_SEGMENTS = len(KNUCKLES) - 1
SEGMENTS_PER_FINGER = 3
WRIST_HALF_WIDTH = 0.27
# Radius of each finger at its four points, base to tip (thumb, index, middle, ring, pinky).
FINGER_RADII = (
    (0.15, 0.13, 0.115, 0.095),
    (0.115, 0.105, 0.095, 0.085),
    (0.12, 0.11, 0.1, 0.088),
    (0.112, 0.102, 0.092, 0.082),
    (0.098, 0.088, 0.079, 0.07),
)
# Draw order: pinky first, thumb last (each finger overlaps the previous with its outline).
FINGER_ORDER = (4, 3, 2, 1, 0)
MIN_HAND_LENGTH = 1.0  # pixels; smaller hands are not drawn


def _palm_polygon(hand: np.ndarray, length: float) -> np.ndarray:
    """Convex palm ``[N, 2]``: wrist corners, thumb base and the four knuckles."""
    direction = (hand[MIDDLE_KNUCKLE] - hand[WRIST]) / length
    normal = np.array([-direction[1], direction[0]])
    wrist_sides = hand[WRIST] + np.outer((-1.0, 1.0), normal * WRIST_HALF_WIDTH * length)
    corners = np.concatenate([wrist_sides, hand[[THUMB_BASE, *KNUCKLES]]]).astype(np.float32)
    return cv2.convexHull(corners)[:, 0, :].astype(np.float64)


def _segments(hand: np.ndarray, length: float) -> tuple[np.ndarray, ...]:
    """Capsule segments of the knuckle row, then of each finger in ``FINGER_ORDER``.

    Returns (starts ``[S, 2]``, ends ``[S, 2]``, start radii ``[S]``, end radii ``[S]``).
    """
    starts, ends, r0, r1 = [], [], [], []
    knuckle_radii = [FINGER_RADII[f][0] for f in range(1, 5)]
    chains = [(KNUCKLES, knuckle_radii)]
    chains += [(HAND_FINGERS[f], FINGER_RADII[f]) for f in FINGER_ORDER]
    for chain, radii in chains:
        starts.append(hand[list(chain[:-1])])
        ends.append(hand[list(chain[1:])])
        r0.extend(radii[:-1])
        r1.extend(radii[1:])
    return (
        np.concatenate(starts), np.concatenate(ends),
        np.asarray(r0) * length, np.asarray(r1) * length,
    )  # fmt: skip


def draw_hand(image: np.ndarray, hand: np.ndarray, palette: Palette) -> None:
    """One hand from its 21 points ``[21, 2]`` (wrist, thumb, index, middle, ring, pinky).

    A dark silhouette rim round the whole hand, the skin-filled palm, then finger by finger
    (pinky first) a light shadow rim and the skin fill, so overlapping fingers stay apart.
    """
    length = float(np.linalg.norm(hand[MIDDLE_KNUCKLE] - hand[WRIST]))
    if length < MIN_HAND_LENGTH:
        return
    rim = OUTLINE_WIDTH * length
    palm = _palm_polygon(hand, length)
    centre = palm.mean(axis=0)
    grown_palm = centre + (palm - centre) * (1.0 + rim / length)
    starts, ends, r0, r1 = _segments(hand, length)
    count = len(starts)
    shapes = to_fixed(
        capsules(
            np.tile(starts, (3, 1)), np.tile(ends, (3, 1)),
            np.concatenate([r0 + rim, r0 + FINGER_GAP * rim, r0]),
            np.concatenate([r1 + rim, r1 + FINGER_GAP * rim, r1]),
        )
    ).reshape(3, count, -1, 2)  # fmt: skip
    silhouette, gaps, fills = shapes
    fill_convex(image, grown_palm, palette.skin_outline)
    draw_fixed_convex(image, silhouette, palette.skin_outline)
    fill_convex(image, palm, palette.skin)
    draw_fixed_convex(image, fills[:KNUCKLE_SEGMENTS], palette.skin)
    for first in range(KNUCKLE_SEGMENTS, count, SEGMENTS_PER_FINGER):
        last = first + SEGMENTS_PER_FINGER
        draw_fixed_convex(image, gaps[first:last], palette.skin_shadow)
        draw_fixed_convex(image, fills[first:last], palette.skin)
