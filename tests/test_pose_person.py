"""Real-photo preprocessing (pose/person.py): size caps before decoding, exactly one person,
the upper-body crop (checked with dlib's face detector, an independent model)."""

from __future__ import annotations

import resource
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cospeech.errors import InputError
from cospeech.pose import schema as s
from cospeech.pose.person import (
    MAX_PHOTO_PIXELS,
    PersonConfig,
    UpperBodyCrop,
    apply_crop,
    check_photo_size,
    crop_keypoints,
    find_person,
    load_photo,
    upper_body_crop,
)
from pose_fixture import upright_keypoints

skimage_data = pytest.importorskip("skimage.data")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def _write_huge_black_png(path: Path, side: int) -> None:
    """A complete, valid 1-bit greyscale PNG of ``side x side`` black pixels, compressed row
    by row, so neither the test nor the file holds the image (20000^2: ~60 kB on disk)."""
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte "none" + packed bits
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    png = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data)
    path.write_bytes(png + _png_chunk(b"IEND", b""))


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# ---- sizes --------------------------------------------------------------------------


def test_huge_png_is_refused_from_its_header_fast(tmp_path):
    path = tmp_path / "huge.png"
    _write_huge_black_png(path, 20000)
    assert path.stat().st_size < 200_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    start = time.perf_counter()
    with pytest.raises(InputError) as exc:
        load_photo(path)
    elapsed = time.perf_counter() - start
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    # Pillow refuses it on open (its own limit, 89.5 Mpx, is checked from the header).
    assert "(Pillow's decompression-bomb limit), over the 40-megapixel limit" in _one_line(exc)
    # Decoding it would take 400 MB as 1-bit->L, 1.2 GB as RGB and seconds; the header alone
    # takes neither.
    assert elapsed < 1.0
    assert grown_mib < 100


def test_our_cap_is_checked_from_the_header(tmp_path):
    # 8000 x 8000 = 64 Mpx: under Pillow's limit, over ours; the header says so.
    path = tmp_path / "large.png"
    _write_huge_black_png(path, 8000)
    with pytest.raises(InputError) as exc:
        check_photo_size(path)
    assert "8000x8000 is 64 megapixels, over the 40-megapixel limit" in _one_line(exc)
    assert check_photo_size(path, max_pixels=64_000_000) == (8000, 8000)


def test_pillows_bomb_warning_becomes_an_error_line(tmp_path, monkeypatch):
    # Between MAX_IMAGE_PIXELS and twice that, Pillow only warns: that warning is refused too.
    path = tmp_path / "small.png"
    Image.new("RGB", (40, 40)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1600 px: a warning, not an error
    with pytest.raises(InputError) as exc:
        load_photo(path)
    assert "more than 0.001 megapixels (Pillow's decompression-bomb limit)" in _one_line(exc)


def test_normal_photo_loads_and_non_images_are_one_line(tmp_path):
    path = tmp_path / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(path)
    assert check_photo_size(path) == (512, 512)
    np.testing.assert_array_equal(load_photo(path), skimage_data.astronaut())
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(InputError, match="not an image"):
        load_photo(text)
    with pytest.raises(InputError, match="no such file"):
        load_photo(tmp_path / "missing.png")
    assert MAX_PHOTO_PIXELS == 40_000_000


# ---- the crop (no detector) ---------------------------------------------------------


def test_crop_contains_the_upper_body_with_margin():
    kp = upright_keypoints(512, 512)
    crop = upper_body_crop(kp, 512, 512)
    x0, y0, x1, y1 = crop.box
    assert x1 - x0 == y1 - y0 == crop.side
    face = kp[list(s.FACE), :2]
    shoulders = kp[[s.LEFT_SHOULDER, s.RIGHT_SHOULDER], :2]
    hands = kp[list(s.LEFT_HAND + s.RIGHT_HAND), :2]
    for points in (face, shoulders, hands):
        assert (points[:, 0] > x0).all() and (points[:, 0] < x1).all()
        assert (points[:, 1] > y0).all() and (points[:, 1] < y1).all()
    # The side: the longer extent of those points, the head raised by half the face's
    # height (forehead), times 1 + 2 * 0.15 (margin), rounded up to a pixel.
    top, bottom = face[:, 1].min(), face[:, 1].max()
    forehead = [[face[0, 0], top - 0.5 * (bottom - top)]]
    extent = np.ptp(np.concatenate([face, shoulders, hands, forehead]), axis=0).max()
    assert 0 <= crop.side - 1.3 * extent < 1 + 1e-3


def test_crop_leaving_the_photo_is_padded_by_its_border():
    kp = upright_keypoints(512, 512)
    kp[:, 0] -= 150  # the person near the left edge: the square starts left of the photo
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    crop = upper_body_crop(kp, 512, 512)
    left, top, right, bottom = crop.padding
    assert left == -crop.box[0] > 0 and top == max(0, -crop.box[1])
    out = apply_crop(photo, crop)
    assert out.shape == (crop.side, crop.side, 3)
    y0 = crop.box[1] + top
    rows = slice(top, crop.side - bottom)
    # Inside: the photo itself; the padded columns repeat the photo's first column.
    np.testing.assert_array_equal(
        out[rows, left:], photo[y0 : y0 + out[rows].shape[0], : crop.side - left - right]
    )
    np.testing.assert_array_equal(
        out[rows, :left], np.repeat(out[rows, left : left + 1], left, axis=1)
    )
    assert f"left {left} px" in crop.describe()
    moved = crop_keypoints(kp, crop)
    np.testing.assert_allclose(moved[:, :2], kp[:, :2] - crop.box[:2], atol=1e-4)


def test_describe_without_padding():
    crop = UpperBodyCrop((10, 20, 110, 120), (512, 400), (0, 0, 0, 0))
    assert crop.describe() == "crop 100x100 at (10, 20) of a 512x400 photo, no padding"


def test_crop_needs_a_face():
    kp = upright_keypoints(512, 512)
    kp[list(s.FACE) + [s.NOSE, s.LEFT_EYE, s.RIGHT_EYE, s.LEFT_EAR, s.RIGHT_EAR], 2] = 0
    with pytest.raises(InputError, match="no person found"):
        upper_body_crop(kp, 512, 512)


# ---- with MediaPipe (people) and dlib (the check) -------------------------------------


def _save(tmp_path: Path, name: str, image: np.ndarray) -> Path:
    path = tmp_path / name
    Image.fromarray(image).save(path)
    return path


def test_astronaut_is_one_person_and_the_crop_holds_her_face(tmp_path):
    from cospeech.eval.video.faces import FaceAnalyzer

    photo = skimage_data.astronaut()
    person = find_person(_save(tmp_path, "astronaut.png", photo))
    assert person.image.shape == (person.crop.side, person.crop.side, 3)
    analyzer = FaceAnalyzer(descriptors=False)
    face_in_crop = analyzer(person.image)
    assert face_in_crop is not None  # dlib finds the face inside the crop
    # ... and it is the face dlib finds in the whole photo, moved by the crop's corner.
    face_in_photo = analyzer(photo)
    assert face_in_photo is not None
    x0, y0 = person.crop.box[:2]
    fx0, fy0, fx1, fy1 = face_in_photo.box
    bx0, by0, bx1, by1 = person.crop.box
    assert bx0 <= fx0 and by0 <= fy0 and fx1 <= bx1 and fy1 <= by1
    moved = np.array(face_in_photo.box) - [x0, y0, x0, y0]
    assert np.abs(np.array(face_in_crop.box) - moved).max() <= 8  # same face, few px
    # The keypoints moved with the crop: the nose inside dlib's face box.
    nose = person.keypoints[s.NOSE, :2]
    cx0, cy0, cx1, cy1 = face_in_crop.box
    assert cx0 < nose[0] < cx1 and cy0 < nose[1] < cy1


def test_astronaut_small_in_a_large_photo_is_still_one_person(tmp_path):
    canvas = np.full((1500, 2000, 3), 90, np.uint8)
    canvas[400:912, 700:1212] = skimage_data.astronaut()
    person = find_person(_save(tmp_path, "small.png", canvas))
    x0, y0, x1, y1 = person.crop.box
    assert x0 > 700 - 100 and x1 < 1212 + 100 and y0 > 400 - 100 and y1 < 912 + 100


def test_two_people_are_one_line(tmp_path):
    photo = skimage_data.astronaut()
    two = np.concatenate([photo, photo[:, ::-1]], axis=1)
    with pytest.raises(InputError) as exc:
        find_person(_save(tmp_path, "two.png", two))
    assert "found 2 people; crop the photo to one person" in _one_line(exc)


def test_two_small_people_in_a_large_photo_are_one_line(tmp_path):
    photo = skimage_data.astronaut()
    canvas = np.full((1200, 2400, 3), 90, np.uint8)
    canvas[300:812, 200:712] = photo
    canvas[300:812, 1500:2012] = photo[:, ::-1]
    with pytest.raises(InputError, match="found 2 people"):
        find_person(_save(tmp_path, "two-small.png", canvas))


@pytest.mark.parametrize("name", ["coffee", "texture"])
def test_no_person_is_one_line(tmp_path, name):
    if name == "coffee":
        image = skimage_data.coffee()
    else:
        image = np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    with pytest.raises(InputError) as exc:
        find_person(_save(tmp_path, f"{name}.png", image))
    assert "no person found" in _one_line(exc)


def test_config_cap_applies_to_find_person(tmp_path):
    path = _save(tmp_path, "astronaut.png", skimage_data.astronaut())
    with pytest.raises(InputError, match=r"512x512 is 0\.262 megapixels, over the 0\.1-megapixel"):
        find_person(path, PersonConfig(max_pixels=100_000))
