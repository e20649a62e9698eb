"""Amplitude calibration of the regressed head motion.

The face head is a regression, so its head motion regresses to the mean: the generated
head moves less than the speakers of the corpus do. This module splits each frame's head
points into a rigid part and the rest, and scales the rigid part's motion by fitted gains.

**Decomposition.** Points are complex numbers ``x + iy``. Each frame's head points ``p``
(the 68 iBUG face points and the body's nose, eyes and ears) are fitted to a ``template``
shape ``m`` by a least-squares similarity (Umeyama/Procrustes; in 2D closed form)

    p ~= T(m) = z (m - c) + c + tau,      z = s e^{i theta}

on :data:`STABLE_POINTS` only: the face points no expression moves (jaw ends, nose, eye
corners; the lips, chin, lids and brows would pull the fit with speech). ``c`` is the
template's centroid of those points, ``tau`` the translation, ``theta`` the rotation and
``log s`` the log scale. The rest is the *local* shape ``T^{-1}(p)`` (lips, brows, lids
and the head turn's parallax in the template's frame); ``p = T(T^{-1}(p))`` recomposes the
frame exactly.

**Calibration.** Each rigid parameter ``x_t`` becomes ``x_t + (g - 1) l_t``: ``l`` is
its deviation from a centre, smoothed by a moving average of time constant ``smooth_s``
(0: not smoothed), so the gain ``g`` scales the slow motion and leaves the faster motion
(the regression's frame-to-frame jitter) as it was (:class:`ParameterGain`). The local
shape is mapped back with the new transform ``T'``: the calibrated frame is
``T'(T^{-1}(p))``, a similarity of the predicted frame. Mouth opening, brows and blinks
relative to the face's size are therefore exactly the model's (so is every distance
ratio within the frame), and the lips move with the head as on a real one. With every
gain 1 it is the identity.

Offline (:func:`offline_band`) the centre is the sequence's temporal mean (the mean pose
stays where it was) and the smoothing runs forwards then backwards (no lag). A stream has
no future frames (:class:`StreamBand`): the centre is the *running* mean of every frame
so far, the causal estimate of the same centre, which starts at the first frame (no
jump) and tends to the offline centre as the stream goes on; the smoothing runs forwards
only. The two modes have gains of their own (:class:`HeadCalibration`): their raw head
motion differs (the causal encoder's drifts more sideways) and their bands differ.

**Head turn proxy.** :func:`turn_offsets`: the nose tip relative to the eye centre, in
the template's frame and inter-ocular distances (IOD), minus its mean: how far the head
turns or nods out of the image plane (the nose, nearer the camera, moves more than the
eyes). It is measured, not scaled (see ``docs/motion.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from cospeech.config import from_dict
from cospeech.errors import InputError, check_range
from cospeech.pose import schema
from cospeech.pose.face68 import LEFT_EYE, NOSE_TIP, RIGHT_EYE

STABLE_POINTS = (0, 16) + tuple(range(27, 36)) + (36, 39, 42, 45)
"""iBUG face indices (0-67) of the similarity fit: the jaw's ends (the chin drop is 0
there), the nose and the eye corners (the lids move, the corners do not)."""
HEAD_POINTS = tuple(range(5)) + schema.FACE
"""Whole-body keypoints that move with the head: nose, eyes, ears, then the 68 face
points, in the order of :data:`cospeech.motion.normalize.FACE_POINTS`."""
FACE_START = 5  # where the 68 face points start in HEAD_POINTS
MIN_STABLE = 2  # fewer visible stable points leave the similarity undefined
MAX_GAIN = 10.0


PARAMETERS = ("translation_x", "translation_y", "rotation", "log_scale")
"""The rigid parameters, in the order of :attr:`RigidMotion.params`."""
MAX_SMOOTH_S = 10.0
MAX_CENTRE_S = 60.0


@dataclass(frozen=True)
class ParameterGain:
    """The gain on one rigid parameter's deviation from its centre, applied to the band
    below ``smooth_s``: the deviation smoothed by an exponential moving average of that
    time constant (seconds; 0: the whole deviation, every frequency)."""

    gain: float = 1.0
    smooth_s: float = 0.0

    def __post_init__(self) -> None:
        check_range("head gain", self.gain, 0.0, MAX_GAIN)
        check_range("head gain smooth_s", self.smooth_s, 0.0, MAX_SMOOTH_S)


@dataclass(frozen=True)
class HeadGains:
    """One :class:`ParameterGain` per rigid parameter: translation along x and y, rotation
    (in-plane roll) and log scale (towards/away from the camera). Gain 1 = as predicted.
    ``centre_s``: time constant (seconds) of the moving centre the deviations are taken
    from; 0: the whole sequence's mean offline, the running mean streaming."""

    translation_x: ParameterGain = field(default_factory=ParameterGain)
    translation_y: ParameterGain = field(default_factory=ParameterGain)
    rotation: ParameterGain = field(default_factory=ParameterGain)
    log_scale: ParameterGain = field(default_factory=ParameterGain)
    centre_s: float = 0.0

    def __post_init__(self) -> None:
        check_range("head gain centre_s", self.centre_s, 0.0, MAX_CENTRE_S)

    def gains(self) -> np.ndarray:
        """``[4]`` gains in :data:`PARAMETERS` order."""
        return np.array([getattr(self, name).gain for name in PARAMETERS])

    def smooth_s(self) -> np.ndarray:
        """``[4]`` band time constants (seconds) in :data:`PARAMETERS` order."""
        return np.array([getattr(self, name).smooth_s for name in PARAMETERS])

    def with_gain(self, gain: float) -> HeadGains:
        """``gain`` on every parameter, the bands kept."""
        fields = {name: replace(getattr(self, name), gain=gain) for name in PARAMETERS}
        return replace(self, **fields)

    @property
    def identity(self) -> bool:
        return bool((self.gains() == 1.0).all())


@dataclass(frozen=True)
class HeadCalibration:
    """The gains of each generation mode; ``"head_gain"`` in a model's ``config.json``
    (missing: every gain 1, the model's raw head motion)."""

    offline: HeadGains = field(default_factory=HeadGains)
    streaming: HeadGains = field(default_factory=HeadGains)

    @classmethod
    def from_config(cls, data: object) -> HeadCalibration:
        """From the ``"head_gain"`` field of a model config (None: the identity)."""
        return cls() if data is None else from_dict(cls, data, ".head_gain")

    def mode(self, streaming: bool) -> HeadGains:
        return self.streaming if streaming else self.offline


@dataclass(frozen=True)
class RigidMotion:
    """Per-frame similarities onto a template: ``params [4, T]`` (:data:`PARAMETERS`: the
    fit points' centroid shift x and y, rotation in radians, log scale) and the frames'
    points in the template's frame, ``local [T, P]`` (complex). ``pivot``: the template's
    centroid of the fit points (complex)."""

    params: np.ndarray
    local: np.ndarray
    pivot: complex

    @property
    def translation(self) -> np.ndarray:
        """``[T]`` complex."""
        return self.params[0] + 1j * self.params[1]

    @property
    def rotation(self) -> np.ndarray:
        return self.params[2]

    @property
    def log_scale(self) -> np.ndarray:
        return self.params[3]

    def zoom(self) -> np.ndarray:
        """``z = s e^{i theta}`` per frame ``[T]``."""
        return np.exp(self.log_scale + 1j * self.rotation)


def to_complex(points: np.ndarray) -> np.ndarray:
    """``[..., 2]`` -> complex ``[...]`` (float64)."""
    points = np.asarray(points, np.float64)
    return points[..., 0] + 1j * points[..., 1]


def to_xy(points: np.ndarray) -> np.ndarray:
    """Complex ``[...]`` -> ``[..., 2]`` float64."""
    return np.stack([points.real, points.imag], axis=-1)


def decompose(points: np.ndarray, template: np.ndarray, fit: np.ndarray) -> RigidMotion:
    """Similarity of each frame of ``points [T, P, 2]`` onto ``template [P, 2]``, fitted on
    the points where ``fit [P]`` (bool) is set (at least two, not all at one spot)."""
    p, m = to_complex(points), to_complex(template)
    fit = np.asarray(fit, bool)
    if fit.sum() < MIN_STABLE:
        raise InputError(f"head calibration: needs {MIN_STABLE} fit points, got {fit.sum()}")
    pivot = complex(m[fit].mean())
    centred = m[fit] - pivot
    norm = float(np.sum(np.abs(centred) ** 2))
    if norm <= 0:
        raise InputError("head calibration: the template's fit points coincide")
    centroid = p[:, fit].mean(axis=1)  # [T]
    zoom = (p[:, fit] - centroid[:, None]) @ np.conj(centred) / norm  # [T]
    if (zoom == 0).any():
        raise InputError("head calibration: a frame's fit points coincide")
    shift = centroid - pivot
    params = np.stack([shift.real, shift.imag, np.angle(zoom), np.log(np.abs(zoom))])
    return RigidMotion(params, (p - centroid[:, None]) / zoom[:, None] + pivot, pivot)


def compose(motion: RigidMotion) -> np.ndarray:
    """Points ``[T, P, 2]`` of a (possibly scaled) :class:`RigidMotion`."""
    zoom = motion.zoom()[:, None]
    return to_xy(zoom * (motion.local - motion.pivot) + motion.pivot + motion.translation[:, None])


def smoothing(smooth_s: np.ndarray, fps: float) -> np.ndarray:
    """Per-frame weights ``a [4]`` of the moving averages ``y_t = y_{t-1} + a (x_t -
    y_{t-1})`` with time constants ``smooth_s [4]`` (1, no smoothing, where 0)."""
    smooth_s = np.asarray(smooth_s, np.float64)
    frames = np.where(smooth_s > 0, smooth_s * fps, 1.0)
    return np.where(smooth_s > 0, -np.expm1(-1.0 / frames), 1.0)


def moving_average(x: np.ndarray, a: np.ndarray, before: np.ndarray) -> np.ndarray:
    """``y [4, T]``: the moving averages (weights ``a [4]``) of ``x [4, T]`` along the
    frames, from ``y_{-1} = before [4]``. The recurrence itself, all rows at once (a
    frame loop in NumPy: SciPy's ``lfilter`` would cost its import, over a second of every
    fresh ``cospeech generate``)."""
    weights = np.asarray(a, np.float64)
    y = np.empty(np.shape(x), np.float64)
    previous = np.asarray(before, np.float64)
    for t in range(y.shape[1]):
        previous = previous + weights * (x[:, t] - previous)
        y[:, t] = previous
    return y


def zero_phase(x: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``x [R, T]`` smoothed by the moving averages of weights ``a [R]`` forwards, then
    backwards (no lag)."""
    forward = moving_average(x, a, x[:, 0])
    return moving_average(forward[:, ::-1], a, forward[:, -1])[:, ::-1]


def offline_band(params: np.ndarray, a: np.ndarray, centre_a: float | None) -> np.ndarray:
    """The band the gains scale offline ``[R, T]``: the deviation of ``params [R, T]``
    from its centre (the temporal mean when ``centre_a`` is None, else the moving average
    of that weight, both ways), smoothed both ways with weights ``a [R]``."""
    if centre_a is None:
        centre = params.mean(axis=1, keepdims=True)
    else:
        centre = zero_phase(params, np.full(len(params), centre_a))
    return zero_phase(params - centre, a)


class StreamBand:
    """The band the gains scale in a stream: the deviation from the centre (the running
    mean of every frame so far, that one included, when ``centre_a`` is None, else the
    moving average of that weight), smoothed forwards only. Called on consecutive runs of
    frames (chunks), it carries its state over, so the result does not depend on how a
    stream is cut."""

    def __init__(self) -> None:
        self.count = 0
        self.sums: np.ndarray | float = 0.0  # per parameter, once a frame has come
        self.centre: np.ndarray | None = None  # the moving centre at the previous frame
        self.last: np.ndarray | None = None  # the band's value at the previous frame

    def _centre(self, params: np.ndarray, centre_a: float | None) -> np.ndarray:
        sums = np.reshape(self.sums, (-1, 1)) + np.cumsum(params, axis=1)
        self.count += params.shape[1]
        self.sums = sums[:, -1]
        if centre_a is None:
            return sums / (self.count - params.shape[1] + np.arange(1, params.shape[1] + 1))
        before = params[:, 0] if self.centre is None else self.centre
        centre = moving_average(params, np.full(len(params), centre_a), before)
        self.centre = centre[:, -1]
        return centre

    def __call__(self, params: np.ndarray, a: np.ndarray, centre_a: float | None) -> np.ndarray:
        deviation = params - self._centre(params, centre_a)
        before = deviation[:, 0] if self.last is None else self.last
        band = moving_average(deviation, a, before)
        self.last = band[:, -1]
        return band


Band = Callable[[np.ndarray, np.ndarray, float | None], np.ndarray]


def scale_motion(motion: RigidMotion, gains: HeadGains, band: np.ndarray) -> RigidMotion:
    """``motion`` with each parameter's ``band [4, T]`` times its gain (the rest of the
    motion, the centre and the faster motion, as it was)."""
    params = motion.params + (gains.gains() - 1.0)[:, None] * band
    return RigidMotion(params, motion.local, motion.pivot)


def calibrate_points(
    points: np.ndarray,
    template: np.ndarray,
    fit: np.ndarray,
    gains: HeadGains,
    fps: float,
    band: Band = offline_band,
) -> np.ndarray:
    """Head points ``[T, P, 2]`` at ``fps`` with their rigid motion onto ``template [P,
    2]`` (fitted on ``fit [P]``) scaled by ``gains`` in ``band`` (default: offline's),
    same dtype. Returned unchanged when every gain is 1, there are no frames or fewer than
    two fit points (no face to calibrate)."""
    fit = np.asarray(fit, bool)
    if gains.identity or len(points) == 0 or fit.sum() < MIN_STABLE:
        return points
    motion = decompose(points, template, fit)
    centre_a = smoothing([gains.centre_s], fps)[0] if gains.centre_s > 0 else None
    low = band(motion.params, smoothing(gains.smooth_s(), fps), centre_a)
    return compose(scale_motion(motion, gains, low)).astype(points.dtype)


def head_fit_mask(confidence: np.ndarray) -> np.ndarray:
    """``[len(HEAD_POINTS)]`` bool: the stable points among head points whose confidence
    ``[len(HEAD_POINTS)]`` is > 0."""
    mask = np.zeros(len(HEAD_POINTS), bool)
    mask[[FACE_START + i for i in STABLE_POINTS]] = True
    return mask & (np.asarray(confidence) > 0)


def turn_offsets(motion: RigidMotion) -> np.ndarray:
    """Head-turn proxy ``[T, 2]``: the nose tip minus the eye centre in the template's
    frame, minus its temporal mean, in template inter-ocular distances (``motion`` of head
    points, :data:`HEAD_POINTS` order)."""
    face = motion.local[:, FACE_START:]
    right, left = face[:, RIGHT_EYE].mean(axis=1), face[:, LEFT_EYE].mean(axis=1)
    offset = face[:, NOSE_TIP] - (right + left) / 2
    iod = float(np.abs(right - left).mean())
    return to_xy((offset - offset.mean()) / iod)
