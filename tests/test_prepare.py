"""Real-video preparation: frame filter, clip cutting, crop transform, and a short run on
real media (carphone) next to broken files, resumed, and interrupted mid-clip."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from cospeech.cli import main
from cospeech.data import prepare as prepare_module
from cospeech.data.cropping import CropBox, clip_box
from cospeech.data.filtering import FILTER_PRESETS, UPPER_BODY_POINTS, keep_frames, kept_runs
from cospeech.data.manifest import read_manifest, read_meta
from cospeech.data.prepare import PREPARE_PRESETS, prepare_dataset, source_id, speaker_id
from cospeech.errors import InputError
from cospeech.media.video import VideoWriter, iter_frames, probe, write_video
from cospeech.pose import schema
from cospeech.pose.sequence import PoseSequence
from media_fixture import carphone

# --- filter ---------------------------------------------------------------------------


def frames_with(face: list[float], body: list[float], outside: list[int]) -> np.ndarray:
    """Keypoints ``[T, 133, 3]`` in a 100 x 100 frame: face confidence ``face[t]``, upper-body
    confidence ``body[t]``, ``outside[t]`` upper-body points moved out of the frame."""
    keypoints = np.full((len(face), 133, 3), 50.0, np.float32)
    for t, (f, b, n) in enumerate(zip(face, body, outside, strict=True)):
        keypoints[t, list(schema.FACE), 2] = f
        keypoints[t, list(UPPER_BODY_POINTS), 2] = b
        keypoints[t, list(UPPER_BODY_POINTS[:n]), 0] = -5.0
    return keypoints


def test_paper_filter_thresholds():
    keypoints = frames_with(
        face=[0.95, 0.85, 0.95, 0.95, 0.95, 0.95, 0.91],
        body=[0.9, 0.9, 0.75, 0.9, 0.9, 1.0, 0.81],
        outside=[0, 0, 0, 1, 2, 0, 0],
    )
    keep = keep_frames(keypoints, 100, 100, FILTER_PRESETS["paper"])
    # frame 1: face too unsure; 2: body too unsure; 4: 2 of 11 points out of view (82 %).
    np.testing.assert_array_equal(keep, [True, False, False, True, False, True, True])
    face_only = keep_frames(keypoints, 100, 100, FILTER_PRESETS["face-only"])
    np.testing.assert_array_equal(face_only, [True, False, True, True, True, True, True])


def test_visibility_counts_unsure_points_as_hidden():
    keypoints = frames_with(face=[1.0, 1.0], body=[1.0, 1.0], outside=[0, 0])
    keypoints[0, list(UPPER_BODY_POINTS[:2]), 2] = 0.3  # mean 0.87 > 0.8, but 2 points hidden
    keep = keep_frames(keypoints, 100, 100, FILTER_PRESETS["paper"])
    np.testing.assert_array_equal(keep, [False, True])


def test_kept_runs_cut_clips():
    keep = np.zeros(40, bool)
    keep[2:5] = True  # too short
    keep[8:31] = True  # 23 frames: pieces 8-18, 18-28, and 28-31 is too short
    keep[35:40] = True  # reaches the end
    assert kept_runs(keep, min_frames=4, max_frames=10) == [(8, 18), (18, 28), (35, 40)]
    assert kept_runs(keep, min_frames=3, max_frames=100) == [(2, 5), (8, 31), (35, 40)]
    with pytest.raises(InputError):
        kept_runs(keep, min_frames=5, max_frames=4)


# --- crop -----------------------------------------------------------------------------


def test_crop_moves_keypoints_with_the_pixels():
    frame = np.zeros((60, 80, 3), np.uint8)
    frame[21, 47] = 255  # covers x in [47, 48), y in [21, 22): centre (47.5, 21.5)
    box = CropBox(x0=40, y0=10, side=20)
    crop = box.crop(frame, size=40)
    point = box.transform(np.array([[47.5, 21.5, 0.7]]), size=40)[0]
    np.testing.assert_allclose(point, [15.0, 23.0, 0.7])  # (47.5 - 40) * 2, (21.5 - 10) * 2
    rows, cols = np.mgrid[0:40, 0:40] + 0.5
    weight = crop[..., 0].astype(float)
    centroid = [(weight * cols).sum() / weight.sum(), (weight * rows).sum() / weight.sum()]
    np.testing.assert_allclose(centroid, point[:2], atol=1e-6)


def test_crop_pads_outside_the_frame():
    frame = np.full((30, 40, 3), 200, np.uint8)
    crop = CropBox(x0=-10, y0=-5, side=50).crop(frame, size=50)
    assert (crop[5:35, 10:50] == 200).all() and (crop[:5] == 0).all() and (crop[:, :10] == 0).all()
    assert (crop[35:] == 0).all()


def test_clip_box_is_square_shifted_in_or_centred():
    keypoints = np.zeros((2, 133, 3), np.float32)
    face = list(schema.FACE)
    keypoints[:, face, 2] = 1.0
    keypoints[0, face, :2] = (10.0, 20.0)
    keypoints[1, face, :2] = (30.0, 60.0)  # extent over the clip: x 10..30, y 20..60 (40)
    keypoints[0, face[0], 2] = 0.0  # unsure points do not count
    keypoints[0, face[0], :2] = (500.0, 500.0)
    box = clip_box(keypoints, 200, 100, schema.FACE, margin=0.25, min_confidence=0.5)
    assert box == CropBox(x0=0, y0=10, side=60)  # centre (20, 40), side 60; x shifted in
    wide = clip_box(keypoints, 200, 50, schema.FACE, margin=0.25, min_confidence=0.5)
    assert (wide.y0, wide.side) == (-5, 60)  # taller than the frame: centred, padded


def test_names_of_sources():
    root = Path("/videos")
    assert source_id(root / "talks" / "ann_01 (1).mp4", root) == "talks__ann_01__1_"
    assert speaker_id(Path("ann_01.mp4"), "_") == "ann" and speaker_id(Path("ann_01.mp4"), "") == (
        "ann_01"
    )


# --- real media -----------------------------------------------------------------------

SOURCE_FRAMES = 12


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    """spk1 (carphone frames 0-11 + a tone in the first half), spk2 (frames 12-23, no
    audio), a truncated mp4 and a text file named .mp4."""
    folder = tmp_path_factory.mktemp("sources")
    frames = []
    for frame in iter_frames(carphone()):
        frames.append(frame)
        if len(frames) == 2 * SOURCE_FRAMES:
            break
    fps = 25.0
    samples = int(SOURCE_FRAMES / fps * 16000)
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(samples) / 16000).astype(np.float32)
    tone[samples // 2 :] = 0
    write_video(folder / "spk1_take.mp4", np.stack(frames[:SOURCE_FRAMES]), fps, audio=tone)
    write_video(folder / "spk2_take.mp4", np.stack(frames[SOURCE_FRAMES:]), fps)
    data = carphone().read_bytes()
    (folder / "broken_truncated.mp4").write_bytes(data[: len(data) // 2])
    (folder / "notes_fake.mp4").write_text("this is not a video\n")
    return folder


CONFIG = dataclasses.replace(PREPARE_PRESETS["face-only"], size=64, min_frames=6)


def clip_folders(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))


def test_prepare_real_media_with_broken_files_then_resume(sources, tmp_path):
    out = tmp_path / "dataset"
    summary = prepare_dataset(sources, out, CONFIG, progress=False)
    assert (summary.sources, summary.processed, summary.clips_written) == (4, 2, 2)
    assert (summary.frames_kept, summary.frames_total) == (24, 24)
    failed = {Path(source).name: reason for source, reason in summary.failures}
    assert set(failed) == {"broken_truncated.mp4", "notes_fake.mp4"}
    assert all("cannot be opened" in reason for reason in failed.values())
    text = "\n".join(summary.lines())
    assert "broken_truncated.mp4" in text and "notes_fake.mp4" in text and "spk2" in text

    entries = {e.id: e for e in read_manifest(out)}
    assert set(entries) == {"spk1_take-000000", "spk2_take-000000"}
    for clip in clip_folders(out):
        meta = read_meta(clip)
        assert (meta["width"], meta["height"], meta["frames"]) == (64, 64, SOURCE_FRAMES)
        assert meta["source_frames"] == [0, SOURCE_FRAMES] and meta["split"] == "train"
        info = probe(clip / "video.mp4")
        assert (info.frames, info.width, info.height, info.video_codec) == (12, 64, 64, "h264")
        pose = PoseSequence.load(clip / "pose.npz")
        assert (len(pose), pose.width, pose.height) == (12, 64, 64)
        face = pose.keypoints[:, list(schema.FACE)]
        assert (face[..., :2] > 0).all() and (face[..., :2] < 64).all()  # the face is in view
    spk1, spk2 = out / "spk1_take-000000", out / "spk2_take-000000"
    assert read_meta(spk1)["identity"] == "spk1" and read_meta(spk1)["audio"] is True
    assert read_meta(spk2)["audio"] is False and not (spk2 / "audio.wav").exists()
    audio, rate = soundfile.read(spk1 / "audio.wav", dtype="float32")
    assert rate == 16000 and len(audio) == round(SOURCE_FRAMES / 25 * 16000)
    half = len(audio) // 2
    assert np.abs(audio[200 : half - 200]).mean() > 0.2  # the tone ...
    assert np.abs(audio[half + 400 :]).max() < 0.05  # ... stops half way, as in the source

    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = prepare_dataset(sources, out, CONFIG, progress=False)
    assert (again.already_done, again.processed, again.clips_written) == (2, 0, 0)
    assert len(again.failures) == 2  # broken files are retried and reported again
    for path, stamp in stamps.items():
        if path.name != "manifest.jsonl":
            assert path.stat().st_mtime_ns == stamp, path
    assert len(read_manifest(out)) == 2


def test_a_failure_mid_clip_leaves_nothing_half_written(sources, tmp_path, monkeypatch):
    class FailingWriter(VideoWriter):
        def add(self, frame):
            if self.frames_written == 3:
                raise OSError("disk full")
            super().add(frame)

    source = sources / "spk2_take.mp4"
    out = tmp_path / "dataset"
    monkeypatch.setattr(prepare_module, "VideoWriter", FailingWriter)
    summary = prepare_dataset(source, out, CONFIG, progress=False)
    assert summary.failures == [(str(source), "OSError: disk full")]
    # Nothing was prepared: the new dataset folder is removed (nothing marked done, so the
    # source is retried next time).
    assert not out.exists()

    monkeypatch.setattr(prepare_module, "VideoWriter", VideoWriter)
    summary = prepare_dataset(source, out, CONFIG, progress=False)
    assert summary.failures == [] and [p.name for p in clip_folders(out)] == ["spk2_take-000000"]


def test_data_prepare_command(sources, tmp_path, capsys):
    out = tmp_path / "dataset"
    args = ["data", "prepare", str(sources / "spk2_take.mp4"), "--out", str(out)]
    assert (
        main([*args, "--filter", "face-only", "--size", "32", "--min-frames", "8", "--quiet"]) == 0
    )
    printed = capsys.readouterr().out
    assert "clips written: 1" in printed and "frames kept: 12 of 12" in printed
    assert json.loads((out / "manifest.jsonl").read_text())["identity"] == "spk2"
    assert main([*args, "--size", "33"]) == 2  # H.264 needs an even size
    assert main(["data", "prepare", str(tmp_path / "nothing"), "--out", str(out)]) == 2
