"""Head-motion calibration: the similarity decomposition, the gains, their storage, and
their use in both generation paths.

Truth: sequences built from known similarities (closed-form parameters), and the
decomposition's own exactness (it is a change of coordinates, invertible per frame).
"""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from cospeech.cli import main
from cospeech.data.synth.skeleton import neutral_pose, sample_geometry
from cospeech.errors import CheckpointError, InputError
from cospeech.jsonfile import read_json
from cospeech.motion.checkpoint import (
    load_head_calibration,
    save_head_calibration,
    save_motion_model,
)
from cospeech.motion.config import preset
from cospeech.motion.dataset import load_split
from cospeech.motion.generate import MotionGenerator, MotionOptions
from cospeech.motion.head_calibration import (
    FACE_START,
    HEAD_POINTS,
    MAX_GAIN,
    PARAMETERS,
    STABLE_POINTS,
    HeadCalibration,
    HeadGains,
    ParameterGain,
    StreamBand,
    calibrate_points,
    compose,
    decompose,
    head_fit_mask,
    offline_band,
    scale_motion,
)
from cospeech.motion.head_fit import calibrate, matching_gain, normalised, template_iod
from cospeech.motion.model import MotionModel
from cospeech.pose import schema
from cospeech.pose.face68 import mouth_opening
from cospeech.pose.sequence import PoseSequence
from pipeline_fixture import tiny_corpus

P = len(HEAD_POINTS)
MOUTH = [FACE_START + i for i in range(48, 68)]  # iBUG mouth points, none of them fit points
FPS = 25.0
GAINS = HeadGains(*(ParameterGain(g) for g in (2.5, 1.5, 3.0, 0.5)))  # every frequency
STREAM_GAINS = HeadGains(*(ParameterGain(g, s) for g, s in ((2.0, 0.4), (1.2, 0.0),
                                                             (2.5, 0.8), (0.8, 0.1))))  # fmt: skip
CALIBRATION = HeadCalibration(offline=GAINS, streaming=STREAM_GAINS)
SIZE = 160


def _face(rng: np.random.Generator) -> np.ndarray:
    """A head shape ``[P, 2]``: a synthetic speaker's neutral face and head points."""
    pose = neutral_pose(sample_geometry(rng), SIZE, SIZE)
    return pose[list(HEAD_POINTS), :2].astype(np.float64)


def _known_sequence(frames: int = 40, seed: int = 0):
    """Frames ``z_t (shape + lips_t - c) + c + tau_t`` with known rotation, log scale and
    translation, and a lip residual on the mouth points only."""
    rng = np.random.default_rng(seed)
    shape = _face(rng)
    lips = np.zeros((frames, P, 2))
    lips[:, MOUTH] = rng.normal(0.0, 0.8, (frames, len(MOUTH), 2))
    rotation = rng.normal(0.05, 0.04, frames)
    log_scale = rng.normal(0.02, 0.03, frames)
    shift = rng.normal((3.0, -2.0), 2.0, (frames, 2))
    fit = head_fit_mask(np.ones(P))
    pivot = shape[fit].mean(axis=0)
    angle = rotation[:, None]
    local = shape + lips - pivot
    scale = np.exp(log_scale)[:, None]
    x = scale * (np.cos(angle) * local[..., 0] - np.sin(angle) * local[..., 1])
    y = scale * (np.sin(angle) * local[..., 0] + np.cos(angle) * local[..., 1])
    points = np.stack([x, y], axis=-1) + pivot + shift[:, None]
    return points, shape, lips, rotation, log_scale, shift, fit


def test_fit_points_are_the_expression_free_face_points():
    mask = head_fit_mask(np.ones(P))
    assert [i - FACE_START for i in np.flatnonzero(mask)] == list(STABLE_POINTS)
    assert not mask[MOUTH].any()
    hidden = np.ones(P)
    hidden[FACE_START + 30] = 0.0  # a point the reference does not see is not fitted
    assert head_fit_mask(hidden).sum() == len(STABLE_POINTS) - 1


def test_decomposition_recomposes_exactly_with_gain_one():
    rng = np.random.default_rng(1)
    template = _face(rng)
    points = template + rng.normal(0.0, 3.0, (30, P, 2))  # any frames, not similar shapes
    fit = head_fit_mask(np.ones(P))
    motion = decompose(points, template, fit)
    # A change of coordinates and back, in float64: round-off only.
    assert np.allclose(compose(motion), points, rtol=0, atol=1e-9)
    band = offline_band(motion.params, np.full(4, 0.3), 0.1)
    kept = scale_motion(motion, HeadGains(), band)
    assert np.allclose(compose(kept), points, rtol=0, atol=1e-9)
    # All gains 1 is the identity itself: the same array comes back.
    assert calibrate_points(points, template, fit, HeadGains(), FPS) is points


def test_known_similarities_are_recovered_and_scaled_by_the_gains():
    points, shape, lips, rotation, log_scale, shift, fit = _known_sequence()
    motion = decompose(points, shape, fit)
    assert np.allclose(motion.rotation, rotation, atol=1e-9)
    assert np.allclose(motion.log_scale, log_scale, atol=1e-9)
    assert np.allclose(motion.local - (shape[:, 0] + 1j * shape[:, 1]),
                       lips[..., 0] + 1j * lips[..., 1], atol=1e-9)  # fmt: skip

    calibrated = calibrate_points(points, shape, fit, GAINS, FPS)
    # Closed form: each parameter's deviation from its temporal mean times its gain.
    pivot = shape[fit].mean(axis=0)
    tau = shift  # the fit points' centroid shift (the lips are not fit points)
    gx, gy, g_rotation, g_scale = GAINS.gains()
    new_rotation = rotation.mean() + g_rotation * (rotation - rotation.mean())
    new_scale = np.exp(log_scale.mean() + g_scale * (log_scale - log_scale.mean()))
    new_tau = tau.mean(axis=0) + (gx, gy) * (tau - tau.mean(0))
    angle = new_rotation[:, None]
    local = shape + lips - pivot
    x = new_scale[:, None] * (np.cos(angle) * local[..., 0] - np.sin(angle) * local[..., 1])
    y = new_scale[:, None] * (np.sin(angle) * local[..., 0] + np.cos(angle) * local[..., 1])
    expected = np.stack([x, y], axis=-1) + pivot + new_tau[:, None]
    assert np.allclose(calibrated, expected, rtol=0, atol=1e-9)

    again = decompose(calibrated, shape, fit)
    assert np.allclose(again.local, motion.local, atol=1e-9)  # lips untouched
    # Mouth opening over the inter-ocular distance is the same in every frame. A ratio of
    # float64 distances under a similarity: rounding is ~1e-15 relative on any CPU, so 1e-9
    # is a tolerance, not an exact comparison.
    face = slice(FACE_START, None)
    assert np.allclose(mouth_opening(calibrated[:, face]), mouth_opening(points[:, face]),
                       rtol=1e-9, atol=0)  # fmt: skip


def _moving_average(x: np.ndarray, a: float, start: float) -> np.ndarray:
    """``y_t = y_{t-1} + a (x_t - y_{t-1})`` from ``y_{-1} = start``, one frame at a time."""
    out, y = [], start
    for value in x:
        y = y + a * (value - y)
        out.append(y)
    return np.array(out)


def test_offline_band_is_the_smoothed_deviation_both_ways():
    points, shape, _, rotation, *_ = _known_sequence(seed=4)
    fit = head_fit_mask(np.ones(P))
    gains = HeadGains(rotation=ParameterGain(3.0, smooth_s=0.4))
    calibrated = calibrate_points(points, shape, fit, gains, FPS)
    a = 1.0 - np.exp(-1.0 / (0.4 * FPS))
    deviation = rotation - rotation.mean()
    forward = _moving_average(deviation, a, deviation[0])
    band = _moving_average(forward[::-1], a, forward[-1])[::-1]
    again = decompose(calibrated, shape, fit)
    assert np.allclose(again.rotation, rotation + 2.0 * band, atol=1e-9)
    before = decompose(points, shape, fit)
    assert np.allclose(again.params[[0, 1, 3]], before.params[[0, 1, 3]], atol=1e-9)  # gain 1
    assert np.allclose(again.local, before.local, atol=1e-9)
    # The smoothed band has less frame-to-frame motion than the deviation it comes from,
    # so the gain adds less of it than a gain on every frequency would.
    flat = decompose(calibrate_points(points, shape, fit, GAINS, FPS), shape, fit)
    assert np.diff(again.rotation).std() < np.diff(flat.rotation).std()


def test_moving_centre_keeps_the_slow_motion():
    points, shape, _, rotation, *_ = _known_sequence(seed=5)
    fit = head_fit_mask(np.ones(P))
    gains = HeadGains(rotation=ParameterGain(3.0), centre_s=0.5)
    a = 1.0 - np.exp(-1.0 / (0.5 * FPS))
    forward = _moving_average(rotation, a, rotation[0])
    centre = _moving_average(forward[::-1], a, forward[-1])[::-1]
    offline = decompose(calibrate_points(points, shape, fit, gains, FPS), shape, fit)
    assert np.allclose(offline.rotation, centre + 3.0 * (rotation - centre), atol=1e-9)
    centre = _moving_average(rotation, a, rotation[0])  # causal
    band, pieces = StreamBand(), []
    for start, stop in ((0, 13), (13, 40)):
        pieces.append(calibrate_points(points[start:stop], shape, fit, gains, FPS, band))
    streamed = decompose(np.concatenate(pieces), shape, fit)
    assert np.allclose(streamed.rotation, centre + 3.0 * (rotation - centre), atol=1e-9)


def test_stream_band_is_causal_and_independent_of_the_chunks():
    points, shape, _, rotation, log_scale, *_ = _known_sequence(seed=2)
    fit = head_fit_mask(np.ones(P))
    calibrated = calibrate_points(points, shape, fit, STREAM_GAINS, FPS, StreamBand())
    frames = np.arange(1, len(rotation) + 1)
    expected = {}
    for name, values in (("rotation", rotation), ("log_scale", log_scale)):
        gain = getattr(STREAM_GAINS, name)
        a = 1.0 - np.exp(-1.0 / (gain.smooth_s * FPS))
        deviation = values - np.cumsum(values) / frames  # from the mean so far
        expected[name] = values + (gain.gain - 1.0) * _moving_average(deviation, a, 0.0)
    again = decompose(calibrated, shape, fit)
    assert np.allclose(again.rotation, expected["rotation"], atol=1e-9)
    assert np.allclose(again.log_scale, expected["log_scale"], atol=1e-9)
    band, pieces = StreamBand(), []
    for start, stop in ((0, 7), (7, 8), (8, 40)):
        pieces.append(calibrate_points(points[start:stop], shape, fit, STREAM_GAINS, FPS, band))
    assert np.allclose(np.concatenate(pieces), calibrated, rtol=0, atol=1e-9)
    assert np.allclose(calibrated[0], points[0], rtol=0, atol=1e-9)  # its own mean


def test_too_few_fit_points_leave_the_points_alone():
    points, shape, *_ = _known_sequence(frames=5)
    one = np.zeros(P, bool)
    one[FACE_START + 30] = True
    assert calibrate_points(points, shape, one, GAINS, FPS) is points
    with pytest.raises(InputError, match="fit points"):
        decompose(points, shape, one)


def test_gains_are_checked():
    with pytest.raises(InputError, match="head gain"):
        ParameterGain(gain=-1.0)
    with pytest.raises(InputError, match="smooth_s"):
        ParameterGain(smooth_s=11.0)
    with pytest.raises(InputError, match="--head-gain"):
        MotionOptions(head_gain=float("nan"))
    kept = replace(STREAM_GAINS, centre_s=2.0).with_gain(2.0)
    assert (kept.gains() == 2.0).all() and (kept.smooth_s() == STREAM_GAINS.smooth_s()).all()
    assert kept.centre_s == 2.0
    with pytest.raises(InputError, match="centre_s"):
        HeadGains(centre_s=-1.0)
    assert HeadCalibration.from_config(None) == HeadCalibration()
    partial = HeadCalibration.from_config({"offline": {"rotation": {"gain": 2.0}}})
    assert partial.offline == HeadGains(rotation=ParameterGain(2.0))
    assert partial.streaming.identity


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """A tiny random motion model (face offsets of a few pixels) saved without gains."""
    torch.manual_seed(0)
    model = MotionModel(preset("tiny"))
    model.set_statistics({"face_std": torch.full((146,), 0.05)})
    folder = tmp_path_factory.mktemp("motion")
    save_motion_model(model, folder, {"fps": 25.0})
    return folder


@pytest.fixture(scope="module")
def reference():
    pose = neutral_pose(sample_geometry(np.random.default_rng(7)), SIZE, SIZE)
    return PoseSequence(pose[None], 25.0, SIZE, SIZE)


@pytest.fixture(scope="module")
def audio():
    return np.random.default_rng(3).normal(0.0, 0.1, 2 * 16000).astype(np.float32)


def test_missing_field_is_the_identity(model_folder, reference, audio):
    assert load_head_calibration(model_folder) == HeadCalibration()
    generator = MotionGenerator.load(model_folder)
    plain = generator.generate(audio, reference)
    off = generator.generate(audio, reference, options=MotionOptions(head_gain=1.0))
    assert np.array_equal(plain.keypoints, off.keypoints)  # the same computation, no gain


def test_gains_round_trip_through_the_config(model_folder, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(model_folder, folder)
    before = read_json(folder / "config.json")
    save_head_calibration(folder, CALIBRATION)
    after = read_json(folder / "config.json")
    assert load_head_calibration(folder) == CALIBRATION
    assert MotionGenerator.load(folder).head_calibration == CALIBRATION
    assert {k: v for k, v in after.items() if k != "head_gain"} == before
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text('{"head_gain": {"offline": {"yaw": {"gain": 2}}}}')
    with pytest.raises(CheckpointError, match="yaw"):
        load_head_calibration(bad)


def _head(pose: PoseSequence) -> np.ndarray:
    return pose.keypoints[:, list(HEAD_POINTS), :2].astype(np.float64)


def test_generation_scales_only_the_head_rigid_motion(model_folder, reference, audio):
    generator = MotionGenerator(MotionGenerator.load(model_folder).model, None, CALIBRATION)
    raw = generator.generate(audio, reference, options=MotionOptions(head_gain=1.0))
    calibrated = generator.generate(audio, reference)
    others = [i for i in range(schema.NUM_KEYPOINTS) if i not in HEAD_POINTS]
    assert np.array_equal(calibrated.keypoints[:, others], raw.keypoints[:, others])
    assert np.array_equal(calibrated.confidence, raw.confidence)
    head = list(HEAD_POINTS)
    template = generator.rest_points(reference.keypoints[0])[head]
    fit = head_fit_mask(reference.keypoints[0, head, 2])
    before, after = (
        decompose(_head(raw), template, fit),
        decompose(_head(calibrated), template, fit),
    )
    # Offline: deviations from the temporal mean times the gain, the mean kept (float32
    # keypoints: ~1e-5 relative of coordinates of ~100 px).
    gx, gy, g_rotation, _ = GAINS.gains()
    dev = before.rotation - before.rotation.mean()
    assert np.allclose(after.rotation - after.rotation.mean(), g_rotation * dev, atol=1e-5)
    assert after.rotation.mean() == pytest.approx(before.rotation.mean(), abs=1e-5)
    shift = before.translation - before.translation.mean()
    new_shift = after.translation - after.translation.mean()
    assert np.allclose(new_shift.real, gx * shift.real, atol=1e-4)
    assert np.allclose(new_shift.imag, gy * shift.imag, atol=1e-4)
    assert np.allclose(after.local, before.local, atol=1e-4)


def test_streaming_scales_the_stream_band(model_folder, reference, audio):
    generator = MotionGenerator(MotionGenerator.load(model_folder).model, None, CALIBRATION)
    face = list(schema.FACE)
    runs = {}
    for chunk in (7, 10):
        options = MotionOptions(chunk_frames=chunk)
        runs[chunk] = generator.generate(audio, reference, options=options, streaming=True)
    raw = generator.generate(audio, reference, options=MotionOptions(head_gain=1.0),
                             streaming=True)  # fmt: skip
    # The running centre carries over from chunk to chunk, so chunking changes the face no
    # more than it does uncalibrated (the face is chunk-independent: test_motion_pipeline).
    assert np.allclose(runs[7].keypoints[:, face], runs[10].keypoints[:, face], atol=1e-3)
    head = list(HEAD_POINTS)
    template = generator.rest_points(reference.keypoints[0])[head]
    fit = head_fit_mask(reference.keypoints[0, head, 2])
    whole = calibrate_points(_head(raw), template, fit, STREAM_GAINS, FPS, StreamBand())
    assert np.allclose(_head(runs[10]), whole, atol=1e-4)  # float32 pixels (< 160 px): ~1e-5 each


def test_motion_command_takes_a_head_gain(tmp_path, model_folder, capsys):
    code = main(["motion", "--audio", "missing.wav", "--reference-pose", "x.npz", "-o",
                 str(tmp_path / "o.npz"), "--head-gain", "11"])  # fmt: skip
    assert code == 2
    assert "--head-gain must be in [0, 10], got 11" in capsys.readouterr().err


# ---------------------------------------------------------------- fitting the gains


def test_matching_gain_solves_the_pooled_variance_quadratic():
    """``mean_clips var(fixed + g scaled) = truth`` at the returned gain (closed form); with
    nothing fixed it is ``sqrt(truth / mean var(scaled))``; past the cap it is the cap."""
    rng = np.random.default_rng(0)
    fixed = [rng.normal(0, 0.3, 50) for _ in range(4)]
    scaled = [rng.normal(0, 0.1, 50) + 0.5 * f for f in fixed]
    gain = matching_gain(fixed, scaled, 0.5)
    pooled = np.mean([np.var(f + gain * x) for f, x in zip(fixed, scaled, strict=True)])
    assert pooled == pytest.approx(0.5, rel=1e-9)
    zeros = [np.zeros(50) for _ in scaled]
    expected = np.sqrt(0.5 / np.mean([x.var() for x in scaled]))
    assert matching_gain(zeros, scaled, 0.5) == pytest.approx(expected, rel=1e-12)
    assert matching_gain(zeros, scaled, 1e6) == MAX_GAIN


@pytest.fixture(scope="module")
def tiny_corpus_folder(tmp_path_factory):
    return tiny_corpus(tmp_path_factory.getbasetemp())


def _truth_parameters(generator: MotionGenerator, corpus, split: str) -> list[np.ndarray]:
    """Each clip's true rigid head parameters ``[4, T]`` (translations in template IOD),
    from the keypoints of the clips of ``split``."""
    head = list(HEAD_POINTS)
    series = []
    for clip in load_split(corpus, split, 0):
        template = generator.rest_points(clip.reference)[head]
        motion = decompose(clip.keypoints[:, head, :2], template,
                           head_fit_mask(clip.reference[head, 2]))  # fmt: skip
        series.append(normalised(motion, template_iod(template)))
    return series


def test_gains_match_the_truth_of_the_truth_splits(model_folder, tiny_corpus_folder):
    """Fitted on the val clip's predictions against the truth of train + val: the pooled
    variance of the calibrated predictions (as generation calibrates them) equals the
    pooled variance of the train and val truths, for every parameter whose gain is under
    the cap; the target is those clips', not val's alone."""
    generator = MotionGenerator.load(model_folder)
    truths = [s for split in ("train", "val")
              for s in _truth_parameters(generator, tiny_corpus_folder, split)]  # fmt: skip
    variance = np.mean([t.var(axis=1) for t in truths], axis=0)
    val_only = np.mean([t.var(axis=1) for t in _truth_parameters(generator, tiny_corpus_folder,
                                                                  "val")], axis=0)  # fmt: skip
    assert not np.allclose(variance, val_only, rtol=0.05)
    result = calibrate(model_folder, tiny_corpus_folder, "val", truth_splits=("train", "val"))
    matched = 0
    for i, name in enumerate(PARAMETERS):
        for streaming in (False, True):
            gain = getattr(result.gains.mode(streaming), name).gain
            if gain >= MAX_GAIN:
                continue
            mode = "streaming" if streaming else "offline"
            pooled = np.mean([c.calibrated[mode].std[name] ** 2 for c in result.clips])
            assert pooled == pytest.approx(variance[i], rel=0.02), (name, mode)
            matched += 1
    assert matched >= 4


def test_motion_calibrate_command_writes_the_fitted_gains(model_folder, tiny_corpus_folder,
                                                          tmp_path, capsys):  # fmt: skip
    folder = tmp_path / "motion"
    shutil.copytree(model_folder, folder)
    argv = ["motion-calibrate", "--data", str(tiny_corpus_folder), "--model", str(folder)]
    assert main([*argv, "--truth-splits", "train,nope"]) == 2
    err = capsys.readouterr().err
    assert "--truth-splits" in err and len(err.strip().splitlines()) == 1
    assert load_head_calibration(folder) == HeadCalibration()  # nothing written
    assert main(argv) == 0
    assert "head_gain written" in capsys.readouterr().out
    fitted = calibrate(folder, tiny_corpus_folder, "val").gains  # deterministic: seed 0
    assert load_head_calibration(folder) == fitted and not fitted.offline.identity
