"""A plausible upright upper-body pose, built from the schema's indices, for the pose tests.

A person facing the camera (their left is the image's right), head near the top, hips
near the bottom edge, forearms raised with the hands open in front of the chest. Legs
and feet are missing (confidence 0), as in a talking-head crop.
"""

from __future__ import annotations

import numpy as np

from cospeech.pose import schema as s
from cospeech.pose.sequence import PoseSequence


def _arc(cx, cy, rx, ry, start_deg, stop_deg, n):
    a = np.radians(np.linspace(start_deg, stop_deg, n))
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], axis=1)


def _hand(wrist, direction):
    """21 points: wrist, then five fingers (4 joints each) fanning out towards ``direction``
    (+1: towards the image's right, -1: left), fingers pointing up."""
    pts = [wrist]
    for f in range(5):
        angle = np.radians(-90 + direction * (-50 + 25 * f))  # thumb spread out sideways
        for j in range(1, 5):
            r = 0.035 + 0.022 * j
            pts.append((wrist[0] + r * np.cos(angle), wrist[1] + r * np.sin(angle)))
    return np.array(pts)


def upright_keypoints(width: int = 832, height: int = 480) -> np.ndarray:
    """``[133, 3]`` float32 keypoints in pixels of a ``width`` x ``height`` frame."""
    kp = np.zeros((s.NUM_KEYPOINTS, 3))
    unit = np.zeros((s.NUM_KEYPOINTS, 2))  # layout in units of the frame height
    cx = 0.5 * width / height  # horizontal centre in height units

    body = {
        s.NOSE: (cx, 0.27),
        s.LEFT_EYE: (cx + 0.035, 0.23),
        s.RIGHT_EYE: (cx - 0.035, 0.23),
        s.LEFT_EAR: (cx + 0.08, 0.24),
        s.RIGHT_EAR: (cx - 0.08, 0.24),
        s.LEFT_SHOULDER: (cx + 0.2, 0.52),
        s.RIGHT_SHOULDER: (cx - 0.2, 0.52),
        s.LEFT_ELBOW: (cx + 0.34, 0.74),
        s.RIGHT_ELBOW: (cx - 0.34, 0.74),
        s.LEFT_WRIST: (cx + 0.42, 0.52),
        s.RIGHT_WRIST: (cx - 0.42, 0.52),
        s.LEFT_HIP: (cx + 0.14, 0.97),
        s.RIGHT_HIP: (cx - 0.14, 0.97),
    }
    for i, xy in body.items():
        unit[i] = xy

    f = s.FACE_OFFSET
    hx, hy = cx, 0.25  # face centre
    unit[f + 0 : f + 17] = _arc(hx, hy - 0.01, 0.085, 0.11, 180, 0, 17)  # jaw, right to left
    unit[f + 17 : f + 22] = _arc(hx - 0.04, hy - 0.04, 0.03, 0.01, 180, 360, 5)  # right brow
    unit[f + 22 : f + 27] = _arc(hx + 0.04, hy - 0.04, 0.03, 0.01, 180, 360, 5)  # left brow
    unit[f + 27 : f + 31] = np.stack([np.full(4, hx), np.linspace(hy - 0.03, hy + 0.02, 4)], 1)
    unit[f + 31 : f + 36] = np.stack(
        [np.linspace(hx - 0.02, hx + 0.02, 5), np.full(5, hy + 0.03)], 1
    )
    unit[f + 36 : f + 42] = _arc(hx - 0.035, hy - 0.02, 0.015, 0.006, 180, 540, 7)[:6]
    unit[f + 42 : f + 48] = _arc(hx + 0.035, hy - 0.02, 0.015, 0.006, 180, 540, 7)[:6]
    unit[f + 48 : f + 60] = _arc(hx, hy + 0.06, 0.035, 0.015, 180, 540, 13)[:12]
    unit[f + 60 : f + 68] = _arc(hx, hy + 0.06, 0.022, 0.006, 180, 540, 9)[:8]

    unit[s.LEFT_HAND[0] : s.LEFT_HAND[-1] + 1] = _hand(unit[s.LEFT_WRIST], +1)
    unit[s.RIGHT_HAND[0] : s.RIGHT_HAND[-1] + 1] = _hand(unit[s.RIGHT_WRIST], -1)

    kp[:, :2] = unit * height
    kp[:, 2] = 0.9
    kp[13:23, 2] = 0.0  # knees, ankles, feet: out of the crop
    return kp.astype(np.float32)


def closed_mouth(kp: np.ndarray) -> np.ndarray:
    """``kp`` ``[133, 3]`` with the inner lips squeezed onto their horizontal midline (a
    closed mouth)."""
    closed = kp.copy()
    lips = list(s.FACE_INNER_LIPS)
    closed[lips, 1] = kp[lips, 1].mean()
    return closed


def upright_pose(frames: int = 1, width: int = 832, height: int = 480, fps: float = 25.0):
    """A still :class:`PoseSequence` of ``frames`` copies of :func:`upright_keypoints`."""
    kp = np.repeat(upright_keypoints(width, height)[None], frames, axis=0)
    return PoseSequence(kp, fps, width, height)
