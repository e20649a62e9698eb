"""Keypoint extraction: mapping tables, smoothing, the ONNX pre/post-processing, MediaPipe on
real frames (carphone, a few frames), and the ``cospeech pose`` commands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cospeech.cli import main
from cospeech.errors import InputError
from cospeech.media.video import iter_frames, probe, write_video
from cospeech.pose import schema
from cospeech.pose.extract import extract_pose, open_extractor
from cospeech.pose.extract.mapping import (
    FACE_MESH_LANDMARKS,
    FACE_MESH_TO_IBUG68,
    HAND_TO_COCO_HAND,
    POSE_LANDMARKS,
    POSE_TO_BODY,
    POSE_TO_FEET,
    holistic_to_wholebody,
)
from cospeech.pose.extract.mediapipe_backend import MediaPipePersonBox
from cospeech.pose.extract.onnx_backend import (
    OnnxWholeBody,
    back_transform,
    box_center_scale,
    decode_simcc,
    fit_aspect,
    warp_matrix,
)
from cospeech.pose.extract.smoothing import smooth_keypoints
from cospeech.pose.sequence import PoseSequence
from media_fixture import carphone

CARPHONE_FRAMES = 6


@pytest.fixture(scope="module")
def carphone_short(tmp_path_factory) -> Path:
    """The first few frames of carphone (a real talking head, 176 x 144, no audio)."""
    frames = []
    for frame in iter_frames(carphone()):
        frames.append(frame)
        if len(frames) == CARPHONE_FRAMES:
            break
    path = tmp_path_factory.mktemp("carphone") / "carphone.mp4"
    write_video(path, np.stack(frames), probe(carphone()).fps)
    return path


# --- mapping tables -------------------------------------------------------------------


def test_pose_tables_cover_body_and_feet_once():
    assert [coco for coco, _ in POSE_TO_BODY] == list(schema.BODY)
    assert [coco for coco, _ in POSE_TO_FEET] == list(schema.FEET)
    body_sources = [mp for _, mp in POSE_TO_BODY]
    assert len(set(body_sources)) == 17 and all(0 <= i < POSE_LANDMARKS for i in body_sources)
    feet_sources = [mp for _, mp in POSE_TO_FEET]
    assert set(feet_sources).isdisjoint(body_sources)
    assert all(0 <= i < POSE_LANDMARKS for i in feet_sources)
    # Only the documented toe point is shared (big and small toe of each foot).
    assert len(feet_sources) - len(set(feet_sources)) == 2


def test_face_table_is_68_distinct_mesh_points():
    assert len(FACE_MESH_TO_IBUG68) == len(schema.FACE) == 68
    assert len(set(FACE_MESH_TO_IBUG68)) == 68  # no two iBUG points from the same source
    for sources in FACE_MESH_TO_IBUG68:
        assert 1 <= len(sources) == len(set(sources)) <= 2
        assert all(0 <= i < 468 for i in sources)  # the refined iris points are not needed
    assert tuple(range(21)) == HAND_TO_COCO_HAND


def test_holistic_to_wholebody_places_every_part():
    rng = np.random.default_rng(0)
    pose = rng.uniform(0, 100, (POSE_LANDMARKS, 3)).astype(np.float32)
    pose[:, 2] = np.linspace(-0.1, 1.2, POSE_LANDMARKS)  # visibilities outside [0, 1] too
    face = rng.uniform(0, 100, (FACE_MESH_LANDMARKS, 2)).astype(np.float32)
    left = rng.uniform(0, 100, (21, 2)).astype(np.float32)
    out = holistic_to_wholebody(pose, face, left, None)
    assert out.shape == (133, 3)
    np.testing.assert_array_equal(out[schema.LEFT_SHOULDER, :2], pose[11, :2])
    np.testing.assert_array_equal(out[schema.RIGHT_WRIST, :2], pose[16, :2])
    np.testing.assert_array_equal(out[20, :2], pose[32, :2])  # right big toe <- foot index
    assert out[schema.NOSE, 2] == 0.0 and out[16, 2] == pytest.approx(min(1.0, pose[28, 2]))
    chin = schema.FACE_OFFSET + 8
    np.testing.assert_allclose(out[chin, :2], face[152])
    np.testing.assert_allclose(out[schema.FACE_OFFSET + 3, :2], (face[132] + face[58]) / 2)
    np.testing.assert_array_equal(out[list(schema.LEFT_HAND), :2], left)
    assert (out[list(schema.FACE) + list(schema.LEFT_HAND), 2] == 1).all()
    assert (out[list(schema.RIGHT_HAND)] == 0).all()  # not detected: confidence 0


# --- smoothing ------------------------------------------------------------------------


def test_one_euro_removes_jitter_and_restarts_after_gaps():
    rng = np.random.default_rng(1)
    frames = 200
    keypoints = np.zeros((frames, 2, 3), np.float32)
    keypoints[:, :, :2] = 50 + rng.normal(0, 1.0, (frames, 2, 2))
    keypoints[:, :, 2] = 1
    keypoints[100:110, 1, 2] = 0  # point 1 missing for 10 frames ...
    keypoints[110:, 1, :2] += 40  # ... and back somewhere else
    out = smooth_keypoints(keypoints, fps=30, height=144)
    assert out[20:, 0, :2].std() < 0.8 * keypoints[20:, 0, :2].std()
    np.testing.assert_array_equal(out[:, :, 2], keypoints[:, :, 2])
    np.testing.assert_array_equal(out[100:110, 1], keypoints[100:110, 1])  # untouched
    np.testing.assert_array_equal(out[110, 1, :2], keypoints[110, 1, :2])  # fresh start
    assert abs(out[150:, 1, :2].mean() - 90) < 1


def test_one_euro_follows_fast_motion():
    t = np.arange(60) / 30
    keypoints = np.zeros((60, 1, 3), np.float32)
    keypoints[:, 0, 0] = 72 + 20 * np.sin(2 * np.pi * 3 * t)  # a 3 Hz mouth-like motion
    keypoints[:, 0, 2] = 1
    out = smooth_keypoints(keypoints, fps=30, height=144)
    assert np.abs(out[30:, 0, 0] - keypoints[30:, 0, 0]).max() < 5  # follows, little lag
    assert out[30:, 0, 0].max() - out[30:, 0, 0].min() > 30  # amplitude kept


# --- ONNX pre/post-processing ---------------------------------------------------------


def test_decode_simcc_and_back_transform():
    simcc_x = np.zeros((3, 20), np.float32)
    simcc_y = np.zeros((3, 30), np.float32)
    simcc_x[[0, 1, 2], [4, 9, 19]] = [0.9, 0.5, 0.7]
    simcc_y[2] = -1.0
    simcc_y[[0, 1, 2], [0, 13, 29]] = [0.8, 0.6, -0.2]
    locations, scores = decode_simcc(simcc_x, simcc_y, split_ratio=2.0)
    np.testing.assert_array_equal(locations, [[2, 0], [4.5, 6.5], [9.5, 14.5]])
    np.testing.assert_allclose(scores, [0.8, 0.5, -0.2])  # the smaller of the two maxima

    center, scale = box_center_scale((10, 20, 70, 100), padding=1.25)
    np.testing.assert_allclose(center, [40, 60])
    scale = fit_aspect(scale, 288, 384)
    np.testing.assert_allclose(scale, [75, 100])  # height bound: width grown to 3:4
    matrix = warp_matrix(center, scale, 288, 384)
    frame_points = np.random.default_rng(2).uniform(0, 120, (10, 2))
    model_points = frame_points @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(back_transform(model_points, center, scale, (288, 384)),
                               frame_points, atol=1e-9)  # fmt: skip


class _BrightestPixel(torch.nn.Module):
    """SimCC outputs whose peaks sit at the brightest column/row of the red channel."""

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        red = image[:, 0]
        x = torch.sigmoid(red.amax(dim=1)).repeat_interleave(2, dim=-1)
        y = torch.sigmoid(red.amax(dim=2)).repeat_interleave(2, dim=-1)
        return x[:, None].expand(-1, 133, -1), y[:, None].expand(-1, 133, -1)


@pytest.fixture(scope="module")
def simcc_model(tmp_path_factory) -> Path:
    pytest.importorskip("onnx")
    path = tmp_path_factory.mktemp("onnx") / "simcc.onnx"
    torch.onnx.export(
        _BrightestPixel(), (torch.zeros(1, 3, 64, 48),), str(path),
        input_names=["input"], output_names=["simcc_x", "simcc_y"], dynamo=False,
    )  # fmt: skip
    return path


def test_onnx_model_finds_a_dot_in_frame_pixels(simcc_model):
    model = OnnxWholeBody(simcc_model)
    assert (model.input_width, model.input_height) == (48, 64)
    frame = np.zeros((120, 100, 3), np.uint8)
    frame[61, 37] = 255  # pixel (row 61, column 37) covers x in [37, 38), y in [61, 62)
    # A box centred on (38, 61) whose padded size is 24 x 32: the crop is a 2x zoom whose
    # samples fall on whole source pixels, so the dot's centre is recovered exactly.
    box = (38 - 9.6, 61 - 12.8, 38 + 9.6, 61 + 12.8)
    keypoints = model(frame, box)
    np.testing.assert_allclose(keypoints[:, :2], np.tile([37.5, 61.5], (133, 1)), atol=1e-4)
    white = (255 - 123.675) / 58.395  # the dot after mean/std normalisation
    np.testing.assert_allclose(keypoints[:, 2], 1 / (1 + np.exp(-white)), rtol=1e-5)


def test_onnx_model_on_the_whole_frame(simcc_model):
    rows, cols = np.mgrid[0:120, 0:100] + 0.5  # pixel centres
    blob = 255 * np.exp(-((cols - 37.5) ** 2 + (rows - 61.5) ** 2) / (2 * 4.0**2))
    frame = np.repeat(blob[..., None], 3, axis=2).round().astype(np.uint8)  # peak at (37.5, 61.5)
    keypoints = OnnxWholeBody(simcc_model)(frame)  # no box: the whole frame, 2.6 px per input px
    np.testing.assert_allclose(keypoints[:, :2], np.tile([37.5, 61.5], (133, 1)), atol=1.5)


def test_onnx_backend_on_a_real_video(simcc_model, carphone_short, tmp_path):
    out = tmp_path / "pose.npz"
    args = ["pose", "extract", str(carphone_short), "-o", str(out), "--backend", "onnx"]
    assert main([*args, "--pose-model", str(simcc_model), "--no-smoothing"]) == 0
    pose = PoseSequence.load(out)
    assert (len(pose), pose.width, pose.height) == (CARPHONE_FRAMES, 176, 144)
    # Each frame went through the model on the box MediaPipe pose found for it.
    model = OnnxWholeBody(simcc_model)
    with MediaPipePersonBox() as boxes:
        for frame, keypoints in zip(iter_frames(carphone_short), pose.keypoints, strict=True):
            box = boxes(frame)
            assert box is not None and box[2] - box[0] > 50  # the person, not a speck
            # Exact: the same warp and ONNX call on the same frame and box (max, sigmoid).
            np.testing.assert_array_equal(keypoints, model(frame, box))


def test_onnx_backend_rejects_bad_models(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        OnnxWholeBody(tmp_path / "missing.onnx")
    (tmp_path / "bad.onnx").write_text("not a model")
    with pytest.raises(InputError, match="not a loadable"):
        OnnxWholeBody(tmp_path / "bad.onnx")
    with pytest.raises(InputError, match="--pose-model"):
        open_extractor("onnx")


# --- MediaPipe on real frames -------------------------------------------------------------


def test_mediapipe_on_carphone_puts_the_face_where_it_is(carphone_short):
    pose = extract_pose(carphone_short)
    assert (len(pose), pose.width, pose.height) == (CARPHONE_FRAMES, 176, 144)
    face = pose.keypoints[:, list(schema.FACE)]
    assert (face[..., 2] == 1).all()  # the face is found in every frame
    jaw, nose_tip = face[:, :17], face[:, 30]
    right_eye, left_eye = face[:, 36:42].mean(axis=1), face[:, 42:48].mean(axis=1)
    mouth = face[:, 48:68].mean(axis=1)
    # The person faces the camera: their right (iBUG 0, 36-41) is on the image's left.
    assert (jaw[:, 0, 0] < jaw[:, 16, 0]).all() and (right_eye[:, 0] < left_eye[:, 0]).all()
    assert (right_eye[:, 1] < nose_tip[:, 1]).all() and (nose_tip[:, 1] < mouth[:, 1]).all()
    assert (mouth[:, 1] < jaw[:, 8, 1]).all()  # the chin is below the mouth
    # BlazePose's nose (COCO 0) agrees with the face mesh's nose tip (iBUG 30).
    face_height = jaw[:, 8, 1] - face[:, 19:25, 1].min(axis=1)
    gap = np.linalg.norm(pose.keypoints[:, schema.NOSE, :2] - nose_tip[:, :2], axis=1)
    assert (gap < 0.15 * face_height).all()
    assert (pose.keypoints[:, schema.LEFT_SHOULDER, 2] > 0.5).all()


def test_photo_gives_one_frame(tmp_path):
    skimage_data = pytest.importorskip("skimage.data")
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(photo)
    pose = extract_pose(photo)
    assert (len(pose), pose.width, pose.height) == (1, 512, 512)
    face = pose.keypoints[0, list(schema.FACE)]
    assert (face[:, 2] == 1).all()
    # The astronaut's face is in the upper middle of the photo.
    assert 150 < face[:, 0].mean() < 300 and 80 < face[:, 1].mean() < 260


# --- commands -------------------------------------------------------------------------


def test_pose_extract_and_draw_commands(carphone_short, tmp_path, capsys):
    out = tmp_path / "pose.npz"
    assert main(["pose", "extract", str(carphone_short), "-o", str(out)]) == 0
    pose = PoseSequence.load(out)
    assert len(pose) == CARPHONE_FRAMES

    video = tmp_path / "drawn.mp4"
    assert main(["pose", "draw", str(out), "--video", str(carphone_short), "-o", str(video)]) == 0
    info = probe(video)
    assert (info.frames, info.width, info.height) == (CARPHONE_FRAMES, 176, 144)

    sheet = tmp_path / "sheet.png"
    args = [
        "pose",
        "draw",
        str(out),
        "-o",
        str(sheet),
        "--sheet-columns",
        "3",
        "--sheet-width",
        "88",
    ]
    assert main(args) == 0
    assert Image.open(sheet).size == (3 * 88, 2 * 72)  # 6 frames, 3 columns, 176:144 kept

    assert main(["pose", "extract", str(carphone_short), "-o", str(tmp_path / "x.txt")]) == 2
    assert main(["pose", "extract", str(tmp_path / "none.mp4"), "-o", str(out)]) == 2
    assert "error" in capsys.readouterr().err
