"""Gesture rules: beat gestures of arms, wrists and fingers aligned to speech.

1. Beat candidates: the onset of every primary-stressed vowel (the pitch accent), and the
   onset of every word that has no primary stress.
2. A candidate becomes a beat with probability ``style.frequency`` (strength-weighted),
   keeping beats at least ``min_beat_gap_s`` apart.
3. Beats closer than ``unit_gap_s`` form a gesture unit (at most ``max_unit_s`` long):
   the chosen hand(s) rise from rest into gesture space (preparation, ``prepare_s`` before
   the first beat), take the unit's hand shape, hold through the beats and retract to rest
   (``retract_s`` after the last).
4. Each beat is a stroke: the forearm swings from above to below the unit pose along a
   ``tanh`` profile centred on the onset, so the stroke is fastest exactly at the onset,
   with the wrist flicking and the fingers closing a little with it.

All deltas are angles written for the person's right arm (image left), mirrored for the
left arm; they move the reference pose's own arms (see :mod:`.rig`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cospeech.audio.phonemes import NO_WORD, STRESS_PRIMARY, VOWELS, PhonemeSegment
from cospeech.motion.rules.signals import raised_cosine_bump, smoothstep_window
from cospeech.motion.rules.style import HAND_SHAPES, GestureStyle

HANDS = ("right", "left")
STRESS_STRENGTH = 1.0  # beat strength of a stressed syllable ...
WORD_STRENGTH = 0.6  # ... and of a word onset without stress


@dataclass(frozen=True)
class GestureRules:
    """Timing (seconds) and amplitudes (radians) of gestures."""

    min_beat_gap_s: float = 0.35
    unit_gap_s: float = 1.6
    max_unit_s: float = 3.0  # a longer run of beats is split into several units
    prepare_s: float = 0.45
    hold_s: float = 0.25
    retract_s: float = 0.55
    stroke_s: float = 0.05  # tanh time constant of a stroke
    beat_half_width_s: float = 0.3
    beat_angle: float = 0.2  # forearm swing on each side of the unit pose
    wrist_beat_gain: float = 0.6
    upper_arm_beat_gain: float = 0.25
    finger_beat_curl: float = 0.15
    raise_forearm: tuple[float, float] = (0.3, 0.9)
    raise_upper_arm: tuple[float, float] = (-0.05, 0.3)  # elbow out
    wrist_extension: tuple[float, float] = (0.1, 0.5)  # hand tilts up
    foreshortening: float = 0.4  # a raised forearm points at the camera and looks shorter


@dataclass(frozen=True)
class Beat:
    """One beat: stroke centre ``time`` (s), the ``hand`` ("right", "left", "both"),
    ``strength`` (1 stressed syllable, 0.6 word onset)."""

    time: float
    hand: str
    strength: float


@dataclass(frozen=True)
class GestureUnit:
    """A gesture unit from the first to the last beat (s), with its hand(s), hand shape and
    pose (canonical right-arm radians: forearm lift, elbow out, wrist extension)."""

    start: float
    end: float
    hand: str
    shape: str
    forearm_lift: float
    elbow_out: float
    wrist_extension: float


@dataclass(frozen=True)
class GesturePlan:
    beats: tuple[Beat, ...]
    units: tuple[GestureUnit, ...]


@dataclass(frozen=True)
class ArmTracks:
    """Per-frame deltas of one arm from the reference, canonical (right-arm) radians:
    ``upper``, ``forearm``, ``hand`` ``[T]`` angle changes, ``forearm_scale`` ``[T]`` length
    factor, ``curl`` ``[T, 5]`` finger curl change (thumb..pinky)."""

    upper: np.ndarray
    forearm: np.ndarray
    hand: np.ndarray
    forearm_scale: np.ndarray
    curl: np.ndarray


def beat_candidates(segments: Sequence[PhonemeSegment]) -> tuple[np.ndarray, np.ndarray]:
    """Candidate beat times (s) and strengths: primary-stressed vowel onsets, and the onset
    of every word without a primary-stressed vowel. Sorted by time."""
    times, strengths = [], []
    words: dict[int, list[PhonemeSegment]] = {}
    for seg in segments:
        if seg.word_index != NO_WORD:
            words.setdefault(seg.word_index, []).append(seg)
    for word in words.values():
        stressed = [s for s in word if s.phone in VOWELS and s.stress == STRESS_PRIMARY]
        if stressed:
            times += [s.start for s in stressed]
            strengths += [STRESS_STRENGTH] * len(stressed)
        else:
            times.append(word[0].start)
            strengths.append(WORD_STRENGTH)
    order = np.argsort(times, kind="stable")
    return np.array(times)[order], np.array(strengths)[order]


def plan_gestures(
    segments: Sequence[PhonemeSegment],
    style: GestureStyle,
    rng: np.random.Generator,
    rules: GestureRules,
) -> GesturePlan:
    """Choose beats and group them into gesture units."""
    times, strengths = beat_candidates(segments)
    keep = rng.random(len(times)) < style.frequency * strengths
    chosen: list[tuple[float, float]] = []
    for t, s in zip(times[keep], strengths[keep], strict=True):
        if not chosen or t - chosen[-1][0] >= rules.min_beat_gap_s:
            chosen.append((float(t), float(s)))
    groups: list[list[tuple[float, float]]] = []
    for beat in chosen:
        if (
            groups
            and beat[0] - groups[-1][-1][0] < rules.unit_gap_s
            and beat[0] - groups[-1][0][0] <= rules.max_unit_s
        ):
            groups[-1].append(beat)
        else:
            groups.append([beat])
    beats, units = [], []
    for group in groups:
        if rng.random() < style.both_hands:
            hand = "both"
        else:
            hand = "right" if rng.random() < style.handedness else "left"
        unit = GestureUnit(
            start=group[0][0],
            end=group[-1][0],
            hand=hand,
            shape=str(style.hand_shapes[int(rng.integers(len(style.hand_shapes)))]),
            forearm_lift=style.amplitude * float(rng.uniform(*rules.raise_forearm)),
            elbow_out=style.amplitude * float(rng.uniform(*rules.raise_upper_arm)),
            wrist_extension=float(rng.uniform(*rules.wrist_extension)),
        )
        units.append(unit)
        beats += [Beat(time=t, hand=hand, strength=s) for t, s in group]
    return GesturePlan(beats=tuple(beats), units=tuple(units))


def arm_tracks(
    plan: GesturePlan, hand: str, times: np.ndarray, style: GestureStyle, rules: GestureRules
) -> ArmTracks:
    """Deltas over ``times`` ``[T]`` for ``hand`` ("right" or "left")."""
    T = len(times)
    # Unit poses, blended where a unit's preparation overlaps the previous one's retraction.
    total, pose = np.zeros(T), np.zeros((T, 3 + 5))
    for unit in plan.units:
        if unit.hand not in (hand, "both"):
            continue
        env = smoothstep_window(
            times, unit.start, unit.end + rules.hold_s, rules.prepare_s, rules.retract_s
        )
        total += env
        target = [unit.elbow_out, -unit.forearm_lift, -unit.wrist_extension]
        pose += env[:, None] * np.array(target + list(HAND_SHAPES[unit.shape]))
    engaged = np.minimum(total, 1.0)
    pose /= np.maximum(total, 1.0)[:, None]
    upper, forearm, wrist, curl = pose[:, 0], pose[:, 1], pose[:, 2], pose[:, 3:]
    swing = np.zeros(T)  # -1 .. 1: above the unit pose before a stroke, below after it
    for beat in plan.beats:
        if beat.hand not in (hand, "both"):
            continue
        dt = times - beat.time
        stroke = np.tanh(dt / rules.stroke_s) * raised_cosine_bump(dt, rules.beat_half_width_s)
        swing += beat.strength * stroke
    beat_angle = rules.beat_angle * style.amplitude * swing
    forearm += beat_angle
    upper += rules.upper_arm_beat_gain * beat_angle
    curl += rules.finger_beat_curl * swing[:, None]
    return ArmTracks(
        upper=upper,
        forearm=forearm,
        hand=forearm + wrist + rules.wrist_beat_gain * beat_angle,
        forearm_scale=1.0 - rules.foreshortening * engaged,
        curl=curl,
    )
