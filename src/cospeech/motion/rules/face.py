"""Face rules: phonemes -> visemes -> mouth shapes with coarticulation, blinks, brow raises.

Coarticulation follows a dominance model (Cohen & Massaro): every phoneme segment pulls the
articulators towards its viseme's :class:`~cospeech.audio.phonemes.ArticulationTarget` with
a dominance that is flat over the segment, shifted ``anticipation_s`` earlier (the mouth
moves before the sound), and falls off in Gaussian tails (``lead_s`` before, ``lag_s``
after). Each frame's articulation is the dominance-weighted mean of all targets. Bilabials
(P, B, M) and silence also close the lips through a separate closure track (the strongest
closure kernel, never averaged away), so the lips shut fully at their centre and stay shut
through pauses, while vowels blend smoothly into each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cospeech.audio.phonemes import (
    SILENCE,
    VISEME_TARGETS,
    VOWELS,
    PhonemeSegment,
    viseme_of,
)
from cospeech.motion.rules.rig import ReferenceRig
from cospeech.motion.rules.signals import raised_cosine_bump

# iBUG face indices (0-67) of the mouth and eyelid parts the rules move.
LOWER_OUTER = (55, 56, 57, 58, 59)
LOWER_OUTER_WEIGHT = (0.7, 0.95, 1.0, 0.95, 0.7)
UPPER_OUTER = (49, 50, 51, 52, 53)
LOWER_INNER = (65, 66, 67)
LOWER_INNER_WEIGHT = (0.85, 1.0, 0.85)
UPPER_INNER = (61, 62, 63)
MOUTH_POINTS = tuple(range(48, 68))
JAW_POINTS = tuple(range(17))
UPPER_LIDS = ((37, 41), (38, 40), (43, 47), (44, 46))  # (upper lid point, lower lid below it)
BROWS = tuple(range(17, 27))


@dataclass(frozen=True)
class MouthRules:
    """Coarticulation and mouth geometry. Lengths in face widths."""

    anticipation_s: float = 0.03
    lead_s: float = 0.06
    lag_s: float = 0.04
    closure_lead_s: float = 0.025  # lips close this early before P, B, M and silence ...
    closure_lag_s: float = 0.02  # ... and part this quickly after (closure: no shift)
    vowel_dominance: float = 1.0
    consonant_dominance: float = 0.5
    rest_dominance: float = 1e-3  # the rest shape, so frames far from any segment are defined
    max_gap: float = 0.16  # inner-lip gap at jaw_open = 1
    upper_lip_lift: float = 0.08  # the upper lip rises by this fraction of the gap
    jaw_drop: float = 1.1  # chin drop per unit of lip gap
    width_gain: float = 0.3  # relative mouth-width change per unit of lip_width above rest
    rest_width: float = 0.5
    protrusion_narrowing: float = 0.15  # relative narrowing at full protrusion
    protrusion_pout: float = 0.02  # outer lips thicken at full protrusion
    energy_gain: float = 0.4  # louder frames open wider: scale 1 + gain * (energy - 0.5)


@dataclass(frozen=True)
class BlinkRules:
    """Blinks at random intervals; ``duration_s`` from lid leaving to lid back."""

    interval_s: tuple[float, float] = (2.0, 6.0)
    duration_s: float = 0.15
    lower_lid_share: float = 0.15  # the lower lid covers this share of the closing


@dataclass(frozen=True)
class BrowRules:
    """Brows rise with pitch above the speaker's median (face widths per semitone)."""

    raise_per_semitone: float = 0.006
    max_raise: float = 0.04


@dataclass(frozen=True)
class Articulation:
    """Per-frame mouth articulation, each ``[T]`` in [0, 1]."""

    jaw_open: np.ndarray
    lip_width: np.ndarray
    lip_protrusion: np.ndarray
    lips_closed: np.ndarray


def _dominance(segment: PhonemeSegment, rules: MouthRules) -> float:
    return rules.vowel_dominance if segment.phone in VOWELS else rules.consonant_dominance


def _kernels(
    times: np.ndarray, start: np.ndarray, end: np.ndarray, lead_s: float, lag_s: float
) -> np.ndarray:
    """``[T, K]``: 1 on each ``[start, end]``, Gaussian tails of ``lead_s`` / ``lag_s``."""
    t = times[:, None]
    before = np.clip(start[None, :] - t, 0.0, None) / lead_s
    after = np.clip(t - end[None, :], 0.0, None) / lag_s
    return np.exp(-0.5 * (before**2 + after**2))


def articulation_tracks(
    segments: Sequence[PhonemeSegment], times: np.ndarray, rules: MouthRules
) -> Articulation:
    """Blend viseme targets at ``times`` ``[T]`` (seconds) with the dominance model.

    Jaw opening, width and protrusion are the dominance-weighted mean of the targets;
    ``lips_closed`` is the strongest closure kernel of any closed viseme (P, B, M, silence),
    flat over the segment itself (a stop's segment is its closure) with short tails, so a
    closure is never averaged away by its neighbours.
    """
    rest = VISEME_TARGETS[viseme_of(SILENCE)]
    targets = [rest] + [VISEME_TARGETS[viseme_of(seg.phone)] for seg in segments]
    alpha = np.array([rules.rest_dominance] + [_dominance(seg, rules) for seg in segments])
    shift = rules.anticipation_s
    start = np.array([-np.inf] + [seg.start - shift for seg in segments])
    end = np.array([np.inf] + [seg.end - shift for seg in segments])
    shape = np.array([[t.jaw_open, t.lip_width, t.lip_protrusion] for t in targets])  # [K, 3]
    weight = alpha * _kernels(times, start, end, rules.lead_s, rules.lag_s)  # [T, K]
    mix = weight @ shape / weight.sum(axis=1, keepdims=True)
    closed = np.array([float(t.lips_closed) for t in targets])
    closure = _kernels(
        times, start[1:] + shift, end[1:] + shift, rules.closure_lead_s, rules.closure_lag_s
    )
    lips_closed = (closure * closed[1:]).max(axis=1, initial=0.0)
    return Articulation(mix[:, 0], mix[:, 1], mix[:, 2], lips_closed)


def mouth_offsets(
    rig: ReferenceRig, art: Articulation, energy: np.ndarray, rules: MouthRules
) -> np.ndarray:
    """Face-frame offsets ``[T, 68, 2]`` (face widths) that shape the mouth and jaw."""
    face = rig.face_local
    T = len(art.jaw_open)
    out = np.zeros((T, 68, 2))
    loudness = np.clip(1.0 + rules.energy_gain * (energy - 0.5), 0.0, None)
    gap = rules.max_gap * np.clip(art.jaw_open * loudness, 0.0, 1.0) * (1.0 - art.lips_closed)
    out[:, list(LOWER_INNER), 1] += gap[:, None] * np.array(LOWER_INNER_WEIGHT)
    out[:, list(LOWER_OUTER), 1] += gap[:, None] * np.array(LOWER_OUTER_WEIGHT)
    out[:, list(UPPER_INNER) + list(UPPER_OUTER), 1] -= rules.upper_lip_lift * gap[:, None]
    # The jaw follows the lower lip, most at the chin, not at all at the ears.
    jaw_weight = np.sin(np.linspace(0.0, np.pi, 17)) ** 2
    out[:, list(JAW_POINTS), 1] += rules.jaw_drop * gap[:, None] * jaw_weight
    # Width and rounding scale the mouth about its centre along the face's x axis.
    mouth = face[list(MOUTH_POINTS)]
    centre_x = mouth[:, 0].mean()
    scale = (
        rules.width_gain * (art.lip_width - rules.rest_width)
        - rules.protrusion_narrowing * art.lip_protrusion
    )
    out[:, list(MOUTH_POINTS), 0] += scale[:, None] * (mouth[:, 0] - centre_x)
    pout = rules.protrusion_pout * art.lip_protrusion[:, None]
    out[:, list(UPPER_OUTER), 1] -= pout
    out[:, list(LOWER_OUTER), 1] += pout
    return out


def blink_times(duration: float, rng: np.random.Generator, rules: BlinkRules) -> np.ndarray:
    """Centres (seconds) of blinks separated by random intervals in ``rules.interval_s``."""
    times = []
    t = rng.uniform(0.3 * rules.interval_s[0], rules.interval_s[1])
    while t < duration:
        times.append(t)
        t += rng.uniform(*rules.interval_s)
    return np.array(times)


def blink_offsets(
    rig: ReferenceRig, times: np.ndarray, blinks: np.ndarray, rules: BlinkRules
) -> np.ndarray:
    """Face-frame offsets ``[T, 68, 2]`` closing the eyelids at each blink (lids meet at the
    blink centre)."""
    closure = np.zeros(len(times))
    for centre in blinks:
        closure = np.maximum(closure, raised_cosine_bump(times - centre, rules.duration_s / 2))
    face = rig.face_local
    out = np.zeros((len(times), 68, 2))
    for upper, lower in UPPER_LIDS:
        gap = face[lower] - face[upper]
        out[:, upper] += closure[:, None] * (1 - rules.lower_lid_share) * gap
        out[:, lower] -= closure[:, None] * rules.lower_lid_share * gap
    return out


def brow_offsets(pitch: np.ndarray, rules: BrowRules) -> np.ndarray:
    """Face-frame offsets ``[T, 68, 2]`` raising the brows with pitch (semitones)."""
    lift = np.clip(pitch * rules.raise_per_semitone, 0.0, rules.max_raise)
    out = np.zeros((len(pitch), 68, 2))
    out[:, list(BROWS), 1] -= lift[:, None]
    return out
