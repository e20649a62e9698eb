"""Body regions for the local (region) attention mask and the region loss.

The paper's R = {face, hands, arms, body, shoulders}, with the two hands split since they
move independently. Each region is a union of *parts*; a part is a set of keypoints whose
convex hull (dilated by a margin) the region covers, so a region like ``arms`` does not
swallow the chest between the two arms. Label 0 is background; region ``i`` in
:data:`REGION_NAMES` has label ``i + 1``.

Overlaps resolve by :data:`REGION_PRIORITY`: the smaller, more detailed region wins
(hands over face over arms over shoulders over body).
"""

from __future__ import annotations

from cospeech.pose import schema as s

REGION_NAMES = ("face", "left_hand", "right_hand", "arms", "shoulders", "body")
BACKGROUND = 0
REGION_LABELS = {name: i + 1 for i, name in enumerate(REGION_NAMES)}

REGION_PARTS: dict[str, tuple[tuple[int, ...], ...]] = {
    "face": (s.FACE + (s.NOSE, s.LEFT_EYE, s.RIGHT_EYE, s.LEFT_EAR, s.RIGHT_EAR),),
    "left_hand": (s.LEFT_HAND,),
    "right_hand": (s.RIGHT_HAND,),
    "arms": (
        (s.LEFT_SHOULDER, s.LEFT_ELBOW),
        (s.LEFT_ELBOW, s.LEFT_WRIST),
        (s.RIGHT_SHOULDER, s.RIGHT_ELBOW),
        (s.RIGHT_ELBOW, s.RIGHT_WRIST),
    ),
    "shoulders": ((s.LEFT_SHOULDER, s.RIGHT_SHOULDER),),
    "body": ((s.LEFT_SHOULDER, s.RIGHT_SHOULDER, s.RIGHT_HIP, s.LEFT_HIP),),
}

# Highest priority first: where regions overlap, the first one listed takes the token.
REGION_PRIORITY = ("left_hand", "right_hand", "face", "arms", "shoulders", "body")

REGION_KEYPOINTS: dict[str, tuple[int, ...]] = {
    name: tuple(sorted({i for part in parts for i in part})) for name, parts in REGION_PARTS.items()
}
