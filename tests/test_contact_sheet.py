"""The generate contact sheet: its bands, the mouth band cut around the lips, and the chart's
mouth line, which is ``cospeech eval video``'s landmark mouth opening (dlib points 62/66 over
the inter-ocular distance) with gaps where dlib finds no face."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from cospeech.audio.espeak import espeak_available
from cospeech.data.synth.colours import MOUTH_INTERIOR_RGB
from cospeech.eval.contact_sheet import (
    CHART_HEIGHT,
    MOUTH_RGB,
    contact_sheet,
    detector_upsample,
    mouth_track,
    zoom_for,
)
from cospeech.eval.video.faces import FaceAnalyzer, FaceConfig
from cospeech.eval.video.sync import estimate_sync, loudness_envelope
from cospeech.media.video import read_video
from cospeech.pose import schema
from cospeech.pose.face68 import mouth_opening

SAMPLE_RATE = 16000
MARGIN = 8  # the chart's top and bottom margin, pixels


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    return FaceAnalyzer(FaceConfig(upsample=1), descriptors=False)


def _keypoints(count: int, lips: tuple[float, float]) -> np.ndarray:
    """Driving keypoints ``[count, 133, 3]``: the lips at ``lips``, no wrists (NaN, so the
    chart holds no wrist lines and the red line is alone)."""
    keypoints = np.zeros((count, schema.NUM_KEYPOINTS, 3), np.float32)
    keypoints[:, list(schema.FACE_OUTER_LIPS)] = (*lips, 1.0)
    keypoints[:, [schema.LEFT_WRIST, schema.RIGHT_WRIST], :2] = np.nan
    return keypoints


def _chart(sheet: np.ndarray) -> np.ndarray:
    return sheet[-CHART_HEIGHT:]


def _red(chart: np.ndarray) -> np.ndarray:
    """``[H, W]`` True where the chart is (nearly) the mouth line's colour."""
    return np.linalg.norm(chart.astype(float) - MOUTH_RGB, axis=-1) < 60


def test_sheet_has_frames_mouths_and_chart_and_the_mouth_band_is_centred_on_the_lips(analyzer):
    count, size, columns = 4, 32, 4
    frames = np.full((count, size, size, 3), 200, np.uint8)
    frames[2, 14:18, 12:16] = MOUTH_INTERIOR_RGB  # an open mouth in frame 2 only
    keypoints = np.zeros((count, schema.NUM_KEYPOINTS, 3), np.float32)
    keypoints[:, list(schema.FACE_OUTER_LIPS)] = (14.0, 16.0, 1.0)  # lip centre (14, 16)
    keypoints[:, schema.LEFT_WRIST] = (8.0, 30.0, 1.0)
    keypoints[:, schema.RIGHT_WRIST] = (24.0, 30.0, 1.0)
    audio = np.zeros(16000, np.float32)
    sheet = contact_sheet(frames, keypoints, audio, 16000, 25.0, columns, analyzer)
    zoom = zoom_for(size)
    assert zoom == 8 and zoom_for(128) == 2 and zoom_for(256) == zoom_for(300) == 1
    cell = size * zoom
    assert sheet.shape == (size * zoom + cell + CHART_HEIGHT, cell * columns, 3)
    mouths = sheet[size * zoom : size * zoom + cell]
    centre = mouths[cell // 2, 2 * cell + cell // 2]  # column 2 shows frame 2
    np.testing.assert_array_equal(centre, MOUTH_INTERIOR_RGB)
    assert not (mouths[:, :cell] == MOUTH_INTERIOR_RGB).all(axis=-1).any()  # frame 0: closed
    assert not _red(_chart(sheet)).any()  # no face in grey squares: no mouth line at all


@pytest.fixture(scope="module")
def corpus_clip(tmp_path_factory) -> tuple[np.ndarray, np.ndarray, float]:
    """``(frames [12, 256, 256, 3], speech, fps)``: the start of a synthetic-corpus clip with
    frame 5 blanked (no face there)."""
    if not espeak_available():
        pytest.skip("libespeak-ng not installed")
    from cospeech.data.synth.corpus import CorpusConfig, write_corpus

    root = tmp_path_factory.mktemp("sheet-corpus")
    config = CorpusConfig(clips=1, seed=5, size=256, identities=1, min_words=5, max_words=8,
                          min_duration_s=2.0, max_duration_s=4.0)  # fmt: skip
    clip = root / write_corpus(root, config)[0].path
    frames, fps = read_video(clip / "video.mp4")
    frames = frames[:12].copy()
    frames[5] = 0
    speech, rate = soundfile.read(clip / "audio.wav", dtype="float32")
    assert rate == SAMPLE_RATE
    return frames, speech, fps


def test_mouth_line_is_eval_videos_mouth_opening_with_a_gap_where_no_face(corpus_clip, analyzer):
    frames, speech, fps = corpus_clip
    faces = [analyzer(frame) for frame in frames]
    assert faces[5] is None and all(f is not None for i, f in enumerate(faces) if i != 5)
    landmarks = np.stack([np.full((68, 2), np.nan) if f is None else f.landmarks for f in faces])
    expected = mouth_opening(landmarks)
    loudness = loudness_envelope(speech, SAMPLE_RATE, fps, len(frames))
    track = mouth_track(frames, speech, SAMPLE_RATE, fps, analyzer)
    # the same dlib calls on the same frames and the same function: bit-exact
    np.testing.assert_array_equal(track.opening, expected)
    np.testing.assert_array_equal(track.loudness, loudness)
    sync = estimate_sync(expected, loudness)
    assert track.sync.offset == sync.offset
    np.testing.assert_array_equal(track.sync.correlations, sync.correlations)
    assert "face found in 11 of 12 frames" in track.legend()
    assert f"r vs loudness {sync.zero_offset_correlation:.2f}" in track.legend()

    size, columns = frames.shape[1], 4
    keypoints = _keypoints(len(frames), (size / 2, size * 0.6))
    chart = _chart(contact_sheet(frames, keypoints, speech, SAMPLE_RATE, fps, columns, analyzer))
    red = _red(chart)
    xs = np.linspace(0, chart.shape[1] - 1, len(frames)).round().astype(int)
    found = expected[np.isfinite(expected)]
    scaled = (expected - found.min()) / (found.max() - found.min())
    ys = CHART_HEIGHT - MARGIN - scaled * (CHART_HEIGHT - 2 * MARGIN)
    for index, (x, y) in enumerate(zip(xs, ys, strict=True)):
        if index == 5:  # the gap: nothing red between the neighbours' columns
            assert not red[:, xs[4] + 3 : xs[6] - 2].any()
            continue
        y = round(y)  # the line passes through each frame's value (+-2 px: width, rounding)
        assert red[max(0, y - 2) : y + 3, max(0, x - 2) : x + 3].any(), index


def test_still_astronaut_gives_a_flat_line_with_the_face_found(analyzer):
    skimage_data = pytest.importorskip("skimage.data")
    photo = np.ascontiguousarray(skimage_data.astronaut()[::2, ::2])  # 256 x 256
    frames = np.stack([photo] * 3)
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, SAMPLE_RATE).astype(np.float32)
    track = mouth_track(frames, audio, SAMPLE_RATE, 25.0, analyzer)
    assert np.isfinite(track.opening).all()
    assert np.ptp(track.opening) == 0  # dlib on one image three times: the same landmarks
    assert "face found in 3 of 3 frames" in track.legend()
    keypoints = _keypoints(len(frames), (128.0, 150.0))
    chart = _chart(contact_sheet(frames, keypoints, audio, SAMPLE_RATE, 25.0, 3, analyzer))
    rows = np.flatnonzero(_red(chart).any(axis=1))
    assert rows.size and rows.max() - rows.min() <= 3  # flat: one 2-px line, anti-aliased
    assert abs(rows.mean() - (CHART_HEIGHT - MARGIN)) <= 2  # a constant is drawn at the bottom


@pytest.mark.parametrize(
    ("height", "width", "upsample"),
    [(128, 128, 3), (100, 300, 3), (256, 256, 2), (512, 700, 1), (1080, 1920, 0), (4, 4, 3)],
)
def test_detector_upsample_doubles_the_shorter_side_up_to_1024(height, width, upsample):
    assert detector_upsample(height, width) == upsample
    assert min(height, width) * 2**upsample >= 1024 or upsample == 3
