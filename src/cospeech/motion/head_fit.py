"""Fitting the head-motion gains on held-out clips (``cospeech motion-calibrate``).

For every clip of a split the model runs on the clip's audio with the identity's reference
pose as ``cospeech generate`` runs it (the clip's frame rate, seed 0), offline and
streaming, with its raw head motion (gain 1). Predicted and true head points are decomposed
into per-frame similarities (:mod:`cospeech.motion.head_calibration`); translations are
taken in inter-ocular distances (IOD) of the template, so that clips of any size weigh
alike.

Per mode and parameter, for each band time constant in :data:`SMOOTH_CANDIDATES_S`:
the calibrated parameter is ``x_t + (g - 1) l_t`` (``l`` the band the gain scales, see
:mod:`~cospeech.motion.head_calibration`), so its variance over a clip is a quadratic in
``g``; the gain makes its mean over the clips equal the truth's (pooled variances: a median
of per-clip ratios would be dominated by the clips where the model predicts almost no
motion of a kind, a near-zero denominator). Of those, the band kept is the one whose
calibrated frame-to-frame motion (the pooled std of the frame differences) is closest to
the truth's, among the bands that match the variance within :data:`MAX_GAIN`. A gain on
every frequency (band 0) would multiply the regression's frame-to-frame jitter too: the
shipped model's sideways translation and roll already change from frame to frame as fast
as the truth's, and a flat gain of 4.5 made them 5.5 and 3.3 times as fast as the truth's;
the truth's sideways drift and roll are slow.

The model's motion is measured on clips it was not trained on (``split``, val by default),
the truth's on every clip of ``truth_splits`` (:class:`TruthTarget`; train and val by
default): how much the corpus's speakers move is a property of the speakers, not of the
model, and the 60 val clips of a few identities estimate it poorly (their pooled variance
of the vertical translation is 20 % under the train clips').
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cospeech.motion.dataset import MotionClip, load_split
from cospeech.motion.generate import MotionGenerator, MotionOptions
from cospeech.motion.head_calibration import (
    FACE_START,
    HEAD_POINTS,
    MAX_GAIN,
    PARAMETERS,
    Band,
    HeadCalibration,
    HeadGains,
    ParameterGain,
    RigidMotion,
    StreamBand,
    decompose,
    head_fit_mask,
    offline_band,
    smoothing,
    to_complex,
    turn_offsets,
)
from cospeech.motion.metrics import correlation
from cospeech.pose import schema
from cospeech.pose.face68 import LEFT_EYE, RIGHT_EYE, head_motion, head_turn, mouth_opening
from cospeech.pose.sequence import PoseSequence
from cospeech.progress import track

SEED = 0
MODES = {"offline": False, "streaming": True}
SMOOTH_CANDIDATES_S = (0.0, 0.1, 0.2, 0.4, 0.8, 1.6)
TRUTH_SPLITS = ("train", "val")
"""The splits whose truth the fitted gains match by default (never test: it measures)."""
CENTRE_S = 2.0
"""Time constant of the moving centre of the fitted gains: the gains are measured on clips
of about 5 s about each clip's mean, so they may scale the motion of those time scales
only; slower motion (a long recording's minute-long wander) keeps gain 1."""


def normalised(motion: RigidMotion, iod: float) -> np.ndarray:
    """``motion``'s parameters ``[4, T]`` with the translations in IOD."""
    return motion.params / np.array([iod, iod, 1.0, 1.0])[:, None]


@dataclass(frozen=True)
class HeadStats:
    """One sequence's head motion: ``std`` and ``speed`` (std of the frame-to-frame
    differences) per rigid parameter (translations in template IOD, rotation in radians,
    log scale), ``turn`` (spread of the head-turn proxy, IOD),
    ``eye_spread`` and ``nose_spread`` (:func:`cospeech.pose.face68.head_motion`,
    :func:`~cospeech.pose.face68.head_turn`) and the ``mouth [T]`` inner-lip gap over IOD."""

    std: dict[str, float]
    speed: dict[str, float]
    turn: float
    eye_spread: float
    nose_spread: float
    mouth: np.ndarray


@dataclass(frozen=True)
class ClipRun:
    """A clip with the model's raw predictions ``[T, 133, 3]`` by mode, and its head
    template (the rest pose's head points ``[P, 2]``), fit points ``[P]`` and IOD."""

    clip: MotionClip
    raw: dict[str, np.ndarray]
    template: np.ndarray
    fit: np.ndarray
    iod: float

    def motion(self, keypoints: np.ndarray) -> RigidMotion:
        return decompose(keypoints[:, list(HEAD_POINTS), :2], self.template, self.fit)


@dataclass(frozen=True)
class ClipHead:
    """A clip's head statistics: ``truth``, and per mode the ``raw`` and the
    ``calibrated`` prediction's."""

    clip: str
    truth: HeadStats
    raw: dict[str, HeadStats]
    calibrated: dict[str, HeadStats]


@dataclass(frozen=True)
class Calibration:
    """Per-clip head statistics of a split and the gains fitted (or applied)."""

    clips: list[ClipHead]
    gains: HeadCalibration


def template_iod(template: np.ndarray) -> float:
    """Distance between the eye centres of head points ``template [P, 2]``."""
    face = to_complex(template[FACE_START:])
    return float(abs(face[RIGHT_EYE].mean() - face[LEFT_EYE].mean()))


def head_stats(run: ClipRun, keypoints: np.ndarray) -> HeadStats:
    """:class:`HeadStats` of keypoints ``[T, 133, >= 2]`` (pixels) of ``run``'s clip."""
    motion = run.motion(keypoints)
    params = normalised(motion, run.iod)
    turn = turn_offsets(motion)
    landmarks = keypoints[:, list(schema.FACE), :2]
    return HeadStats(
        std=dict(zip(PARAMETERS, params.std(axis=1).tolist(), strict=True)),
        speed=dict(zip(PARAMETERS, np.diff(params, axis=1).std(axis=1).tolist(), strict=True)),
        turn=float(np.sqrt(turn.var(axis=0).sum())), eye_spread=head_motion(landmarks),
        nose_spread=head_turn(landmarks), mouth=mouth_opening(landmarks),
    )  # fmt: skip


def clip_run(generator: MotionGenerator, clip: MotionClip, predict: bool = True) -> ClipRun:
    """The model's raw predictions of ``clip`` in both modes (none without ``predict``:
    the clip's truth only is measured)."""
    options = MotionOptions(fps=clip.fps, seed=SEED, head_gain=1.0)
    raw = {
        mode: generator.generate(clip.audio, clip.reference_pose, options=options,
                                 streaming=streaming).keypoints
        for mode, streaming in MODES.items() if predict
    }  # fmt: skip
    head = list(HEAD_POINTS)
    template = generator.rest_points(clip.reference)[head]
    fit = head_fit_mask(clip.reference[head, 2])
    return ClipRun(clip, raw, template, fit, template_iod(template))


@dataclass(frozen=True)
class TruthTarget:
    """What the gains match: the truth's pooled head motion over ``clips`` clips, per rigid
    parameter (:data:`PARAMETERS`; translations in template IOD) the mean over the clips of
    the per-clip variance, ``variance [4]``, and of the frame-to-frame differences'
    variance, ``speed [4]``."""

    variance: np.ndarray
    speed: np.ndarray
    clips: int


def truth_target(runs: list[ClipRun]) -> TruthTarget:
    """The :class:`TruthTarget` of the truths of ``runs``."""
    truth = [normalised(run.motion(run.clip.keypoints), run.iod) for run in runs]
    variance = np.mean([t.var(axis=1) for t in truth], axis=0)
    speed = np.mean([np.diff(t, axis=1).var(axis=1) for t in truth], axis=0)
    return TruthTarget(variance, speed, len(runs))


def band_of(streaming: bool) -> Band:
    """A mode's band: offline's, or a fresh stream's."""
    return StreamBand() if streaming else offline_band


def matching_gain(fixed: list[np.ndarray], scaled: list[np.ndarray], truth: float) -> float:
    """The gain ``g >= 0`` for which the mean over clips of ``var(fixed + g scaled)``
    (``[T]`` series per clip) equals ``truth``; the variance-minimising ``g`` when none
    does, 1 when nothing is scaled. At most :data:`MAX_GAIN`."""
    a = np.mean([x.var() for x in scaled])
    b = np.mean([np.mean((f - f.mean()) * (x - x.mean())) for f, x in zip(fixed, scaled,
                                                                         strict=True)])  # fmt: skip
    c = np.mean([f.var() for f in fixed])
    if a <= 0:
        return 1.0
    disc = b * b - a * (c - truth)
    gain = (-b + np.sqrt(disc)) / a if disc >= 0 else -b / a
    return float(np.clip(gain, 0.0, MAX_GAIN))


@dataclass(frozen=True)
class BandFit:
    """A fitted gain in one band and the calibrated frame-to-frame std over the truth's."""

    gain: ParameterGain
    speed_ratio: float


def fit_band(
    raw: list[np.ndarray], variance: float, speed: float, fps: list[float], streaming: bool,
    smooth_s: float,
) -> BandFit:  # fmt: skip
    """The gain in the band of ``smooth_s`` (about the :data:`CENTRE_S` centre) that makes
    the pooled variance of the per-clip series ``raw`` (``[T]`` each, at ``fps``) equal the
    truth's ``variance``; ``speed``: the truth's pooled frame-to-frame variance."""
    lows = [band_of(streaming)(x[None], smoothing([smooth_s], f), smoothing([CENTRE_S], f)[0])[0]
            for x, f in zip(raw, fps, strict=True)]  # fmt: skip
    fixed = [x - low for x, low in zip(raw, lows, strict=True)]
    gain = matching_gain(fixed, lows, variance)
    calibrated = [f + gain * low for f, low in zip(fixed, lows, strict=True)]
    calibrated_speed = np.mean([np.diff(c).var() for c in calibrated])
    return BandFit(
        ParameterGain(round(gain, 3), smooth_s), float(np.sqrt(calibrated_speed / speed))
    )


def fit_parameter(
    raw: list[np.ndarray], variance: float, speed: float, fps: list[float], streaming: bool
) -> ParameterGain:
    """Of the bands of :data:`SMOOTH_CANDIDATES_S` that match the truth's ``variance`` below
    :data:`MAX_GAIN` (all when none does), the one whose frame-to-frame std is closest to the
    truth's (``speed`` its variance; in ratio)."""
    fits = [fit_band(raw, variance, speed, fps, streaming, s) for s in SMOOTH_CANDIDATES_S]
    usable = [f for f in fits if f.gain.gain < MAX_GAIN] or fits
    return min(usable, key=lambda f: abs(np.log(f.speed_ratio))).gain


def fit_mode(runs: list[ClipRun], mode: str, target: TruthTarget) -> HeadGains:
    """The gains of ``mode`` that bring the model's motion on ``runs`` to the truth's
    ``target`` (:func:`fit_parameter` for each rigid parameter)."""
    raw = [normalised(run.motion(run.raw[mode]), run.iod) for run in runs]
    fps = [run.clip.fps for run in runs]
    return HeadGains(**{
        name: fit_parameter([r[i] for r in raw], float(target.variance[i]),
                            float(target.speed[i]), fps, MODES[mode])
        for i, name in enumerate(PARAMETERS)
    }, centre_s=CENTRE_S)  # fmt: skip


def clip_head(generator: MotionGenerator, run: ClipRun, gains: HeadCalibration) -> ClipHead:
    """Head statistics of ``run``'s truth and of its raw and calibrated predictions."""
    clip = run.clip
    calibrated = {}
    for mode, streaming in MODES.items():
        pose = PoseSequence(run.raw[mode], clip.fps, clip.width, clip.height)
        band = band_of(streaming)
        pose = generator.calibrate_head(pose, clip.reference, gains.mode(streaming), band)
        calibrated[mode] = head_stats(run, pose.keypoints)
    raw = {mode: head_stats(run, keypoints) for mode, keypoints in run.raw.items()}
    return ClipHead(clip.id, head_stats(run, clip.keypoints), raw, calibrated)


def calibrate(
    model: str | Path | None,
    data: str | Path,
    split: str = "val",
    clips: int = 0,
    fit: bool = True,
    progress: bool = False,
    truth_splits: tuple[str, ...] = TRUTH_SPLITS,
) -> Calibration:
    """Head statistics of the first ``clips`` (0 = all) clips of ``split``; with ``fit``
    the gains of both modes are fitted (:func:`fit_mode`) so that the model's motion on
    those clips matches the truth's on every clip of ``truth_splits``, else the model's own
    gains are applied. Either way each clip's calibrated statistics are measured too."""
    generator = MotionGenerator.load(model)
    loaded = load_split(data, split, clips, progress=progress)
    running = track(loaded, "motion calibrate", unit="clip", enabled=progress)
    runs = [clip_run(generator, clip) for clip in running]
    if fit:
        truths = list(runs) if split in truth_splits else []
        for other in truth_splits:
            if other != split:
                truths += [clip_run(generator, clip, predict=False)
                           for clip in load_split(data, other, 0, progress=progress)]  # fmt: skip
        target = truth_target(truths)
        gains = HeadCalibration(**{mode: fit_mode(runs, mode, target) for mode in MODES})
    else:
        gains = generator.head_calibration
    return Calibration([clip_head(generator, run, gains) for run in runs], gains)


def band_label(gain: ParameterGain) -> str:
    """``"4.53"`` (every frequency) or ``"8.45 below 0.4 s"``."""
    return f"{gain.gain:g}" + (f" below {gain.smooth_s:g} s" if gain.smooth_s else "")


def summary(result: Calibration) -> str:
    """A Markdown table: per measure the median over clips of the truth and of each mode's
    raw and calibrated prediction, the gains, and the mean mouth-opening correlation with
    the truth."""
    rows = [
        "| measure | truth | offline | calibrated | gain | streaming | calibrated | gain |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def median(get: Callable[[ClipHead], float]) -> str:
        return f"{np.nanmedian([get(c) for c in result.clips]):.4f}"

    def row(label: str, get: Callable[[HeadStats], float], name: str | None = None) -> str:
        cells = [label, median(lambda c: get(c.truth))]
        for mode, streaming in MODES.items():
            gain = "-" if name is None else band_label(getattr(result.gains.mode(streaming), name))
            cells += [median(lambda c, m=mode: get(c.raw[m])),
                      median(lambda c, m=mode: get(c.calibrated[m])), gain]  # fmt: skip
        return "| " + " | ".join(cells) + " |"

    for name in PARAMETERS:
        rows.append(row(f"std {name}", lambda s, n=name: s.std[n], name))
        rows.append(row(f"frame-to-frame std {name}", lambda s, n=name: s.speed[n]))
    rows.append(row("head-turn proxy spread (IOD)", lambda s: s.turn))
    rows.append(row("eye-centre spread (IOD)", lambda s: s.eye_spread))
    rows.append(row("nose-to-eyes spread (IOD)", lambda s: s.nose_spread))
    cells = ["mouth-opening corr. with truth (mean)", "1"]
    for mode in MODES:
        for which in ("raw", "calibrated"):
            values = [correlation(getattr(c, which)[mode].mouth, c.truth.mouth)
                      for c in result.clips]  # fmt: skip
            cells.append(f"{np.nanmean(values):.4f}")
        cells.append("-")
    rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)
