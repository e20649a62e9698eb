"""The COCO-WholeBody-133 keypoint layout.

Order: 0-16 body (COCO 17), 17-22 feet, 23-90 face (68 points, iBUG order),
91-111 left hand, 112-132 right hand (21 points each: wrist, then thumb, index, middle,
ring, pinky from base to tip). "Left" is the person's left.
"""

from __future__ import annotations

import itertools

NUM_KEYPOINTS = 133

BODY = tuple(range(0, 17))
FEET = tuple(range(17, 23))
FACE = tuple(range(23, 91))
LEFT_HAND = tuple(range(91, 112))
RIGHT_HAND = tuple(range(112, 133))

BODY_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
FEET_NAMES = (
    "left_big_toe", "left_small_toe", "left_heel",
    "right_big_toe", "right_small_toe", "right_heel",
)  # fmt: skip

NOSE, LEFT_EYE, RIGHT_EYE, LEFT_EAR, RIGHT_EAR = 0, 1, 2, 3, 4
LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_ELBOW, RIGHT_ELBOW = 5, 6, 7, 8
LEFT_WRIST, RIGHT_WRIST, LEFT_HIP, RIGHT_HIP = 9, 10, 11, 12

# Face: offsets into the 68-point iBUG layout, and absolute indices.
FACE_OFFSET = FACE[0]
FACE_JAW = tuple(FACE_OFFSET + i for i in range(0, 17))
FACE_RIGHT_BROW = tuple(FACE_OFFSET + i for i in range(17, 22))
FACE_LEFT_BROW = tuple(FACE_OFFSET + i for i in range(22, 27))
FACE_NOSE_BRIDGE = tuple(FACE_OFFSET + i for i in range(27, 31))
FACE_NOSE_BOTTOM = tuple(FACE_OFFSET + i for i in range(31, 36))
FACE_RIGHT_EYE = tuple(FACE_OFFSET + i for i in range(36, 42))
FACE_LEFT_EYE = tuple(FACE_OFFSET + i for i in range(42, 48))
FACE_OUTER_LIPS = tuple(FACE_OFFSET + i for i in range(48, 60))
FACE_INNER_LIPS = tuple(FACE_OFFSET + i for i in range(60, 68))
MOUTH = FACE_OUTER_LIPS + FACE_INNER_LIPS
# Inner-lip midpoints (iBUG 62 upper, 66 lower): their distance is the mouth opening.
INNER_LIP_TOP = FACE_OFFSET + 62
INNER_LIP_BOTTOM = FACE_OFFSET + 66

HAND_FINGERS = ((1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20))

# Upper body, used for frame similarity (paper Sec. 3.2: face, hands, arms, shoulders, torso).
UPPER_BODY = (
    (NOSE, LEFT_EYE, RIGHT_EYE, LEFT_EAR, RIGHT_EAR)
    + (LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_ELBOW, RIGHT_ELBOW, LEFT_WRIST, RIGHT_WRIST)
    + (LEFT_HIP, RIGHT_HIP)
    + FACE
    + LEFT_HAND
    + RIGHT_HAND
)

BODY_EDGES = (
    (LEFT_SHOULDER, RIGHT_SHOULDER), (LEFT_SHOULDER, LEFT_ELBOW), (LEFT_ELBOW, LEFT_WRIST),
    (RIGHT_SHOULDER, RIGHT_ELBOW), (RIGHT_ELBOW, RIGHT_WRIST),
    (LEFT_SHOULDER, LEFT_HIP), (RIGHT_SHOULDER, RIGHT_HIP), (LEFT_HIP, RIGHT_HIP),
    (LEFT_HIP, 13), (13, 15), (RIGHT_HIP, 14), (14, 16),
    (NOSE, LEFT_EYE), (NOSE, RIGHT_EYE), (LEFT_EYE, LEFT_EAR), (RIGHT_EYE, RIGHT_EAR),
    (15, 17), (15, 18), (15, 19), (16, 20), (16, 21), (16, 22),
)  # fmt: skip


def hand_edges(hand: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """Bones of one 21-point hand as absolute index pairs (wrist -> each finger chain)."""
    edges = []
    for finger in HAND_FINGERS:
        chain = (0, *finger)
        edges += [(hand[a], hand[b]) for a, b in itertools.pairwise(chain)]
    return tuple(edges)


def _polyline(indices: tuple[int, ...], closed: bool = False) -> tuple[tuple[int, int], ...]:
    pairs = list(itertools.pairwise(indices))
    if closed:
        pairs.append((indices[-1], indices[0]))
    return tuple(pairs)


FACE_EDGES = (
    _polyline(FACE_JAW)
    + _polyline(FACE_RIGHT_BROW)
    + _polyline(FACE_LEFT_BROW)
    + _polyline(FACE_NOSE_BRIDGE)
    + _polyline(FACE_NOSE_BOTTOM)
    + _polyline(FACE_RIGHT_EYE, closed=True)
    + _polyline(FACE_LEFT_EYE, closed=True)
    + _polyline(FACE_OUTER_LIPS, closed=True)
    + _polyline(FACE_INNER_LIPS, closed=True)
)
LEFT_HAND_EDGES = hand_edges(LEFT_HAND)
RIGHT_HAND_EDGES = hand_edges(RIGHT_HAND)
