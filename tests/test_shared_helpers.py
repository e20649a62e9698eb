"""The helpers every package shares: latent geometry, pixel conversion, image grids and
writes, output checks, device choice, the correlation of two series."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from cospeech.atomic import check_folder, check_output, make_folder
from cospeech.device import resolve_device
from cospeech.errors import InputError
from cospeech.latent_geometry import (
    SPACE_STRIDE,
    TIME_STRIDE,
    latent_frame_ranges,
    latent_frames,
    video_frames,
)
from cospeech.media.image import evenly_spaced, image_grid, pad_to_even, tile_height, write_image
from cospeech.media.pixels import pixels_to_tensor, tensor_to_pixels
from cospeech.models.vae import VideoVAE
from cospeech.motion.metrics import correlation


# ------------------------------------------------------------------------ latent geometry
def test_both_vaes_share_the_one_geometry():
    assert (VideoVAE.time_stride, VideoVAE.space_stride) == (TIME_STRIDE, SPACE_STRIDE) == (4, 8)


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_latent_frames_count_the_causal_groups(stride):
    for frames in range(1, 40):
        # frame 0 alone, then groups of `stride` frames; the last group may be partial
        groups = 1 + math.ceil((frames - 1) / stride)
        assert latent_frames(frames, stride, partial=True) == groups
        ranges = latent_frame_ranges(frames, stride)
        assert len(ranges) == groups and ranges[0] == (0, 1)
        assert [a for a, _ in ranges[1:]] == [b for _, b in ranges[:-1]]  # a partition
        assert ranges[-1][1] == frames
        if (frames - 1) % stride == 0:
            assert latent_frames(frames, stride) == groups
            assert video_frames(groups, stride) == frames
        else:
            with pytest.raises(InputError, match=f"needs 1 \\+ {stride}k frames, got {frames}"):
                latent_frames(frames, stride)


def test_latent_frames_errors_name_the_nearest_valid_count():
    assert latent_frames(81) == 21 and video_frames(21) == 81
    with pytest.raises(InputError, match=r"got 83 \(nearest valid: 81\)"):
        latent_frames(83)
    for bad in (0, -3):
        with pytest.raises(InputError, match="at least one frame"):
            latent_frames(bad, partial=True)
    with pytest.raises(InputError, match="at least one latent frame"):
        video_frames(0)


# ------------------------------------------------------------------------ pixels
def test_every_uint8_value_survives_the_round_trip():
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=-1)
    values = pixels_to_tensor(pixels)
    assert values.shape == (3, 1, 16, 16) and values.dtype == torch.float32
    expected = torch.from_numpy(pixels.astype(np.float64) / 127.5 - 1).permute(3, 0, 1, 2)
    torch.testing.assert_close(values.double(), expected, rtol=0, atol=1e-7)  # fp32 rounding
    np.testing.assert_array_equal(tensor_to_pixels(values), pixels)


def test_tensor_to_pixels_clamps_and_rounds():
    values = torch.tensor([-3.0, -1.0, 0.0, 0.004, 1.0, 7.0]).view(1, 6)
    values = values.expand(3, 6)  # [3, W]: channels first
    assert tensor_to_pixels(values)[:, 0].tolist() == [0, 0, 128, 128, 255, 255]


# ------------------------------------------------------------------------ image grids
def _tiles(count: int, height: int = 6, width: int = 8) -> list[np.ndarray]:
    rng = np.random.default_rng(count)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def test_image_grid_places_tiles_row_by_row_and_pads_with_black():
    tiles = _tiles(5)
    grid = image_grid(iter(tiles), columns=3)
    assert grid.shape == (12, 24, 3)
    for index, tile in enumerate(tiles):
        row, column = divmod(index, 3)
        np.testing.assert_array_equal(
            grid[row * 6 : row * 6 + 6, column * 8 : column * 8 + 8], tile
        )
    assert not grid[6:, 16:].any()  # the sixth place


def test_image_grid_none_tiles_are_black_and_tiles_shrink_on_arrival():
    tiles = _tiles(2, height=30, width=40)
    grid = image_grid([tiles[0], None, tiles[1]], columns=2, tile_width=20)
    assert tile_height(40, 30, 20) == 15 and grid.shape == (30, 40, 3)
    small = [cv2.resize(t, (20, 15), interpolation=cv2.INTER_AREA) for t in tiles]
    np.testing.assert_array_equal(grid[:15, :20], small[0])
    np.testing.assert_array_equal(grid[15:, :20], small[1])
    assert not grid[:15, 20:].any() and not grid[15:, 20:].any()
    assert tile_height(1000, 1, 10) == 1  # never zero rows


@pytest.mark.parametrize("tiles, columns", [([], 2), ([None], 2), (_tiles(1), 0)])
def test_image_grid_refuses_an_empty_grid(tiles, columns):
    with pytest.raises(InputError, match="image grid"):
        image_grid(tiles, columns)


def test_evenly_spaced_and_pad_to_even():
    assert evenly_spaced(10, 4).tolist() == [0, 3, 6, 9]
    assert evenly_spaced(2, 3).tolist() == [0, 0, 1]  # np.round: half to even
    image = _tiles(1, height=5, width=7)[0]
    padded = pad_to_even(image)
    assert padded.shape == (6, 8, 3)
    np.testing.assert_array_equal(padded[:5, :7], image)
    assert not padded[5].any() and not padded[:, 7].any()
    even = _tiles(1)[0]
    assert pad_to_even(even) is even


def test_write_image_png_exact_jpeg_close_palette_small(tmp_path):
    image = _tiles(1, height=32, width=48)[0]
    write_image(image, tmp_path / "a.png")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a.png")), image)
    write_image(image, tmp_path / "b.JPG")
    with Image.open(tmp_path / "b.JPG") as jpeg:
        assert jpeg.format == "JPEG" and jpeg.size == (48, 32)
    flat = np.zeros((32, 48, 3), np.uint8)
    flat[:, 24:] = (200, 10, 30)  # two colours: a palette keeps them exactly
    write_image(flat, tmp_path / "c.png", colours=256)
    with Image.open(tmp_path / "c.png") as png:
        assert png.mode == "P"
        np.testing.assert_array_equal(np.asarray(png.convert("RGB")), flat)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.JPG", "c.png"]


# ------------------------------------------------------------------------ output checks
def test_check_output_suffix_and_folder(tmp_path):
    check_output(tmp_path / "new" / "out.MP4", ".mp4")  # any case; the folder can be made
    check_output(tmp_path / "report", name="--json")  # no suffixes given: any name
    with pytest.raises(InputError, match=r"^output .*o\.avi: must end in \.mp4$"):
        check_output(tmp_path / "o.avi", ".mp4")
    with pytest.raises(InputError, match=r"--draw .*: must end in \.mp4, \.png or \.jpg$"):
        check_output(tmp_path / "o.avi", ".mp4", ".png", ".jpg", name="--draw")
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="is not a folder"):
        check_output(tmp_path / "file" / "out.npz", ".npz")
    with pytest.raises(InputError, match="it is a folder"):
        check_output(tmp_path)


def test_make_folder_creates_once_and_refuses_a_file(tmp_path):
    assert make_folder(tmp_path / "a" / "b", "corpus folder") is True
    assert (tmp_path / "a" / "b").is_dir()
    assert make_folder(tmp_path / "a" / "b", "corpus folder") is False
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match=r"^corpus folder .*f: is a file$"):
        make_folder(tmp_path / "f", "corpus folder")
    with pytest.raises(InputError, match=r"^run folder .*f: is a file$"):
        check_folder(tmp_path / "f", "run folder")
    with pytest.raises(InputError, match=r"^dataset folder .*: cannot be made \("):
        make_folder(tmp_path / "f" / "sub", "dataset folder")
    check_folder(tmp_path / "missing", "run folder")  # not there yet: fine


# ------------------------------------------------------------------------ devices
def test_resolve_device():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device().type == expected
    assert resolve_device(None, index=0).type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(InputError, match=r"^--device tpu0: unknown device \(use cpu or cuda\)$"):
        resolve_device("tpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_resolve_device_without_cuda():
    with pytest.raises(InputError, match=r"--threads cuda:1: CUDA is not available.*--threads cpu"):
        resolve_device("cuda:1", flag="--threads")


# ------------------------------------------------------------------------ correlation
def test_correlation_closed_forms_and_constant_series():
    x = np.array([0.0, 1.0, 3.0, 2.0])
    assert correlation(x, 3 * x - 2) == pytest.approx(1.0, abs=1e-12)
    assert correlation(x, -x) == pytest.approx(-1.0, abs=1e-12)
    # centred: x - mean = [-1.5, -0.5, 1.5, 0.5], y - mean = [-1, -1, 1, 1]: r = 4 / sqrt(5 * 4)
    y = np.array([0.0, 0.0, 2.0, 2.0])
    assert correlation(x, y) == pytest.approx(4.0 / math.sqrt(20.0), abs=1e-12)
    # 0.1 three times has a mean that is not 0.1 in floating point: still constant, NaN
    assert math.isnan(correlation(np.full(3, 0.1), np.array([1.0, 2.0, 4.0])))
    assert math.isnan(correlation(np.zeros(0), np.zeros(0)))
    with pytest.raises(InputError, match="series must be"):
        correlation(np.zeros(3), np.zeros(4))


# ------------------------------------------------------------------------ writers built on them
def test_write_pose_video_pads_odd_sizes_and_muxes_audio(tmp_path):
    from cospeech.media.video import probe, read_video
    from cospeech.pose.draw import draw_pose, write_pose_video
    from pose_fixture import upright_pose

    pose = upright_pose(5, width=83, height=61)
    audio = np.sin(np.linspace(0, 400, 3200)).astype(np.float32)  # 0.2 s at 16 kHz
    write_pose_video(pose, tmp_path / "skeleton.mp4", audio)
    info = probe(tmp_path / "skeleton.mp4")
    assert (info.frames, info.width, info.height, info.audio_codec) == (5, 84, 62, "aac")
    frames, _ = read_video(tmp_path / "skeleton.mp4")
    drawn = pad_to_even(draw_pose(pose.keypoints[0], 83, 61))
    # H.264 (crf 18, yuv420p) blurs thin coloured lines: mean error ~3 here, while a wrong
    # or black frame is off by the drawing's mean (~17)
    assert np.abs(frames[0].astype(int) - drawn).mean() < 6


def test_write_contact_sheet_is_the_sheet_of_the_video(tmp_path):
    import soundfile

    from cospeech.eval.contact_sheet import contact_sheet, write_contact_sheet
    from cospeech.media.video import read_video, write_video
    from cospeech.pose import schema

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    write_video(tmp_path / "v.mp4", frames, 25.0)
    audio = rng.uniform(-0.5, 0.5, 16000).astype(np.float32)
    soundfile.write(tmp_path / "a.wav", audio, 16000, subtype="FLOAT")
    keypoints = np.zeros((4, schema.NUM_KEYPOINTS, 3), np.float32)
    keypoints[..., :2] = 16.0
    write_contact_sheet(tmp_path / "v.mp4", keypoints, tmp_path / "a.wav", 25.0, tmp_path / "s.png")
    decoded, _ = read_video(tmp_path / "v.mp4")
    expected = contact_sheet(decoded, keypoints, audio, 16000, 25.0)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "s.png")), expected)
