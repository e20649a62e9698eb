"""A synthetic speaker ("identity"): appearance + body geometry + voice + gesture style.

Identities are drawn from the corpus seed alone (one random stream per identity index), and
split by identity: a test (or val) identity never speaks in a training clip, and the test
identities speak with the held-out espeak voice variants.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cospeech.audio.espeak import VoiceParams
from cospeech.data.manifest import SPLITS
from cospeech.data.synth.appearance import Appearance, sample_appearance
from cospeech.data.synth.skeleton import BodyGeometry, sample_geometry
from cospeech.data.synth.voices import HELD_OUT_VARIANTS, TRAIN_VARIANTS, sample_voice
from cospeech.errors import InputError
from cospeech.motion.rules.style import GestureStyle, sample_gesture_style

IDENTITY_STREAM = 1  # SeedSequence key of identity draws (clips use another stream)
SPLIT_STREAM = 2  # SeedSequence key of the identity -> split assignment
MIN_IDENTITIES_FOR_VAL = 3  # fewer identities: no val split (train and test only)


@dataclass(frozen=True)
class Identity:
    """One synthetic speaker and the split it belongs to."""

    id: str
    split: str
    appearance: Appearance
    geometry: BodyGeometry
    voice: VoiceParams
    style: GestureStyle

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "split": self.split,
            "appearance": self.appearance.to_dict(),
            "geometry": self.geometry.to_dict(),
            "voice": asdict(self.voice),
            "style": self.style.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Identity:
        try:
            return cls(
                id=str(data["id"]),
                split=str(data["split"]),
                appearance=Appearance.from_dict(data["appearance"]),
                geometry=BodyGeometry.from_dict(data["geometry"]),
                voice=VoiceParams(**data["voice"]),
                style=GestureStyle.from_dict(data["style"]),
            )
        except (KeyError, TypeError) as exc:
            raise InputError(f"identity: malformed record ({exc})") from None


def identity_id(index: int) -> str:
    return f"id{index:04d}"


def split_counts(count: int, val_fraction: float, test_fraction: float) -> dict[str, int]:
    """How many identities each split gets: at least one test identity once there are two,
    at least one val identity once there are :data:`MIN_IDENTITIES_FOR_VAL`, and at least
    one training identity always."""
    if count < 1:
        raise InputError(f"identities: need at least one, got {count}")
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise InputError("identities: val and test fractions must be in [0, 1) and sum below 1")
    test = max(1, round(count * test_fraction)) if count >= 2 and test_fraction > 0 else 0
    val = 0
    if count >= MIN_IDENTITIES_FOR_VAL and val_fraction > 0:
        val = max(1, round(count * val_fraction))
    while test + val > count - 1:
        if val > 0:
            val -= 1
        else:
            test -= 1
    return {"train": count - val - test, "val": val, "test": test}


def make_identities(
    seed: int, count: int, val_fraction: float = 0.1, test_fraction: float = 0.2
) -> list[Identity]:
    """``count`` identities, deterministic for ``seed``; splits assigned by a seeded
    shuffle of the identity indices (see :func:`split_counts`)."""
    counts = split_counts(count, val_fraction, test_fraction)
    order = np.random.default_rng([seed, SPLIT_STREAM]).permutation(count)
    split_of = {}
    start = 0
    for split in SPLITS:
        for index in order[start : start + counts[split]]:
            split_of[int(index)] = split
        start += counts[split]
    identities = []
    for index in range(count):
        rng = np.random.default_rng([seed, IDENTITY_STREAM, index])
        split = split_of[index]
        variants = HELD_OUT_VARIANTS if split == "test" else TRAIN_VARIANTS
        identities.append(
            Identity(
                id=identity_id(index),
                split=split,
                appearance=sample_appearance(rng),
                geometry=sample_geometry(rng),
                voice=sample_voice(rng, variants),
                style=sample_gesture_style(rng),
            )
        )
    return identities
