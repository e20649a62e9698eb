"""Body regions for the local (region) attention mask and the region loss.

A region is a union of *parts*; a part is a set of keypoints whose convex hull (dilated
by a margin) the region covers, so a region like ``arms`` does not swallow the chest
between the two arms. Regions may overlap (a hand in front of the face lies in both), so
a token's membership is a **set**, stored as an int bitmask: bit ``i`` set = the token
lies in region ``i`` of the region set, 0 = background (:func:`region_bits`).

Two region sets:

* :data:`ATTENTION_REGIONS` -- the paper's R = {face, hands, arms, shoulders, body}, with
  one ``hands`` region (both hands' parts): Eq. 3 lets the left hand attend the right.
* :data:`BODY_REGIONS` -- the same with ``left_hand`` and ``right_hand`` apart, for the
  region loss weights, which name each hand.
"""

from __future__ import annotations

from cospeech.pose import schema as s

BACKGROUND = 0

RegionSet = dict[str, tuple[tuple[int, ...], ...]]
"""Region name -> parts (each a tuple of keypoint indices); the order fixes the bits."""

BODY_REGIONS: RegionSet = {
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
"""Regions with the hands apart (region loss weights): name -> parts."""

ATTENTION_REGIONS: RegionSet = {
    "face": BODY_REGIONS["face"],
    "hands": BODY_REGIONS["left_hand"] + BODY_REGIONS["right_hand"],
    "arms": BODY_REGIONS["arms"],
    "shoulders": BODY_REGIONS["shoulders"],
    "body": BODY_REGIONS["body"],
}
"""The paper's R (local attention mask): name -> parts; ``hands`` = both hands."""


def region_bits(regions: RegionSet = ATTENTION_REGIONS) -> dict[str, int]:
    """``{name: bit}``: region ``i`` of ``regions`` (in order) is bit ``1 << i``."""
    return {name: 1 << i for i, name in enumerate(regions)}
