"""Speaker voices for the synthetic corpus, drawn deterministically from a numpy Generator.

The espeak-ng voice variants (files of ``espeak-ng-data/voices/!v``) used here are the
human-sounding ones whose pauses and stop closures are digitally silent; left out are the
robotic / whispering / croaking variants, those with an echo (m2, f2-f5, Alicia, ...: the
echo fills pauses, so silences and stop closures can no longer be found from the audio)
and those that clip even at reduced volume (Jacky, antonio, paul).

They are split once, for good: ``TRAIN_VARIANTS`` may appear in training clips;
``HELD_OUT_VARIANTS`` (two male, two female, one Klatt voice) never do, so an evaluation
on them measures generalisation to "an espeak voice variant not used in training".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cospeech.audio.espeak import VoiceParams
from cospeech.errors import InputError

TRAIN_VARIANTS: tuple[str, ...] = (
    # male
    "m1", "m3", "m4", "m5", "m6", "m7", "Andy", "Denis", "Gene", "Mario", "Michael", "Mike",
    "david", "edward", "gustave", "john", "quincy", "robert", "travis",
    # female
    "f1", "Andrea", "Annie", "belinda", "linda", "shelby", "steph",
    # Klatt synthesiser
    "klatt", "klatt3",
)  # fmt: skip
HELD_OUT_VARIANTS: tuple[str, ...] = ("m8", "victor", "steph2", "grandma", "klatt4")
ALL_VARIANTS: tuple[str, ...] = TRAIN_VARIANTS + HELD_OUT_VARIANTS

PITCH_BOUNDS = (30, 70)
"""espeak pitch 0-99 scales within the variant's own pitch range; 50 is its default."""
PITCH_RANGE_BOUNDS = (25, 85)
"""Intonation range (0 = monotone, 50 = default)."""
RATE_BOUNDS = (140, 200)
"""Words per minute; conversational speech is about 150-190."""
WORD_GAP_CHOICES = (0, 0, 0, 1, 2, 4)
"""Extra pause between words in 10 ms units; mostly none, sometimes a deliberate speaker."""
VOLUME_BOUNDS = (60, 80)
"""espeak volume (100 = normal); below 100 keeps the loud variants from clipping."""


def sample_voice(rng: np.random.Generator, variants: Sequence[str] = TRAIN_VARIANTS) -> VoiceParams:
    """A random en-us speaker: variant from ``variants``, pitch, intonation range, rate,
    word gap and volume uniformly within the bounds above. Same generator state -> same voice."""
    if not variants:
        raise InputError("sample_voice: no voice variants to choose from")
    return VoiceParams(
        language="en-us",
        variant=str(variants[int(rng.integers(len(variants)))]),
        pitch=int(rng.integers(PITCH_BOUNDS[0], PITCH_BOUNDS[1] + 1)),
        pitch_range=int(rng.integers(PITCH_RANGE_BOUNDS[0], PITCH_RANGE_BOUNDS[1] + 1)),
        rate=int(rng.integers(RATE_BOUNDS[0], RATE_BOUNDS[1] + 1)),
        word_gap=int(WORD_GAP_CHOICES[int(rng.integers(len(WORD_GAP_CHOICES)))]),
        volume=int(rng.integers(VOLUME_BOUNDS[0], VOLUME_BOUNDS[1] + 1)),
    )
