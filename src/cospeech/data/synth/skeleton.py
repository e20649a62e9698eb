"""The synthetic speaker's body: proportions (:class:`BodyGeometry`) and its neutral pose.

Every length in :class:`BodyGeometry` is a fraction of the frame's shorter side ("unit"),
except the face features, which are fractions of the face width (jaw point 0 to 16). The
neutral pose is a frontal upper-body speaker in the COCO-WholeBody-133 layout
(:mod:`cospeech.pose.schema`): head in the upper part, shoulders at
:data:`SHOULDER_HEIGHT` of the frame, hips near the bottom edge, arms hanging with bent
elbows and the hands resting in front of the lower torso, a closed mouth, relaxed fingers.
"Left" is the person's left, which is the image right (+x). Image y points down.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from cospeech.errors import InputError
from cospeech.pose import schema

SHOULDER_HEIGHT = 0.45  # shoulder line, fraction of the frame height
UPPER_ARM_REST_ANGLE = 0.2  # rad, upper arm leaning outwards from the vertical
FOREARM_REST_ANGLE = 0.6  # rad below the horizontal, forearm pointing inwards
HAND_REST_ANGLE = 1.2  # rad below the horizontal, hand pointing inwards and down
EAR_HEIGHT = 0.08  # ears below the eye line, in face widths

# Relaxed hand: curl of (thumb, index, middle, ring, pinky) in [0, 1], spread, roll.
RELAXED_CURL = (0.2, 0.15, 0.2, 0.25, 0.3)
RELAXED_SPREAD = 0.3
RELAXED_ROLL = 0.6  # rad: 0 = palm (or back) facing the camera, pi/2 = hand seen edge-on

# Hand model, in fractions of the hand size (wrist to the straight middle fingertip).
# Knuckle (MCP) position per finger (index..pinky): distance along the hand axis and
# lateral offset towards the thumb side.
_KNUCKLE_ALONG = np.array([0.44, 0.45, 0.43, 0.39])
_KNUCKLE_SIDE = np.array([0.10, 0.0, -0.08, -0.15])
# Phalanx lengths (proximal, middle, distal) per finger (index..pinky).
_PHALANX = np.array(
    [[0.22, 0.14, 0.10], [0.25, 0.17, 0.13], [0.23, 0.15, 0.12], [0.17, 0.11, 0.10]]
)
_FINGER_FAN = np.array([0.18, 0.0, -0.15, -0.32])  # rad per unit of spread
_FINGER_FLEX = np.array([1.1, 1.6, 1.0])  # rad of flexion at MCP, PIP, DIP when curl = 1
# Thumb: base (CMC) point and three segments fanning out towards the thumb side.
_THUMB_BASE = np.array([0.10, 0.10])  # (along, side)
_THUMB_SEGMENTS = np.array([0.17, 0.14, 0.11])
_THUMB_ANGLE = 0.75  # rad from the hand axis towards the thumb side when open
_THUMB_FLEX = np.array([0.5, 0.6, 0.5])  # rad towards the palm per joint when curl = 1


@dataclass(frozen=True)
class BodyGeometry:
    """Body and face proportions of one synthetic speaker.

    Body lengths are fractions of the frame's shorter side; face features (``eye_*``,
    ``brow_height``, ``nose_*``, ``mouth_*``, ``lip_*``, ``chin_drop``) are fractions of
    ``face_width``. ``jaw_square`` in [0, 1] goes from a round to a square jaw line;
    ``chin_width`` widens the chin.
    """

    face_width: float = 0.205
    chin_drop: float = 0.80  # eye line to chin
    jaw_square: float = 0.5
    chin_width: float = 0.35
    eye_spacing: float = 0.44  # centre to centre
    eye_width: float = 0.19
    eye_opening: float = 0.065
    brow_height: float = 0.13
    nose_length: float = 0.36
    nose_width: float = 0.25
    mouth_height: float = 0.58  # eye line to the lip line
    mouth_width: float = 0.40
    lip_upper: float = 0.045
    lip_lower: float = 0.06
    neck_length: float = 0.045
    shoulder_width: float = 0.41
    hip_width: float = 0.285
    torso_length: float = 0.45
    upper_arm: float = 0.235
    forearm: float = 0.205
    hand_size: float = 0.15

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> BodyGeometry:
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise InputError(f"body geometry: unknown field(s) {sorted(unknown)}")
        return cls(**{k: float(v) for k, v in data.items()})


# Sampling range (low, high) of every geometry field.
GEOMETRY_RANGES: dict[str, tuple[float, float]] = {
    "face_width": (0.19, 0.22),
    "chin_drop": (0.74, 0.86),
    "jaw_square": (0.0, 1.0),
    "chin_width": (0.2, 0.5),
    "eye_spacing": (0.40, 0.48),
    "eye_width": (0.17, 0.21),
    "eye_opening": (0.055, 0.075),
    "brow_height": (0.11, 0.15),
    "nose_length": (0.32, 0.40),
    "nose_width": (0.22, 0.28),
    "mouth_height": (0.55, 0.61),
    "mouth_width": (0.36, 0.46),
    "lip_upper": (0.035, 0.055),
    "lip_lower": (0.045, 0.07),
    "neck_length": (0.035, 0.055),
    "shoulder_width": (0.38, 0.44),
    "hip_width": (0.26, 0.31),
    "torso_length": (0.42, 0.46),
    "upper_arm": (0.22, 0.25),
    "forearm": (0.19, 0.22),
    "hand_size": (0.14, 0.16),
}


def sample_geometry(rng: np.random.Generator) -> BodyGeometry:
    """Draw every field uniformly from :data:`GEOMETRY_RANGES` (deterministic for an rng)."""
    return BodyGeometry(
        **{k: float(rng.uniform(lo, hi)) for k, (lo, hi) in GEOMETRY_RANGES.items()}
    )


def _rotate(vectors: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotate ``[..., 2]`` vectors by ``angle`` (broadcast over ``...``) in image axes."""
    c, s = np.cos(angle), np.sin(angle)
    x, y = vectors[..., 0], vectors[..., 1]
    return np.stack([c * x - s * y, s * x + c * y], axis=-1)


def hand_points(
    wrist: np.ndarray,
    angle: np.ndarray | float,
    size: np.ndarray | float,
    curl: np.ndarray,
    spread: np.ndarray | float,
    roll: np.ndarray | float,
    thumb_side: float,
) -> np.ndarray:
    """21 hand keypoints (wrist, thumb, index, middle, ring, pinky; base to tip).

    ``wrist`` ``[..., 2]`` pixels; ``angle`` ``[...]`` the direction of the hand axis (wrist
    to middle knuckle) in radians, image axes; ``size`` ``[...]`` wrist to the straight middle
    fingertip in pixels; ``curl`` ``[..., 5]`` in [0, 1] (thumb..pinky); ``spread`` ``[...]``
    fans the fingers; ``roll`` ``[...]`` in radians turns the hand about its axis (0: palm or
    back facing the camera, curling only shortens the fingers; pi/2: seen edge-on, fingers
    curl in the image plane, away from the thumb side). ``thumb_side`` is +1 when the thumb
    lies at +90 degrees from the axis (image axes, y down), -1 otherwise. Returns ``[..., 21, 2]``.
    """
    wrist = np.asarray(wrist, dtype=np.float64)
    angle = np.asarray(angle, dtype=np.float64)[..., None]
    size = np.asarray(size, dtype=np.float64)[..., None, None]
    curl = np.asarray(curl, dtype=np.float64)
    spread = np.asarray(spread, dtype=np.float64)[..., None]
    roll = np.asarray(roll, dtype=np.float64)[..., None]
    axis = np.stack([np.cos(angle), np.sin(angle)], axis=-1)  # [..., 1, 2]
    side = _rotate(axis, np.full(angle.shape, thumb_side * np.pi / 2))
    side_scale = np.cos(roll)[..., None]  # knuckle spread seen foreshortened when edge-on
    bend = np.sin(roll)[..., None]  # how much flexion shows as in-plane curling

    # Four fingers: knuckle, then three phalanges with cumulative flexion.
    knuckles = _KNUCKLE_ALONG[:, None] * axis + _KNUCKLE_SIDE[:, None] * side_scale * side
    finger_dir = _rotate(axis, spread * _FINGER_FAN)  # [..., 4, 2]
    finger_side = _rotate(finger_dir, np.full(finger_dir.shape[:-1], -thumb_side * np.pi / 2))
    flex = np.cumsum(curl[..., 1:, None] * _FINGER_FLEX, axis=-1)  # [..., 4, 3]
    along = np.cos(flex)[..., None] * finger_dir[..., None, :]
    across = (np.sin(flex) * bend)[..., None] * finger_side[..., None, :]
    segments = _PHALANX[..., None] * (along + across)  # [..., 4, 3, 2]
    fingers = knuckles[..., None, :] + np.cumsum(segments, axis=-2)
    fingers = np.concatenate([knuckles[..., None, :], fingers], axis=-2)  # [..., 4, 4, 2]

    # Thumb: starts near the wrist on the thumb side and folds across the palm when curled.
    base = (
        _THUMB_BASE[0] * axis[..., 0, :] + _THUMB_BASE[1] * side_scale[..., 0, :] * side[..., 0, :]
    )
    thumb_angles = thumb_side * (_THUMB_ANGLE - np.cumsum(curl[..., :1] * _THUMB_FLEX, axis=-1))
    thumb_dirs = _rotate(np.broadcast_to(axis, thumb_angles.shape + (2,)), thumb_angles)
    thumb = base[..., None, :] + np.cumsum(_THUMB_SEGMENTS[:, None] * thumb_dirs, axis=-2)
    thumb = np.concatenate([base[..., None, :], thumb], axis=-2)  # [..., 4, 2]

    local = np.concatenate(
        [np.zeros_like(thumb[..., :1, :]), thumb, fingers.reshape(fingers.shape[:-3] + (16, 2))],
        axis=-2,
    )
    return wrist[..., None, :] + size * local


def face_points(geometry: BodyGeometry) -> np.ndarray:
    """The 68 iBUG face points ``[68, 2]`` in face widths, origin midway between the eyes,
    mouth closed, eyes open, frontal."""
    g = geometry
    pts = np.zeros((68, 2))
    # Jaw 0-16: a superellipse from the person's right ear level, round the chin, to the left.
    t = np.linspace(0.0, np.pi, 17)
    exponent = 2.0 / (2.0 + 1.5 * g.jaw_square)
    c, s = np.cos(t), np.sin(t)
    x = -0.5 * np.sign(c) * np.abs(c) ** exponent * (1.0 + g.chin_width * s**6)
    top = 0.02
    pts[0:17] = np.stack([x, top + (g.chin_drop - top) * np.abs(s) ** exponent], axis=-1)
    # Brows 17-21 (right, outer to inner) and 22-26 (left, inner to outer).
    u = np.linspace(0.0, 1.0, 5)
    brow_x = -g.eye_spacing / 2 - 0.75 * g.eye_width + u * 1.35 * g.eye_width
    brow_y = -g.brow_height - 0.035 * np.sin(np.pi * (0.25 + 0.75 * u))
    pts[17:22] = np.stack([brow_x, brow_y], axis=-1)
    pts[22:27] = np.stack([-brow_x[::-1], brow_y[::-1]], axis=-1)
    # Nose bridge 27-30 (top to tip), nose bottom 31-35 (right to left).
    pts[27:31] = np.stack([np.zeros(4), np.linspace(-0.02, g.nose_length, 4)], axis=-1)
    nx = np.array([-0.5, -0.25, 0.0, 0.25, 0.5]) * g.nose_width
    ny = g.nose_length + np.array([0.05, 0.075, 0.085, 0.075, 0.05])
    pts[31:36] = np.stack([nx, ny], axis=-1)
    # Eyes: right eye 36-41 (outer corner, upper lid outer->inner, inner corner, lower lid),
    # left eye 42-47 (inner corner, upper lid inner->outer, outer corner, lower lid).
    w, h = g.eye_width, g.eye_opening
    right_eye = np.array(
        [[-w / 2, 0], [-w / 6, -0.55 * h], [w / 6, -0.55 * h], [w / 2, 0], [w / 6, 0.45 * h],
         [-w / 6, 0.45 * h]]
    )  # fmt: skip
    pts[36:42] = right_eye + [-g.eye_spacing / 2, 0.0]
    left_eye = right_eye * [-1, 1]
    pts[42:48] = left_eye[[3, 2, 1, 0, 5, 4]] + [g.eye_spacing / 2, 0.0]
    # Outer lips 48-59 (right corner, upper lip to the left corner, lower lip back) and
    # inner lips 60-67 (right corner, upper, left corner, lower), closed: upper = lower.
    m, my, lu, ll = g.mouth_width, g.mouth_height, g.lip_upper, g.lip_lower
    pts[48:60] = np.array(
        [[-m / 2, 0], [-m / 3, -0.75 * lu], [-m / 9, -lu], [0, -0.85 * lu], [m / 9, -lu],
         [m / 3, -0.75 * lu], [m / 2, 0], [m / 3, 0.8 * ll], [m / 9, ll], [0, ll],
         [-m / 9, ll], [-m / 3, 0.8 * ll]]
    ) + [0.0, my]  # fmt: skip
    inner_x = np.array([-0.42, -0.18, 0.0, 0.18, 0.42, 0.18, 0.0, -0.18]) * m
    pts[60:68] = np.stack([inner_x, np.full(8, my)], axis=-1)
    return pts


def neutral_pose(geometry: BodyGeometry, width: int, height: int) -> np.ndarray:
    """The speaker's neutral pose, float32 ``[133, 3]`` (x, y pixels, confidence).

    Confidence is 1 for every point inside the frame (body, face, hands) and 0 for the
    legs and feet, which lie below the frame.
    """
    if width <= 0 or height <= 0:
        raise InputError(f"neutral pose: frame size must be positive, got {width}x{height}")
    g = geometry
    unit = float(min(width, height))
    kp = np.zeros((schema.NUM_KEYPOINTS, 3))
    cx = width / 2.0
    shoulder_y = SHOULDER_HEIGHT * height

    # Face: placed so the chin sits a neck length above the shoulder line.
    face_scale = g.face_width * unit
    eye_y = shoulder_y - g.neck_length * unit - g.chin_drop * face_scale
    face = face_points(g) * face_scale + [cx, eye_y]
    kp[schema.FACE_OFFSET : schema.FACE_OFFSET + 68, :2] = face
    kp[schema.NOSE, :2] = face[30]
    kp[schema.LEFT_EYE, :2] = face[42:48].mean(axis=0)
    kp[schema.RIGHT_EYE, :2] = face[36:42].mean(axis=0)
    ear_dx, ear_y = 0.5 * face_scale, eye_y + EAR_HEIGHT * face_scale
    kp[schema.LEFT_EAR, :2] = (cx + ear_dx, ear_y)
    kp[schema.RIGHT_EAR, :2] = (cx - ear_dx, ear_y)

    # Torso.
    half_shoulder, half_hip = g.shoulder_width * unit / 2, g.hip_width * unit / 2
    hip_y = shoulder_y + g.torso_length * unit
    for side, (shoulder, elbow, wrist, hip, hand) in {
        1.0: (schema.LEFT_SHOULDER, schema.LEFT_ELBOW, schema.LEFT_WRIST, schema.LEFT_HIP,
              schema.LEFT_HAND),
        -1.0: (schema.RIGHT_SHOULDER, schema.RIGHT_ELBOW, schema.RIGHT_WRIST,
               schema.RIGHT_HIP, schema.RIGHT_HAND),
    }.items():  # fmt: skip
        s_pt = np.array([cx + side * half_shoulder, shoulder_y])
        e_pt = s_pt + g.upper_arm * unit * np.array(
            [side * np.sin(UPPER_ARM_REST_ANGLE), np.cos(UPPER_ARM_REST_ANGLE)]
        )
        w_pt = e_pt + g.forearm * unit * np.array(
            [-side * np.cos(FOREARM_REST_ANGLE), np.sin(FOREARM_REST_ANGLE)]
        )
        kp[shoulder, :2], kp[elbow, :2], kp[wrist, :2] = s_pt, e_pt, w_pt
        kp[hip, :2] = (cx + side * half_hip, hip_y)
        hand_angle = np.pi - HAND_REST_ANGLE if side > 0 else HAND_REST_ANGLE
        kp[list(hand), :2] = hand_points(
            w_pt, hand_angle, g.hand_size * unit, np.array(RELAXED_CURL), RELAXED_SPREAD,
            RELAXED_ROLL, thumb_side=side,
        )  # fmt: skip
    kp[:, 2] = 1.0

    # Legs and feet continue straight down below the frame: not visible.
    leg = g.torso_length * unit
    for hip, knee, ankle in ((schema.LEFT_HIP, 13, 15), (schema.RIGHT_HIP, 14, 16)):
        kp[knee, :2] = kp[hip, :2] + [0.0, leg]
        kp[ankle, :2] = kp[hip, :2] + [0.0, 2 * leg]
    kp[17:20, :2] = kp[15, :2] + [
        [0.02 * unit, 0.05 * unit],
        [0.06 * unit, 0.04 * unit],
        [0, 0.02 * unit],
    ]
    kp[20:23, :2] = kp[16, :2] + [
        [-0.02 * unit, 0.05 * unit],
        [-0.06 * unit, 0.04 * unit],
        [0, 0.02 * unit],
    ]
    kp[[13, 14, 15, 16, *schema.FEET], 2] = 0.0
    return kp.astype(np.float32)
