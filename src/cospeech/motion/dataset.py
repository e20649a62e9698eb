"""Training and evaluation data for the motion model, read from a dataset folder.

A clip becomes a :class:`MotionClip`: its frame-stacked log-mel, its keypoints as offsets
from the clip's reference pose (``meta.json["reference"]["pose"]`` when present, else the
clip's first frame), the normalised reference and the clip's style vector. Training draws
fixed-length windows with :class:`MotionWindows`, deterministic per (index, epoch).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from cospeech.audio.features import MelConfig, frame_stacked_mel
from cospeech.audio.load import load_audio
from cospeech.audio.phonemes import PhonemeSegment, segments_from_json
from cospeech.data.manifest import (
    AUDIO_NAME,
    POSE_NAME,
    ManifestEntry,
    read_manifest,
    read_meta,
)
from cospeech.errors import InputError
from cospeech.jsonfile import read_json
from cospeech.motion.config import MEL_PER_FRAME
from cospeech.motion.normalize import normalize_reference, to_offsets
from cospeech.motion.style_vector import style_from_offsets
from cospeech.pose.sequence import PoseSequence
from cospeech.progress import track

PHONEMES_NAME = "phonemes.json"
WINDOW_STREAM = 11  # SeedSequence key of the window draws


@dataclass
class MotionClip:
    """One clip, ready for the model.

    ``mel [T, M]`` stacked log-mel, ``keypoints [T, 133, 3]`` ground truth in pixels,
    ``offsets [T, 133, 2]`` from ``reference [133, 3]`` (pixels) in shoulder widths,
    ``reference_normalized [133, 3]``, ``style [8]``, ``phonemes`` (ground-truth segments when
    the dataset has them, else None), ``audio [N]`` 16 kHz samples.
    """

    id: str
    identity: str
    fps: float
    width: int
    height: int
    audio: np.ndarray
    mel: np.ndarray
    keypoints: np.ndarray
    offsets: np.ndarray
    reference: np.ndarray
    reference_normalized: np.ndarray
    style: np.ndarray
    phonemes: list[PhonemeSegment] | None
    meta: dict

    @property
    def frames(self) -> int:
        return int(self.keypoints.shape[0])

    @property
    def reference_pose(self) -> PoseSequence:
        return PoseSequence(self.reference[None], self.fps, self.width, self.height)


def load_clip(root: Path, entry: ManifestEntry) -> MotionClip:
    """Read one clip of a dataset (``InputError`` when its files are unusable)."""
    folder = root / entry.path
    meta = read_meta(folder)
    pose = PoseSequence.load(folder / POSE_NAME)
    reference_path = (meta.get("reference") or {}).get("pose")
    if reference_path:
        reference = PoseSequence.load(root / reference_path).keypoints[0]
    else:
        reference = pose.keypoints[0]
    if meta.get("audio") is False or not (folder / AUDIO_NAME).exists():
        raise InputError(
            f"clip {entry.id} ({folder}): has no audio (its source video had no sound); the "
            "motion model needs speech: prepare videos with an audio track"
        )
    audio = load_audio(folder / AUDIO_NAME)
    mel = frame_stacked_mel(audio, pose.fps, len(pose), MEL_PER_FRAME)
    offsets = to_offsets(pose.keypoints, reference)
    phonemes_file = folder / PHONEMES_NAME
    phonemes = segments_from_json(read_json(phonemes_file)) if phonemes_file.is_file() else None
    return MotionClip(
        id=entry.id, identity=entry.identity, fps=pose.fps, width=pose.width,
        height=pose.height, audio=audio, mel=mel, keypoints=pose.keypoints, offsets=offsets,
        reference=reference, reference_normalized=normalize_reference(reference),
        style=style_from_offsets(offsets), phonemes=phonemes, meta=meta,
    )  # fmt: skip


def load_split(root: str | Path, split: str, limit: int = 0, progress: bool = False):
    """All clips of ``split`` (the first ``limit`` when > 0), in manifest order."""
    root = Path(root)
    entries = [e for e in read_manifest(root) if e.split == split]
    if limit > 0:
        entries = entries[:limit]
    if not entries:
        raise InputError(f"dataset {root}: no clips in split {split!r}")
    loading = track(entries, f"load {split}", unit="clip", enabled=progress)
    return [load_clip(root, entry) for entry in loading]


class MotionWindows(Dataset):
    """Windows of ``frames`` frames from clips; shorter clips are padded (``valid`` False).

    Item: ``mel [W, M]``, ``offsets [W, 133, 2]``, ``confidence [W, 133]``, ``valid [W]``,
    ``reference [133, 3]`` (normalised), ``style [8]``. The window start is drawn from
    ``default_rng([seed, WINDOW_STREAM, epoch, index])``.
    """

    def __init__(self, clips: list[MotionClip], frames: int, seed: int = 0) -> None:
        if not clips:
            raise InputError("motion dataset: no clips")
        self.clips = clips
        self.frames = frames
        self.seed = seed
        self.epoch = 0
        self.floor = MelConfig().floor_value

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        clip = self.clips[index]
        rng = np.random.default_rng([self.seed, WINDOW_STREAM, self.epoch, index])
        start = int(rng.integers(0, max(1, clip.frames - self.frames + 1)))
        stop = min(clip.frames, start + self.frames)
        n = stop - start
        mel = np.full((self.frames, clip.mel.shape[1]), self.floor, np.float32)
        mel[:n] = clip.mel[start:stop]
        offsets = np.zeros((self.frames, *clip.offsets.shape[1:]), np.float32)
        offsets[:n] = clip.offsets[start:stop]
        confidence = np.zeros((self.frames, clip.keypoints.shape[1]), np.float32)
        confidence[:n] = clip.keypoints[start:stop, :, 2]
        valid = np.zeros(self.frames, bool)
        valid[:n] = True
        return {
            "mel": torch.from_numpy(mel),
            "offsets": torch.from_numpy(offsets),
            "confidence": torch.from_numpy(confidence),
            "valid": torch.from_numpy(valid),
            "reference": torch.from_numpy(clip.reference_normalized),
            "style": torch.from_numpy(clip.style),
        }
