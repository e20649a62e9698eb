"""The rule-based audio -> motion baseline: every rule module combined into a PoseSequence.

Order per frame: the face is shaped (mouth, blinks, brows) in the face frame, the head is
rotated about the neck, the upper body is swayed and lifted by breathing, then the arms are
posed from the moved shoulders with the gesture angles and the hands are re-posed at the
new wrists. Motion is relative to the reference pose, so any reference works.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from cospeech.audio.phonemes import PhonemeSegment, validate_segments
from cospeech.errors import InputError
from cospeech.motion.rules.face import (
    BlinkRules,
    BrowRules,
    MouthRules,
    articulation_tracks,
    blink_offsets,
    blink_times,
    brow_offsets,
    mouth_offsets,
)
from cospeech.motion.rules.gestures import (
    HANDS,
    GesturePlan,
    GestureRules,
    arm_tracks,
    plan_gestures,
)
from cospeech.motion.rules.hands import pose_hand
from cospeech.motion.rules.head import HEAD_BODY_POINTS, HeadRules, head_angles, head_points
from cospeech.motion.rules.idle import IdleRules, TorsoMotion, torso_motion
from cospeech.motion.rules.prosody import Prosody, prosody_from_phonemes
from cospeech.motion.rules.rig import FACE_POINTS, ReferenceRig, measure_reference
from cospeech.motion.rules.signals import direction, frame_times, rotate
from cospeech.motion.rules.style import GestureStyle
from cospeech.pose import schema
from cospeech.pose.sequence import PoseSequence

# Points that stay with the hips: hips, legs, feet. Everything else sways with the torso.
LOWER_BODY = (schema.LEFT_HIP, schema.RIGHT_HIP, 13, 14, 15, 16, *schema.FEET)


@dataclass(frozen=True)
class RuleConfig:
    """All rule parameters (see each module for their meaning)."""

    mouth: MouthRules = field(default_factory=MouthRules)
    blink: BlinkRules = field(default_factory=BlinkRules)
    brow: BrowRules = field(default_factory=BrowRules)
    head: HeadRules = field(default_factory=HeadRules)
    gesture: GestureRules = field(default_factory=GestureRules)
    idle: IdleRules = field(default_factory=IdleRules)


@dataclass(frozen=True)
class RuleMotion:
    """The generated ``pose`` and the events behind it: ``gestures`` (beats and units) and
    ``blinks`` (blink centre times, s)."""

    pose: PoseSequence
    gestures: GesturePlan
    blinks: np.ndarray


def _reference_keypoints(
    reference: PoseSequence | np.ndarray, width: int | None, height: int | None
) -> tuple[np.ndarray, int, int]:
    if isinstance(reference, PoseSequence):
        return reference.keypoints[0], reference.width, reference.height
    if width is None or height is None:
        raise InputError("motion rules: a reference array needs width and height")
    return np.asarray(reference, dtype=np.float32), int(width), int(height)


def _torso_transform(
    rig: ReferenceRig, points: np.ndarray, torso: TorsoMotion, moved: np.ndarray
) -> np.ndarray:
    """Apply sway and breathing to ``points`` ``[T, P, 2]`` of the upper body."""
    hips = rig.points[[schema.LEFT_HIP, schema.RIGHT_HIP]].mean(axis=0)
    out = hips + rotate(points - hips, torso.angle[:, None])
    out[..., 0] += (torso.shift_x * rig.shoulder_width)[:, None]
    out[..., 1] -= (torso.rise * rig.shoulder_width)[:, None]
    return np.where(moved[None, :, None], out, points)


def generate_motion(
    phonemes: Sequence[PhonemeSegment],
    duration: float,
    fps: float,
    reference: PoseSequence | np.ndarray,
    style: GestureStyle,
    rng: np.random.Generator,
    prosody: Prosody | None = None,
    width: int | None = None,
    height: int | None = None,
    config: RuleConfig | None = None,
) -> RuleMotion:
    """Rule-based motion for speech with the given phoneme timings.

    ``reference``: a one-frame :class:`PoseSequence` or a ``[133, 3]`` array (then
    ``width`` and ``height`` are required). ``prosody``: per-frame envelopes of the audio
    (:func:`~cospeech.motion.rules.prosody.prosody_from_audio`); estimated from the phonemes
    when omitted. Word onsets come from the segments' ``word_index``. Returns ``T =
    round(duration * fps)`` frames; frame ``i`` shows time ``(i + 0.5) / fps``.
    """
    config = config or RuleConfig()
    validate_segments(phonemes)
    num_frames = round(duration * fps)
    if num_frames < 1 or fps <= 0:
        raise InputError(f"motion rules: duration {duration} s at {fps} fps gives no frames")
    ref_kp, width, height = _reference_keypoints(reference, width, height)
    rig = measure_reference(ref_kp)
    if prosody is None:
        prosody = prosody_from_phonemes(phonemes, fps, num_frames)
    elif len(prosody) != num_frames:
        raise InputError(f"motion rules: prosody has {len(prosody)} frames, expected {num_frames}")
    times = frame_times(num_frames, fps)
    # Independent random streams per rule, so changing one rule leaves the others unchanged.
    blink_rng, gesture_rng, head_rng, idle_rng = rng.spawn(4)

    # Face and head.
    articulation = articulation_tracks(phonemes, times, config.mouth)
    blinks = blink_times(num_frames / fps, blink_rng, config.blink)
    face_offsets = (
        mouth_offsets(rig, articulation, prosody.energy, config.mouth)
        + blink_offsets(rig, times, blinks, config.blink)
        + brow_offsets(prosody.pitch, config.brow)
    )
    plan = plan_gestures(phonemes, style, gesture_rng, config.gesture)
    beat_times = np.array([b.time for b in plan.beats])
    angles = head_angles(times, prosody, beat_times, style.head_motion, head_rng, config.head)
    head = head_points(rig, face_offsets, angles)

    points = np.broadcast_to(rig.points, (num_frames, schema.NUM_KEYPOINTS, 2)).copy()
    points[:, schema.FACE_OFFSET : schema.FACE_OFFSET + FACE_POINTS] = head[:, :FACE_POINTS]
    points[:, list(HEAD_BODY_POINTS)] = head[:, FACE_POINTS:]

    # Torso: sway and breathing move everything above the hips.
    torso = torso_motion(times, style.sway, idle_rng, config.idle)
    moved = np.ones(schema.NUM_KEYPOINTS, dtype=bool)
    moved[list(LOWER_BODY)] = False
    points = _torso_transform(rig, points, torso, moved)

    # Arms and hands from the moved shoulders.
    for arm, hand in zip(rig.arms, HANDS, strict=True):
        tracks = arm_tracks(plan, hand, times, style, config.gesture)
        shoulder = points[:, arm.shoulder]
        upper_angle = arm.upper_angle + torso.angle + arm.side * tracks.upper
        elbow = shoulder + arm.upper_length * direction(upper_angle)
        fore_angle = arm.forearm_angle + torso.angle + arm.side * tracks.forearm
        fore_length = arm.forearm_length * tracks.forearm_scale
        wrist = elbow + fore_length[:, None] * direction(fore_angle)
        points[:, arm.elbow], points[:, arm.wrist] = elbow, wrist
        hand_rotation = torso.angle + arm.side * tracks.hand
        points[:, list(arm.hand)] = pose_hand(
            rig.points[list(arm.hand)], arm, wrist, hand_rotation, tracks.curl
        )

    confidence = np.broadcast_to(rig.confidence, (num_frames, schema.NUM_KEYPOINTS))
    keypoints = np.concatenate([points, confidence[..., None]], axis=-1).astype(np.float32)
    pose = PoseSequence(keypoints, fps, width, height)
    return RuleMotion(pose=pose, gestures=plan, blinks=blinks)
