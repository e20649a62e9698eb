"""Posing a reference hand: finger curl changes, then rotation onto a new wrist position.

Fingers flex in the image plane, joint by joint, away from the thumb side (as measured on
the reference hand), and the thumb folds towards the fingers; so the more curled outer
fingers fan away from their neighbours instead of crossing them, and any reference hand
keeps its own proportions.
"""

from __future__ import annotations

import numpy as np

from cospeech.motion.rules.rig import ArmRig
from cospeech.motion.rules.signals import rotate
from cospeech.pose.schema import HAND_FINGERS

FINGER_FLEX = (1.1, 1.6, 1.0)  # rad at the MCP, PIP, DIP joints per unit of curl
THUMB_FLEX = (0.5, 0.6, 0.5)  # rad at the thumb joints per unit of curl
IN_PLANE = 0.7  # share of the flexion seen in the image plane
CURL_LIMITS = (-0.35, 0.8)  # curl change clipped to what a relaxed hand can do


def pose_hand(
    reference: np.ndarray, arm: ArmRig, wrist: np.ndarray, rotation: np.ndarray, curl: np.ndarray
) -> np.ndarray:
    """Hand keypoints ``[T, 21, 2]`` from the reference hand ``[21, 2]``: fingers curled by
    ``curl`` ``[T, 5]`` (thumb..pinky), rotated by ``rotation`` ``[T]`` radians about the
    wrist, and moved to ``wrist`` ``[T, 2]``."""
    T = len(wrist)
    local = np.broadcast_to(reference - reference[0], (T, 21, 2)).copy()
    curl = np.clip(curl, *CURL_LIMITS)
    for finger, chain in enumerate(HAND_FINGERS):
        flex = THUMB_FLEX if finger == 0 else FINGER_FLEX
        sign = -arm.thumb_side
        for joint, gain in enumerate(flex):
            pivot = local[:, chain[joint]]
            distal = list(chain[joint + 1 :])
            angle = sign * IN_PLANE * gain * curl[:, finger]
            local[:, distal] = pivot[:, None] + rotate(
                local[:, distal] - pivot[:, None], angle[:, None]
            )
    return wrist[:, None] + rotate(local, rotation[:, None])
