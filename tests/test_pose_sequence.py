"""PoseSequence: construction checks, save/load round trip, hostile files."""

from __future__ import annotations

import numpy as np
import pytest

from cospeech.errors import InputError
from cospeech.pose import PoseSequence
from pose_fixture import upright_keypoints, upright_pose


def _keypoints(frames: int = 3) -> np.ndarray:
    rng = np.random.default_rng(0)
    kp = np.repeat(upright_keypoints()[None], frames, axis=0)
    kp[..., :2] += rng.normal(0, 2, kp[..., :2].shape)
    return kp


def _write_npz(path, **fields):
    np.savez(path, **fields)
    return path


def test_round_trip(tmp_path):
    pose = PoseSequence(_keypoints(7), fps=29.97, width=832, height=480)
    path = tmp_path / "sub" / "pose.npz"
    pose.save(path)
    back = PoseSequence.load(path)
    assert back.keypoints.dtype == np.float32
    np.testing.assert_array_equal(back.keypoints, pose.keypoints)
    assert (back.fps, back.width, back.height) == (29.97, 832, 480)
    assert not [p for p in path.parent.iterdir() if p != path]  # no temp file left behind


def test_save_is_byte_identical(tmp_path):
    pose = PoseSequence(_keypoints(4), fps=25, width=832, height=480)
    pose.save(tmp_path / "a.npz")
    PoseSequence(pose.keypoints.copy(), 25, 832, 480).save(tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_save_keeps_target_name_without_npz_suffix(tmp_path):
    pose = upright_pose(2)
    path = tmp_path / "pose.bin"
    pose.save(path)
    assert path.is_file() and not (tmp_path / "pose.bin.npz").exists()
    np.testing.assert_array_equal(PoseSequence.load(path).keypoints, pose.keypoints)


def test_properties_and_slice():
    pose = PoseSequence(_keypoints(10), fps=25, width=832, height=480)
    assert len(pose) == 10
    assert pose.points.shape == (10, 133, 2) and pose.confidence.shape == (10, 133)
    assert pose.duration == pytest.approx(0.4)
    part = pose.slice(2, 5)
    assert len(part) == 3
    np.testing.assert_array_equal(part.keypoints, pose.keypoints[2:5])
    part.keypoints[:] = 0  # a copy, not a view
    assert pose.keypoints[2].any()


def test_converts_to_float32():
    pose = PoseSequence(_keypoints(2).astype(np.float64), 25, 832, 480)
    assert pose.keypoints.dtype == np.float32


@pytest.mark.parametrize(
    "shape", [(133, 3), (2, 17, 3), (2, 133, 2), (2, 133, 4), (0, 133, 3), (1, 1, 133, 3)]
)
def test_wrong_shape(shape):
    with pytest.raises(InputError):
        PoseSequence(np.zeros(shape, dtype=np.float32), 25, 832, 480)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("channel", [0, 1, 2])
def test_non_finite(bad, channel):
    kp = _keypoints()
    kp[1, 40, channel] = bad
    with pytest.raises(InputError, match="NaN or infinite"):
        PoseSequence(kp, 25, 832, 480)


@pytest.mark.parametrize("value", [-0.01, 1.01, 7.0])
def test_confidence_out_of_range(value):
    kp = _keypoints()
    kp[0, 5, 2] = value
    with pytest.raises(InputError, match="confidence"):
        PoseSequence(kp, 25, 832, 480)


def test_confidence_bounds_are_allowed():
    kp = _keypoints()
    kp[0, :, 2] = 0.0
    kp[1, :, 2] = 1.0
    PoseSequence(kp, 25, 832, 480)


@pytest.mark.parametrize(
    ("fps", "width", "height"), [(0, 832, 480), (-25, 832, 480), (np.nan, 832, 480),
                                 (np.inf, 832, 480), (25, 0, 480), (25, 832, -1)]
)  # fmt: skip
def test_bad_metadata(fps, width, height):
    with pytest.raises(InputError):
        PoseSequence(_keypoints(), fps, width, height)


def test_validate_catches_later_mutation():
    pose = upright_pose(2)
    pose.keypoints[0, 0, 0] = np.nan
    with pytest.raises(InputError):
        pose.validate()


@pytest.mark.parametrize("field", ["keypoints", "fps", "width", "height"])
def test_load_missing_field(tmp_path, field):
    fields = {"keypoints": _keypoints(), "fps": 25.0, "width": 832, "height": 480}
    del fields[field]
    path = _write_npz(tmp_path / "pose.npz", **fields)
    with pytest.raises(InputError, match=field):
        PoseSequence.load(path)


def test_load_invalid_values(tmp_path):
    kp = _keypoints()
    kp[0, 0, 2] = 2.0
    path = _write_npz(tmp_path / "pose.npz", keypoints=kp, fps=25.0, width=832, height=480)
    with pytest.raises(InputError, match=str(path)):
        PoseSequence.load(path)


def test_load_wrong_shape_in_file(tmp_path):
    path = _write_npz(
        tmp_path / "pose.npz", keypoints=np.zeros((3, 17, 3)), fps=25.0, width=832, height=480
    )
    with pytest.raises(InputError, match="133"):
        PoseSequence.load(path)


def test_load_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        PoseSequence.load(tmp_path / "nope.npz")
    with pytest.raises(InputError):
        PoseSequence.load(tmp_path)  # a folder


@pytest.mark.parametrize(
    "content", [b"", b"hello, not a zip", b"PK\x03\x04 truncated zip", b"\x93NUMPY garbage"]
)
def test_load_not_an_npz(tmp_path, content):
    path = tmp_path / "pose.npz"
    path.write_bytes(content)
    with pytest.raises(InputError):
        PoseSequence.load(path)


def test_load_plain_npy(tmp_path):
    path = tmp_path / "pose.npz"
    with open(path, "wb") as f:
        np.save(f, _keypoints())
    with pytest.raises(InputError):
        PoseSequence.load(path)


_UNPICKLED: list[str] = []


def _spring(message: str) -> str:
    _UNPICKLED.append(message)
    return message


class _Trap:
    """Unpickling this runs code: proof that a file was unpickled."""

    def __reduce__(self):
        return (_spring, ("unpickled!",))


def test_load_refuses_pickled_object_array(tmp_path):
    payload = np.empty(1, dtype=object)
    payload[0] = _Trap()
    path = tmp_path / "pose.npz"
    np.savez(path, keypoints=payload, fps=25.0, width=832, height=480)
    with np.load(path, allow_pickle=True) as data:  # the trap in the file works ...
        data["keypoints"]
    assert _UNPICKLED == ["unpickled!"]
    _UNPICKLED.clear()
    with pytest.raises(InputError):
        PoseSequence.load(path)
    assert _UNPICKLED == []  # ... and load never sprang it


def test_load_refuses_pickled_metadata(tmp_path):
    payload = np.empty((), dtype=object)
    payload[()] = _Trap()
    path = tmp_path / "pose.npz"
    np.savez(path, keypoints=_keypoints(), fps=payload, width=832, height=480)
    with pytest.raises(InputError):
        PoseSequence.load(path)
    assert _UNPICKLED == []
