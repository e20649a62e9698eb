"""A speaker's gesture style: how big, how often, with which hand and hand shapes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from cospeech.errors import InputError

# Finger curl change from the reference (relaxed) hand, per finger (thumb, index, middle,
# ring, pinky); positive closes the finger, negative straightens it.
HAND_SHAPES: dict[str, tuple[float, float, float, float, float]] = {
    "relaxed": (0.0, 0.0, 0.0, 0.0, 0.0),
    "open": (-0.25, -0.25, -0.3, -0.3, -0.3),
    "point": (0.45, -0.25, 0.6, 0.6, 0.55),
    "pinch": (0.45, 0.5, -0.1, -0.1, -0.1),
    "fist": (0.5, 0.7, 0.7, 0.65, 0.6),
    "cupped": (0.15, 0.2, 0.2, 0.2, 0.2),
}


@dataclass(frozen=True)
class GestureStyle:
    """Per-speaker gesture and movement style.

    amplitude: scales gesture raise and beat angles (1 = typical).
    handedness: probability that a one-handed gesture unit uses the right hand.
    both_hands: probability that a gesture unit uses both hands.
    frequency: probability that a beat candidate (stressed syllable / word onset) gets a beat.
    hand_shapes: the hand shapes (keys of :data:`HAND_SHAPES`) this speaker gestures with.
    head_motion: scales nods, tilts and head drift.
    sway: scales the idle torso sway and breathing.
    """

    amplitude: float = 1.0
    handedness: float = 0.7
    both_hands: float = 0.25
    frequency: float = 0.7
    hand_shapes: tuple[str, ...] = ("open", "relaxed")
    head_motion: float = 1.0
    sway: float = 1.0

    def __post_init__(self) -> None:
        unknown = [s for s in self.hand_shapes if s not in HAND_SHAPES]
        if unknown or not self.hand_shapes:
            raise InputError(
                f"gesture style: hand shapes must be some of {sorted(HAND_SHAPES)}, "
                f"got {list(self.hand_shapes)}"
            )
        for name in ("handedness", "both_hands", "frequency"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"gesture style: {name} must lie in [0, 1]")
        for name in ("amplitude", "head_motion", "sway"):
            if getattr(self, name) < 0:
                raise InputError(f"gesture style: {name} must be >= 0")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["hand_shapes"] = list(self.hand_shapes)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> GestureStyle:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise InputError(f"gesture style: unknown field(s) {sorted(unknown)}")
        values = dict(data)
        if "hand_shapes" in values:
            values["hand_shapes"] = tuple(values["hand_shapes"])
        return cls(**values)


# Sampling ranges (low, high) of the numeric style fields.
STYLE_RANGES: dict[str, tuple[float, float]] = {
    "amplitude": (0.6, 1.4),
    "handedness": (0.2, 0.9),
    "both_hands": (0.0, 0.45),
    "frequency": (0.35, 0.9),
    "head_motion": (0.5, 1.5),
    "sway": (0.5, 1.5),
}
SHAPES_PER_SPEAKER = (1, 3)  # how many preferred hand shapes a speaker has (inclusive)


def sample_gesture_style(rng: np.random.Generator) -> GestureStyle:
    """Draw a style: numeric fields uniform in :data:`STYLE_RANGES`, 1-3 hand shapes."""
    values = {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in STYLE_RANGES.items()}
    count = int(rng.integers(SHAPES_PER_SPEAKER[0], SHAPES_PER_SPEAKER[1] + 1))
    names = sorted(HAND_SHAPES)
    shapes = tuple(names[i] for i in sorted(rng.choice(len(names), size=count, replace=False)))
    return GestureStyle(hand_shapes=shapes, **values)
