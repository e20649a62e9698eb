"""Head rules: nods with energy and pitch accents, tilts with pitch, a slow drift.

The head is moved as a rigid 3D body seen orthographically: every head point gets a depth
from a simple face model (a cylinder with a nose and lips in front, the ears behind), is
rotated about a pivot in the neck behind the face, and projected back to the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cospeech.motion.rules.prosody import Prosody
from cospeech.motion.rules.rig import FACE_POINTS, ReferenceRig
from cospeech.motion.rules.signals import gaussian_smooth, raised_cosine_bump, smooth_noise
from cospeech.pose import schema

# Body keypoints that belong to the head, moved with it.
HEAD_BODY_POINTS = (
    schema.NOSE,
    schema.LEFT_EYE,
    schema.RIGHT_EYE,
    schema.LEFT_EAR,
    schema.RIGHT_EAR,
)
# Depth (towards the camera, face widths) added to the face cylinder for some features.
_FEATURE_DEPTH = {
    **{27 + i: d for i, d in enumerate((0.04, 0.08, 0.12, 0.16))},  # nose bridge
    **dict.fromkeys(range(31, 36), 0.08),  # nose bottom
    **dict.fromkeys(range(48, 68), 0.04),  # lips
    **dict.fromkeys(range(36, 48), -0.03),  # eyes sit in their sockets
}
EAR_DEPTH = -0.15
PIVOT_BELOW_EYES = 0.55  # face widths, the neck pivot below the eye line ...
PIVOT_BEHIND_FACE = 0.5  # ... and behind the face


@dataclass(frozen=True)
class HeadRules:
    """Head angles in radians (scaled by the style's ``head_motion``)."""

    nod_per_energy: float = 0.08  # chin down per unit of smoothed energy above its mean
    accent_nod: float = 0.06  # a quick nod at every beat
    accent_delay_s: float = 0.05
    accent_half_width_s: float = 0.18
    tilt_per_semitone: float = 0.01  # roll per semitone of pitch above the median
    max_tilt: float = 0.12
    smooth_s: float = 0.2  # smoothing of the prosody envelopes
    yaw_drift: float = 0.08
    roll_drift: float = 0.03
    pitch_drift: float = 0.03
    drift_hz: tuple[float, float] = (0.05, 0.3)


@dataclass(frozen=True)
class HeadAngles:
    """Per-frame head rotation ``[T]`` each: nod (chin down +), yaw (towards the person's
    left +), roll (image rotation +)."""

    nod: np.ndarray
    yaw: np.ndarray
    roll: np.ndarray


def head_angles(
    times: np.ndarray,
    prosody: Prosody,
    beat_times: np.ndarray,
    gain: float,
    rng: np.random.Generator,
    rules: HeadRules,
) -> HeadAngles:
    """Nod, yaw and roll over ``times`` ``[T]``."""
    fps = 1.0 / (times[1] - times[0]) if len(times) > 1 else 1.0
    energy = gaussian_smooth(prosody.energy, rules.smooth_s * fps)
    pitch = gaussian_smooth(prosody.pitch, rules.smooth_s * fps)
    accents = np.zeros(len(times))
    for t in beat_times:
        accents += raised_cosine_bump(times - t - rules.accent_delay_s, rules.accent_half_width_s)
    nod = (
        rules.nod_per_energy * (energy - energy.mean())
        + rules.accent_nod * accents
        + rules.pitch_drift * smooth_noise(rng, times, *rules.drift_hz)
    )
    roll = np.clip(rules.tilt_per_semitone * pitch, -rules.max_tilt, rules.max_tilt)
    roll = roll + rules.roll_drift * smooth_noise(rng, times, *rules.drift_hz)
    yaw = rules.yaw_drift * smooth_noise(rng, times, *rules.drift_hz)
    return HeadAngles(nod=gain * nod, yaw=gain * yaw, roll=gain * roll)


def _head_local(rig: ReferenceRig) -> np.ndarray:
    """Head points (68 face, then :data:`HEAD_BODY_POINTS`) in 3D face coordinates
    ``[73, 3]`` (face widths; x to the person's left, y down, z towards the camera),
    relative to the neck pivot."""
    face = rig.face_local
    body = rig.points[list(HEAD_BODY_POINTS)] - rig.face_origin
    body = np.stack([body @ rig.face_x, body @ rig.face_y], axis=-1) / rig.face_width
    xy = np.concatenate([face, body])
    z = 0.5 * np.sqrt(np.clip(1.0 - (2.0 * xy[:, 0]) ** 2, 0.0, None))
    for i, depth in _FEATURE_DEPTH.items():
        z[i] += depth
    z[FACE_POINTS + 0] = z[30]  # body nose = nose tip
    z[FACE_POINTS + 1] = z[42:48].mean()
    z[FACE_POINTS + 2] = z[36:42].mean()
    z[FACE_POINTS + 3 :] = EAR_DEPTH
    local = np.concatenate([xy, z[:, None]], axis=-1)
    return local - [0.0, PIVOT_BELOW_EYES, -PIVOT_BEHIND_FACE]


def head_points(rig: ReferenceRig, face_offsets: np.ndarray, angles: HeadAngles) -> np.ndarray:
    """Image positions ``[T, 73, 2]`` of the 68 face points (deformed by ``face_offsets``
    ``[T, 68, 2]`` in face widths) and the 5 head body points, after rotating the head."""
    local = np.broadcast_to(_head_local(rig), (len(angles.nod), FACE_POINTS + 5, 3)).copy()
    local[:, :FACE_POINTS, :2] += face_offsets
    x, y, z = local[..., 0], local[..., 1], local[..., 2]
    cy, sy = np.cos(angles.yaw)[:, None], np.sin(angles.yaw)[:, None]
    x, z = x * cy + z * sy, -x * sy + z * cy
    cp, sp = np.cos(angles.nod)[:, None], np.sin(angles.nod)[:, None]
    y = y * cp + z * sp
    cr, sr = np.cos(angles.roll)[:, None], np.sin(angles.roll)[:, None]
    x, y = x * cr - y * sr, x * sr + y * cr
    pivot = rig.face_origin + rig.to_image(np.array([0.0, PIVOT_BELOW_EYES]))
    return pivot + rig.to_image(np.stack([x, y], axis=-1))
