"""ClipDataset over a tiny dataset written here: windows, alignment, reference, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image
from safetensors.numpy import save_file

from cospeech.data.clip_reader import FrameCache, read_frames
from cospeech.data.dataset import IDENTITY_REFERENCE, ClipDataset
from cospeech.data.manifest import write_meta
from cospeech.data.prepare import rebuild_manifest
from cospeech.errors import InputError
from cospeech.media.video import read_video, write_video
from cospeech.pose.sequence import PoseSequence

FPS = 25.0
SAMPLES_PER_FRAME = 640  # 16000 / 25
SIDE = 32
FRAMES = 24


def gray(t: int) -> int:
    """Brightness of frame ``t`` of a test clip (survives H.264 within a few levels)."""
    return 20 + 8 * t


def frame_audio(t: int) -> float:
    """Audio value under frame ``t`` (constant over the frame's samples)."""
    return 0.03 * t - 0.35


def write_clip(root, name, frames=FRAMES, audio=True, split="train", meta_extra=None):
    folder = root / name
    folder.mkdir(parents=True)
    video = np.stack([np.full((SIDE, SIDE, 3), gray(t), np.uint8) for t in range(frames)])
    write_video(folder / "video.mp4", video, FPS)
    keypoints = np.zeros((frames, 133, 3), np.float32)
    keypoints[:, :, 0] = np.arange(frames)[:, None]  # x = frame number
    keypoints[:, :, 1] = np.linspace(2, 30, 133)[None]
    keypoints[:, :, 2] = 1.0
    PoseSequence(keypoints, FPS, SIDE, SIDE).save(folder / "pose.npz")
    if audio:
        samples = np.repeat([frame_audio(t) for t in range(frames)], SAMPLES_PER_FRAME)
        soundfile.write(folder / "audio.wav", samples.astype(np.float32), 16000)
    meta = {
        "id": name, "identity": f"spk-{split}", "source": "test", "split": split, "fps": FPS,
        "width": SIDE, "height": SIDE, "frames": frames, "duration": frames / FPS,
        "audio": audio, **(meta_extra or {}),
    }  # fmt: skip
    write_meta(folder, meta)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    write_clip(root, "a")
    write_clip(root, "b", audio=False)
    write_clip(root, "short", frames=5)
    write_clip(root, "held-out", split="test")
    rebuild_manifest(root)
    return root


def frame_gray(video: torch.Tensor) -> np.ndarray:
    """``[3, F, H, W]`` in [-1, 1] -> mean brightness per frame in 0..255."""
    return ((video.mean(dim=(0, 2, 3)) + 1) * 127.5).numpy()


def test_window_shapes_and_alignment(corpus):
    dataset = ClipDataset(corpus, frames=9, seed=3)
    assert len(dataset) == 2 and dataset.skipped == ["short"]
    for index in range(len(dataset)):
        item = dataset[index]
        start = item["start"]
        assert 0 <= start <= FRAMES - 9
        assert item["video"].shape == (3, 9, SIDE, SIDE)
        assert item["pose_maps"].shape == (3, 9, SIDE, SIDE)
        assert item["keypoints"].shape == (9, 133, 3)
        assert item["audio"].shape == (9 * SAMPLES_PER_FRAME,)
        np.testing.assert_allclose(
            frame_gray(item["video"]), [gray(start + k) for k in range(9)], atol=3
        )
        np.testing.assert_array_equal(item["keypoints"][:, 0, 0], np.arange(start, start + 9))
        assert float(item["video"].min()) >= -1 and float(item["video"].max()) <= 1
        audio = item["audio"].numpy().reshape(9, SAMPLES_PER_FRAME)
        if item["has_audio"]:
            expected = np.array([frame_audio(start + k) for k in range(9)])
            np.testing.assert_allclose(audio, np.repeat(expected[:, None], 640, 1), atol=1e-4)
        else:
            assert item["clip"] == "b" and not audio.any()


def test_reference_frame_is_outside_the_window(corpus):
    dataset = ClipDataset(corpus, frames=13, seed=0)
    for epoch in range(6):
        dataset.set_epoch(epoch)
        item = dataset[0]
        ref = item["reference_index"]
        assert not item["start"] <= ref < item["start"] + 13
        assert abs(frame_gray(item["reference"][:, None])[0] - gray(ref)) < 3
        assert float(item["reference_keypoints"][0, 0]) == ref
        assert item["reference_pose_map"].shape == (3, SIDE, SIDE)


def test_windows_are_deterministic_per_seed_and_epoch(corpus):
    first, second = ClipDataset(corpus, frames=5, seed=7), ClipDataset(corpus, frames=5, seed=7)
    starts = []
    for epoch in range(8):
        first.set_epoch(epoch)
        second.set_epoch(epoch)
        a, b = first[0], second[0]
        assert (a["start"], a["reference_index"]) == (b["start"], b["reference_index"])
        # Exact: the same decode and elementwise scaling of the same file region.
        assert torch.equal(a["video"], b["video"]) and torch.equal(a["audio"], b["audio"])
        starts.append(a["start"])
    assert len(set(starts)) > 1  # epochs draw different windows
    other = ClipDataset(corpus, frames=5, seed=8, with_pose_maps=False)
    other_starts = []
    for epoch in range(8):
        other.set_epoch(epoch)
        other_starts.append(other[0]["start"])
    assert other_starts != starts  # another seed, other windows


def test_resize_scales_frames_and_keypoints(corpus):
    item = ClipDataset(corpus, frames=5, size=16, with_audio=False)[0]
    assert item["video"].shape == (3, 5, 16, 16) and "audio" not in item
    np.testing.assert_allclose(item["keypoints"][:, 0, 0], (item["start"] + np.arange(5)) * 0.5)


def test_split_and_frame_count_checks(corpus):
    assert [c.clip_id for c in ClipDataset(corpus, split="test", frames=5).clips] == ["held-out"]
    with pytest.raises(InputError, match="1 \\+ 4k"):
        ClipDataset(corpus, frames=8)
    with pytest.raises(InputError, match="no clip"):
        ClipDataset(corpus, frames=29)


def test_identity_reference_photo(tmp_path):
    photo = np.zeros((64, 48, 3), np.uint8)
    photo[:, :24] = 200
    ident = tmp_path / "identities" / "id0"
    ident.mkdir(parents=True)
    Image.fromarray(photo).save(ident / "reference.png")
    keypoints = np.zeros((1, 133, 3), np.float32)
    keypoints[0, :, :2] = (24.0, 32.0)
    keypoints[0, :, 2] = 1
    PoseSequence(keypoints, 1.0, 48, 64).save(ident / "reference_pose.npz")
    write_clip(
        tmp_path, "c", meta_extra={
            "reference": {
                "image": "identities/id0/reference.png",
                "pose": "identities/id0/reference_pose.npz",
            },
        },
    )  # fmt: skip
    rebuild_manifest(tmp_path)
    item = ClipDataset(tmp_path, frames=5)[0]
    assert item["reference_index"] == IDENTITY_REFERENCE
    assert item["reference"].shape == (3, SIDE, SIDE)
    left, right = item["reference"][0, :, :14].mean(), item["reference"][0, :, 18:].mean()
    assert float(left) > 0.5 and float(right) < -0.9  # the photo's bright left half
    # (24, 32) in a 48 x 64 photo is the middle; in the 32 x 32 output it is (16, 16).
    np.testing.assert_allclose(item["reference_keypoints"][0, :2], [16.0, 16.0])


def test_cached_latents_pick_the_window(corpus, tmp_path):
    latents = np.random.default_rng(0).standard_normal((2, 4, 3, 4, 4)).astype(np.float32)
    save_file({"latents": latents, "starts": np.array([4, 11])}, str(tmp_path / "a.safetensors"))
    dataset = ClipDataset(corpus, frames=9, latents_dir=tmp_path)
    for epoch in range(4):
        dataset.set_epoch(epoch)
        item = dataset[0]
        assert item["clip"] == "a" and item["start"] in (4, 11)
        np.testing.assert_array_equal(item["latents"], latents[[4, 11].index(item["start"])])
        np.testing.assert_array_equal(item["keypoints"][:, 0, 0], np.arange(9) + item["start"])
    assert "latents" not in dataset[1]  # clip b has no cache file
    with pytest.raises(InputError, match="latent frames"):
        ClipDataset(corpus, frames=5, latents_dir=tmp_path)[0]


def test_seeked_window_equals_full_decode(corpus):
    path = corpus / "a" / "video.mp4"
    full, _ = read_video(path)
    np.testing.assert_array_equal(read_frames(path, 17, 5), full[17:22])
    cache = FrameCache(max_bytes=10 * full.nbytes)
    np.testing.assert_array_equal(cache.window(path, full.shape[:3], 3, 4), full[3:7])
    np.testing.assert_array_equal(cache.window(path, full.shape[:3], 20, 4), full[20:24])
    with pytest.raises(InputError, match="decodable"):
        read_frames(path, 22, 5)
