"""Index tables from MediaPipe Holistic landmarks to COCO-WholeBody-133.

MediaPipe Holistic returns four landmark sets per frame:

* pose: 33 BlazePose points (``mediapipe.solutions.pose.PoseLandmark`` order);
* face: 478 face-mesh points (468 + 10 iris points with ``refine_face_landmarks``);
* left hand and right hand: 21 points each, the person's left and right (Holistic crops
  each hand around the matching pose wrist), in the same order as COCO-WholeBody hands
  (wrist, then thumb, index, middle, ring, pinky from base to tip).

The tables below say which MediaPipe point gives which COCO-WholeBody keypoint; see
``docs/data-preparation.md`` for the same tables in prose.
"""

from __future__ import annotations

import numpy as np

from cospeech.pose import schema

POSE_LANDMARKS = 33
FACE_MESH_LANDMARKS = 478
HAND_LANDMARKS = 21

# BlazePose landmark indices used below.
MP_NOSE, MP_LEFT_EYE, MP_RIGHT_EYE, MP_LEFT_EAR, MP_RIGHT_EAR = 0, 2, 5, 7, 8
MP_LEFT_SHOULDER, MP_RIGHT_SHOULDER, MP_LEFT_ELBOW, MP_RIGHT_ELBOW = 11, 12, 13, 14
MP_LEFT_WRIST, MP_RIGHT_WRIST, MP_LEFT_HIP, MP_RIGHT_HIP = 15, 16, 23, 24
MP_LEFT_KNEE, MP_RIGHT_KNEE, MP_LEFT_ANKLE, MP_RIGHT_ANKLE = 25, 26, 27, 28
MP_LEFT_HEEL, MP_RIGHT_HEEL, MP_LEFT_FOOT_INDEX, MP_RIGHT_FOOT_INDEX = 29, 30, 31, 32

# (COCO-WholeBody index, BlazePose index): the 17 COCO body points, in COCO order.
POSE_TO_BODY: tuple[tuple[int, int], ...] = (
    (0, MP_NOSE), (1, MP_LEFT_EYE), (2, MP_RIGHT_EYE), (3, MP_LEFT_EAR), (4, MP_RIGHT_EAR),
    (5, MP_LEFT_SHOULDER), (6, MP_RIGHT_SHOULDER), (7, MP_LEFT_ELBOW), (8, MP_RIGHT_ELBOW),
    (9, MP_LEFT_WRIST), (10, MP_RIGHT_WRIST), (11, MP_LEFT_HIP), (12, MP_RIGHT_HIP),
    (13, MP_LEFT_KNEE), (14, MP_RIGHT_KNEE), (15, MP_LEFT_ANKLE), (16, MP_RIGHT_ANKLE),
)  # fmt: skip

# (COCO-WholeBody index, BlazePose index): the six foot points. BlazePose has one toe point
# per foot ("foot index", the tip of the foot); it stands for both the big and the small
# toe, which therefore coincide. The heels map one to one.
POSE_TO_FEET: tuple[tuple[int, int], ...] = (
    (17, MP_LEFT_FOOT_INDEX), (18, MP_LEFT_FOOT_INDEX), (19, MP_LEFT_HEEL),
    (20, MP_RIGHT_FOOT_INDEX), (21, MP_RIGHT_FOOT_INDEX), (22, MP_RIGHT_HEEL),
)  # fmt: skip

POSE_TO_WHOLEBODY = POSE_TO_BODY + POSE_TO_FEET

# Face mesh -> the 68 iBUG points (entry i = iBUG point i, COCO-WholeBody index 23 + i).
# Each entry names one or two mesh points; two are averaged. This is the widely used
# correspondence of Peizhi Yan's "Mediapipe_2_Dlib_Landmarks" (MIT licence), checked on
# the canonical face-mesh UV map: jaw from the subject's right ear over the chin to the
# left ear, brows, nose bridge and base, eyes from the outer corner clockwise in the image,
# outer lips from the right corner, inner lips from the right corner.
FACE_MESH_TO_IBUG68: tuple[tuple[int, ...], ...] = (
    # jaw 0-16
    (127,), (234,), (93,), (132, 58), (58, 172), (136,), (150,), (176,), (152,),
    (400,), (379,), (365,), (397, 288), (361,), (323,), (454,), (356,),
    # right brow 17-21, left brow 22-26
    (70,), (63,), (105,), (66,), (107,),
    (336,), (296,), (334,), (293,), (300,),
    # nose bridge 27-30, nose base 31-35
    (168, 6), (197, 195), (5,), (4,),
    (75,), (97,), (2,), (326,), (305,),
    # right eye 36-41, left eye 42-47
    (33,), (160,), (158,), (133,), (153,), (144,),
    (362,), (385,), (387,), (263,), (373,), (380,),
    # outer lips 48-59
    (61,), (39,), (37,), (0,), (267,), (269,), (291,), (321,), (314,), (17,), (84,), (91,),
    # inner lips 60-67
    (78,), (82,), (13,), (312,), (308,), (317,), (14,), (87,),
)  # fmt: skip

# Hands: MediaPipe's 21 points are already in COCO-WholeBody order.
HAND_TO_COCO_HAND: tuple[int, ...] = tuple(range(HAND_LANDMARKS))


def face_mesh_to_ibug68(mesh: np.ndarray) -> np.ndarray:
    """``[478 (or 468), 2]`` face-mesh pixel coordinates -> ``[68, 2]`` iBUG points."""
    return np.stack([mesh[list(sources)].mean(axis=0) for sources in FACE_MESH_TO_IBUG68])


def holistic_to_wholebody(
    pose: np.ndarray | None,
    face: np.ndarray | None,
    left_hand: np.ndarray | None,
    right_hand: np.ndarray | None,
) -> np.ndarray:
    """One frame of Holistic output -> ``[133, 3]`` COCO-WholeBody keypoints.

    ``pose`` is ``[33, 3]`` (x, y in pixels, visibility); ``face`` ``[478, 2]``; the hands
    ``[21, 2]`` (pixels). A part that was not detected is None: its keypoints keep
    confidence 0. Face and hand points get confidence 1 when detected (MediaPipe gives no
    per-point score for them); body and feet get the landmark visibility, clipped to [0, 1].
    """
    out = np.zeros((schema.NUM_KEYPOINTS, 3), np.float32)
    if pose is not None:
        coco, mp_index = np.array(POSE_TO_WHOLEBODY).T
        out[coco, :2] = pose[mp_index, :2]
        out[coco, 2] = np.clip(pose[mp_index, 2], 0.0, 1.0)
    if face is not None:
        out[list(schema.FACE), :2] = face_mesh_to_ibug68(face)
        out[list(schema.FACE), 2] = 1.0
    for hand, indices in ((left_hand, schema.LEFT_HAND), (right_hand, schema.RIGHT_HAND)):
        if hand is not None:
            target = [indices[i] for i in range(HAND_LANDMARKS)]
            out[target, :2] = hand[list(HAND_TO_COCO_HAND)]
            out[target, 2] = 1.0
    return out
