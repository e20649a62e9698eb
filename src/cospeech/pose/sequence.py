"""``PoseSequence``: whole-body keypoints over time, the interface between every stage."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cospeech.atomic import atomic_path
from cospeech.errors import InputError
from cospeech.pose.schema import NUM_KEYPOINTS

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest zip timestamp: files do not depend on "now"
MAX_FRAME_SIDE = 16384  # pixels; a larger frame size in a pose file is corrupt data


@dataclass
class PoseSequence:
    """Keypoints ``[T, 133, 3]`` float32: (x, y) in pixels of a ``width`` x ``height`` frame
    and a confidence in [0, 1] (0 = missing), at ``fps`` frames per second."""

    keypoints: np.ndarray
    fps: float
    width: int
    height: int

    def __post_init__(self) -> None:
        self.keypoints = np.asarray(self.keypoints, dtype=np.float32)
        self.fps = float(self.fps)
        self.width = int(self.width)
        self.height = int(self.height)
        self.validate()

    def validate(self) -> None:
        """Raise :class:`InputError` unless shapes, values and metadata are sane."""
        kp = self.keypoints
        if kp.ndim != 3 or kp.shape[1:] != (NUM_KEYPOINTS, 3):
            raise InputError(
                f"pose: expected keypoints [T, {NUM_KEYPOINTS}, 3], got {list(kp.shape)}"
            )
        if kp.shape[0] == 0:
            raise InputError("pose: the sequence has no frames")
        if not np.isfinite(kp).all():
            bad = int((~np.isfinite(kp)).any(axis=(1, 2)).sum())
            raise InputError(f"pose: keypoints contain NaN or infinite values in {bad} frame(s)")
        conf = kp[..., 2]
        if conf.min() < 0 or conf.max() > 1:
            raise InputError(
                f"pose: confidences must lie in [0, 1], got [{conf.min():.3g}, {conf.max():.3g}]"
            )
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise InputError(f"pose: fps must be positive, got {self.fps}")
        if not (0 < self.width <= MAX_FRAME_SIDE and 0 < self.height <= MAX_FRAME_SIDE):
            raise InputError(
                f"pose: frame size must be 1-{MAX_FRAME_SIDE} pixels a side, "
                f"got {self.width}x{self.height}"
            )

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])

    @property
    def points(self) -> np.ndarray:
        """``[T, 133, 2]`` pixel coordinates."""
        return self.keypoints[..., :2]

    @property
    def confidence(self) -> np.ndarray:
        """``[T, 133]`` confidences."""
        return self.keypoints[..., 2]

    @property
    def duration(self) -> float:
        """Seconds covered by the sequence."""
        return len(self) / self.fps

    def slice(self, start: int, stop: int) -> PoseSequence:
        """Frames ``[start, stop)`` as a new sequence."""
        return PoseSequence(self.keypoints[start:stop].copy(), self.fps, self.width, self.height)

    def save(self, path: str | Path) -> None:
        """Write a compressed ``.npz`` atomically; equal poses give byte-identical files
        (fixed zip timestamps, unlike ``np.savez``)."""
        arrays = {
            "keypoints": self.keypoints,
            "fps": np.float64(self.fps),
            "width": np.int64(self.width),
            "height": np.int64(self.height),
        }
        with (
            atomic_path(path, suffix=".npz") as tmp,
            zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        ):
            for name, value in arrays.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_EPOCH)
                info.compress_type = zipfile.ZIP_DEFLATED
                with archive.open(info, "w", force_zip64=True) as handle:
                    np.lib.format.write_array(handle, np.asanyarray(value), allow_pickle=False)

    @classmethod
    def load(cls, path: str | Path) -> PoseSequence:
        """Read and validate an ``.npz`` written by :meth:`save` (never unpickles)."""
        path = Path(path)
        if path.is_dir():
            raise InputError(f"pose file {path}: is a folder, not a file")
        if not path.is_file():
            raise InputError(f"pose file {path}: no such file")
        # np.load would try anything that is not a zip as a pickle (and refuse it): check first.
        if not zipfile.is_zipfile(path):
            raise InputError(f"pose file {path}: not an .npz archive")
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = {"keypoints", "fps", "width", "height"} - set(data.files)
                if missing:
                    raise InputError(f"missing field(s) {sorted(missing)}")
                fields = {name: data[name] for name in ("fps", "width", "height")}
                bad = [name for name, value in fields.items() if value.size != 1]
                if bad:
                    raise InputError(f"{bad} must be single numbers")
                return cls(data["keypoints"], fields["fps"].item(), fields["width"].item(),
                           fields["height"].item())  # fmt: skip
        except InputError as exc:
            raise InputError(f"pose file {path}: {str(exc).removeprefix('pose: ')}") from None
        except (OSError, ValueError, TypeError, zipfile.BadZipFile, EOFError) as exc:
            raise InputError(f"pose file {path}: not a valid pose .npz ({exc})") from None
