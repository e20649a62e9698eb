"""The dataset format on disk: per-clip ``meta.json`` and the root ``manifest.jsonl``.

A dataset is a folder::

    DATASET/
      manifest.jsonl          one JSON object per clip (see ManifestEntry), sorted by id
      <clip path>/            a folder per clip, ``path`` relative to DATASET
        video.mp4             H.264 frames (and, optionally, the audio as AAC)
        audio.wav             16 kHz mono
        pose.npz              PoseSequence, as many frames as the video
        meta.json             at least REQUIRED_META_KEYS; writers may add more

Every writer (synthetic corpus, real-video preparation) goes through this module, so the
two kinds of dataset read the same. Format only: nothing here knows how clips are made.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cospeech.atomic import atomic_path
from cospeech.errors import InputError
from cospeech.jsonfile import dumps, read_json, write_json

MANIFEST_NAME = "manifest.jsonl"
VIDEO_NAME = "video.mp4"
AUDIO_NAME = "audio.wav"
POSE_NAME = "pose.npz"
META_NAME = "meta.json"
CLIP_FILES = (VIDEO_NAME, AUDIO_NAME, POSE_NAME, META_NAME)
SPLITS = ("train", "val", "test")
AUDIO_SAMPLE_RATE = 16000
# Durations are stored to the microsecond: finer than a frame or a 16 kHz sample, and JSON
# shows 4.004 rather than the float noise of frames / fps (4.0040000000000004).
DURATION_DECIMALS = 6
REQUIRED_META_KEYS = (
    "id", "identity", "split", "source", "fps", "width", "height", "frames", "duration",
)  # fmt: skip


@dataclass(frozen=True)
class ManifestEntry:
    """One clip of the manifest: ``id`` (unique), ``path`` (clip folder relative to the
    dataset root, POSIX separators), ``split`` (one of :data:`SPLITS`), ``identity``
    (speaker id; splits never share one), ``frames``, ``fps``, ``duration`` (seconds)."""

    id: str
    path: str
    split: str
    identity: str
    frames: int
    fps: float
    duration: float

    def __post_init__(self) -> None:
        if not self.id or not self.identity:
            raise InputError("manifest entry: id and identity must be non-empty")
        if self.split not in SPLITS:
            raise InputError(f"manifest entry {self.id}: split must be one of {SPLITS}")
        if Path(self.path).is_absolute() or ".." in Path(self.path).parts:
            raise InputError(f"manifest entry {self.id}: path must be relative to the dataset")
        if self.frames < 1 or not (self.fps > 0 and math.isfinite(self.fps)):
            raise InputError(f"manifest entry {self.id}: needs frames >= 1 and fps > 0")
        if not (self.duration > 0 and math.isfinite(self.duration)):
            raise InputError(f"manifest entry {self.id}: duration must be positive")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> ManifestEntry:
        if not isinstance(data, dict):
            raise InputError("manifest entry: expected a JSON object")
        keys = {"id", "path", "split", "identity", "frames", "fps", "duration"}
        if set(data) != keys:
            raise InputError(
                f"manifest entry: missing {sorted(keys - set(data))}, "
                f"unknown {sorted(set(data) - keys)}"
            )
        try:
            return cls(
                id=str(data["id"]), path=str(data["path"]), split=str(data["split"]),
                identity=str(data["identity"]), frames=int(data["frames"]),
                fps=float(data["fps"]), duration=float(data["duration"]),
            )  # fmt: skip
        except (TypeError, ValueError) as exc:
            raise InputError(f"manifest entry: {exc}") from None


def clip_duration(frames: int, fps: float) -> float:
    """A clip's duration in seconds for its meta and manifest: ``frames / fps`` rounded to
    :data:`DURATION_DECIMALS` decimals."""
    return round(frames / fps, DURATION_DECIMALS)


def entry_from_meta(meta: dict[str, Any], path: str) -> ManifestEntry:
    """The manifest entry of a clip from its meta.json contents and folder ``path``."""
    return ManifestEntry(
        id=str(meta["id"]), path=path, split=str(meta["split"]),
        identity=str(meta["identity"]), frames=int(meta["frames"]), fps=float(meta["fps"]),
        duration=float(meta["duration"]),
    )  # fmt: skip


def write_meta(clip_dir: str | Path, meta: dict[str, Any]) -> None:
    """Write a clip's meta.json; ``InputError`` if a required key is missing."""
    missing = [k for k in REQUIRED_META_KEYS if k not in meta]
    if missing:
        raise InputError(f"clip meta: missing key(s) {missing}")
    write_json(Path(clip_dir) / META_NAME, meta, sort_keys=True)


def read_meta(clip_dir: str | Path) -> dict[str, Any]:
    """Read and check a clip's meta.json."""
    path = Path(clip_dir) / META_NAME
    meta = read_json(path)
    if not isinstance(meta, dict):
        raise InputError(f"{path}: expected a JSON object")
    missing = [k for k in REQUIRED_META_KEYS if k not in meta]
    if missing:
        raise InputError(f"{path}: missing key(s) {missing}")
    return meta


def write_manifest(root: str | Path, entries: Iterable[ManifestEntry]) -> None:
    """Write ``root/manifest.jsonl`` (atomically), one entry per line, sorted by id.
    ``InputError`` on duplicate ids or an identity that appears in two splits."""
    entries = sorted(entries, key=lambda e: e.id)
    check_entries(entries)
    lines = [dumps(e.to_dict(), sort_keys=True, indent=None) for e in entries]
    with atomic_path(Path(root) / MANIFEST_NAME) as tmp:
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def read_manifest(root: str | Path) -> list[ManifestEntry]:
    """Read ``root/manifest.jsonl``; errors name the line."""
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise InputError(f"{path}: no such file (not a dataset folder?)")
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entries.append(ManifestEntry.from_dict(json.loads(line)))
        except (json.JSONDecodeError, InputError) as exc:
            raise InputError(f"{path}:{number}: {exc}") from None
    check_entries(entries)
    return entries


def check_entries(entries: Iterable[ManifestEntry]) -> None:
    """``InputError`` on duplicate clip ids or an identity in more than one split."""
    seen: set[str] = set()
    split_of: dict[str, str] = {}
    for entry in entries:
        if entry.id in seen:
            raise InputError(f"manifest: duplicate clip id {entry.id!r}")
        seen.add(entry.id)
        if split_of.setdefault(entry.identity, entry.split) != entry.split:
            raise InputError(
                f"manifest: identity {entry.identity!r} appears in splits "
                f"{split_of[entry.identity]!r} and {entry.split!r}"
            )
