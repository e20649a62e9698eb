"""``ClipDataset``: training windows from a dataset folder (prepared or synthetic).

A dataset folder holds ``manifest.jsonl`` and one folder per clip with ``video.mp4``,
``audio.wav`` (16 kHz mono; absent when the clip's meta says ``"audio": false``),
``pose.npz`` and ``meta.json`` (:mod:`cospeech.data.manifest`). A clip whose meta has
``"reference": {"image": ..., "pose": ...}`` (paths relative to the dataset root, as the
synthetic corpus writes ``identities/<id>/reference.png`` and ``reference_pose.npz``)
takes its reference from there.

Each item is a window of ``frames`` consecutive frames (F = 1 + 4k, the video VAE's
temporal stride), a reference frame, keypoints, pose maps and the audio under the window.

Windows are a pure function of ``(seed, epoch, index)``: call :meth:`ClipDataset.set_epoch`
(``cospeech.train.data.EpochIndexed`` does) and any worker, in any run, returns the same
item. Frames are decoded from the nearest key frame before the window
(:func:`cospeech.data.clip_reader.read_frames`); ``cache_bytes`` > 0 keeps whole decoded
clips in memory instead, which suits the small demo corpus.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import soundfile
import torch
from safetensors.numpy import load_file
from torch.utils.data import Dataset

from cospeech.data.clip_reader import FrameCache
from cospeech.data.manifest import (
    AUDIO_NAME,
    AUDIO_SAMPLE_RATE,
    POSE_NAME,
    VIDEO_NAME,
    read_manifest,
    read_meta,
)
from cospeech.errors import InputError
from cospeech.latent_geometry import latent_frames
from cospeech.media.pixels import pixels_to_tensor
from cospeech.pose.draw import draw_pose
from cospeech.pose.extract import read_image
from cospeech.pose.sequence import PoseSequence

# Index reported as ``reference_index`` when the reference is the identity's own photo.
IDENTITY_REFERENCE = -1


@dataclass(frozen=True)
class ClipInfo:
    """One clip of the manifest with the facts the loader needs."""

    clip_id: str
    folder: Path
    frames: int
    fps: float
    width: int
    height: int
    has_audio: bool
    reference_image: Path | None
    reference_pose: Path | None


def read_clips(root: str | Path, split: str | None) -> list[ClipInfo]:
    """The clips of ``split`` (all when None) listed in ``root/manifest.jsonl``."""
    root = Path(root)
    clips = []
    for entry in read_manifest(root):
        if split is not None and entry.split != split:
            continue
        folder = root / entry.path
        meta = read_meta(folder)
        reference = meta.get("reference") or {}
        clips.append(
            ClipInfo(
                clip_id=entry.id,
                folder=folder,
                frames=int(meta["frames"]),
                fps=float(meta["fps"]),
                width=int(meta["width"]),
                height=int(meta["height"]),
                has_audio=bool(meta.get("audio", True)),
                reference_image=root / reference["image"] if "image" in reference else None,
                reference_pose=root / reference["pose"] if "pose" in reference else None,
            )
        )
    return clips


def spread_over_identities(clips: list[ClipInfo], count: int) -> list[ClipInfo]:
    """At most ``count`` clips (0 = all), taking each identity's first clip, then each
    identity's second, and so on."""
    if count <= 0 or count >= len(clips):
        return clips
    by_identity: dict[str, list[ClipInfo]] = {}
    for clip in clips:
        key = str(clip.reference_image) if clip.reference_image else clip.clip_id
        by_identity.setdefault(key, []).append(clip)
    ordered = []
    for rank in range(max(len(group) for group in by_identity.values())):
        ordered += [group[rank] for group in by_identity.values() if rank < len(group)]
    return ordered[:count]


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``[H, W, 3]`` uint8 to ``[height, width, 3]`` (area filter down, bilinear up)."""
    if image.shape[:2] == (height, width):
        return image
    shrinking = height < image.shape[0] or width < image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


class ClipDataset(Dataset):
    """Windows of ``frames`` frames from the clips of one split.

    Item (a dict), for output size ``H x W`` (``size``, default the clip's own):

    * ``video`` float ``[3, F, H, W]`` in [-1, 1]; ``reference`` ``[3, H, W]``: a frame of
      the clip outside the window (the window's first frame when the clip is exactly F
      frames long), or the identity's reference photo when the clip's meta names one;
    * ``keypoints`` ``[F, 133, 3]`` and ``reference_keypoints`` ``[133, 3]`` in output
      pixels; ``pose_maps`` ``[3, F, H, W]`` and ``reference_pose_map`` ``[3, H, W]`` in
      [-1, 1] (:func:`cospeech.pose.draw.draw_pose`), when ``with_pose_maps``;
    * ``audio`` ``[round(F * 16000 / fps)]`` float samples under the window (zeros past
      the end of the track and for clips without audio) and ``has_audio``, when
      ``with_audio``;
    * ``latents`` (when ``latents_dir`` holds ``<clip>.safetensors``, see
      :meth:`_cached_latents`): the cached latent of the window;
    * ``clip`` (id), ``start`` (first frame of the window), ``reference_index``
      (:data:`IDENTITY_REFERENCE` for a photo), ``fps``.

    Clips shorter than F frames are left out (``skipped`` names them).
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = "train",
        frames: int = 17,
        size: int | tuple[int, int] | None = None,
        with_pose_maps: bool = True,
        with_audio: bool = True,
        latents_dir: str | Path | None = None,
        seed: int = 0,
        cache_bytes: int = 0,
    ) -> None:
        self.latent_frames = latent_frames(frames)  # InputError unless frames = 1 + 4k
        self.root = Path(root)
        self.frames = int(frames)
        self.size = (size, size) if isinstance(size, int) else size
        self.with_pose_maps = with_pose_maps
        self.with_audio = with_audio
        self.latents_dir = Path(latents_dir) if latents_dir is not None else None
        self.seed = int(seed)
        self.epoch = 0
        clips = read_clips(self.root, split)
        self.clips = [c for c in clips if c.frames >= self.frames]
        self.skipped = [c.clip_id for c in clips if c.frames < self.frames]
        if not self.clips:
            raise InputError(
                f"dataset {self.root}: no clip of split {split!r} has {self.frames} frames "
                f"({len(clips)} clip(s) in the split)"
            )
        self._cache = FrameCache(cache_bytes)
        self._poses: dict[Path, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.clips)

    def set_epoch(self, epoch: int) -> None:
        """Select the windows of ``epoch`` (items depend on (seed, epoch, index) only)."""
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict[str, Any]:
        clip = self.clips[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        latents, start = self._cached_latents(clip, rng)
        if start is None:
            start = int(rng.integers(0, clip.frames - self.frames + 1))
        stop = start + self.frames
        height, width = self.size or (clip.height, clip.width)
        scale = np.array([width / clip.width, height / clip.height, 1.0], np.float32)

        shape = (clip.frames, clip.height, clip.width)
        window = self._cache.window(clip.folder / VIDEO_NAME, shape, start, self.frames)
        video = np.stack([_resize(f, height, width) for f in window])
        keypoints = self._keypoints(clip)[start:stop] * scale

        ref_image, ref_keypoints, ref_index = self._reference(clip, rng, start, stop)
        reference = _resize(ref_image, height, width)
        ref_keypoints = ref_keypoints * np.array(
            [width / ref_image.shape[1], height / ref_image.shape[0], 1.0], np.float32
        )
        item: dict[str, Any] = {
            "video": pixels_to_tensor(video),
            "reference": pixels_to_tensor(reference),
            "keypoints": torch.from_numpy(keypoints),
            "reference_keypoints": torch.from_numpy(ref_keypoints),
            "clip": clip.clip_id,
            "start": start,
            "reference_index": ref_index,
            "fps": clip.fps,
        }
        if self.with_pose_maps:
            maps = np.stack([draw_pose(k, width, height) for k in keypoints])
            item["pose_maps"] = pixels_to_tensor(maps)
            item["reference_pose_map"] = pixels_to_tensor(draw_pose(ref_keypoints, width, height))
        if self.with_audio:
            item["audio"] = torch.from_numpy(self._audio(clip, start))
            item["has_audio"] = clip.has_audio
        if latents is not None:
            item["latents"] = torch.from_numpy(latents)
        return item

    def _keypoints(self, clip: ClipInfo) -> np.ndarray:
        """``[T, 133, 3]`` of the clip (kept in memory after the first read)."""
        if clip.folder not in self._poses:
            pose = PoseSequence.load(clip.folder / POSE_NAME)
            if len(pose) != clip.frames or (pose.width, pose.height) != (clip.width, clip.height):
                raise InputError(
                    f"{clip.folder}: pose.npz has {len(pose)} frames of {pose.width}x"
                    f"{pose.height}, meta.json says {clip.frames} of {clip.width}x{clip.height}"
                )
            self._poses[clip.folder] = pose.keypoints
        return self._poses[clip.folder]

    def _reference(
        self, clip: ClipInfo, rng: np.random.Generator, start: int, stop: int
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Reference image ``[H, W, 3]`` (its own size), its keypoints ``[133, 3]`` in its
        pixels, and its frame index in the clip (:data:`IDENTITY_REFERENCE` for a photo)."""
        if clip.reference_image is not None and clip.reference_pose is not None:
            image = read_image(clip.reference_image)
            pose = PoseSequence.load(clip.reference_pose)
            keypoints = pose.keypoints[0] * np.array(
                [image.shape[1] / pose.width, image.shape[0] / pose.height, 1.0], np.float32
            )
            return image, keypoints, IDENTITY_REFERENCE
        outside = np.concatenate([np.arange(0, start), np.arange(stop, clip.frames)])
        index = int(rng.choice(outside)) if len(outside) else start
        shape = (clip.frames, clip.height, clip.width)
        frame = self._cache.window(clip.folder / VIDEO_NAME, shape, index, 1)[0]
        return frame, self._keypoints(clip)[index], index

    def _audio(self, clip: ClipInfo, start: int) -> np.ndarray:
        """``[round(F * 16000 / fps)]`` float32 samples from frame ``start`` on."""
        length = round(self.frames * AUDIO_SAMPLE_RATE / clip.fps)
        out = np.zeros(length, np.float32)
        if not clip.has_audio:
            return out
        path = clip.folder / AUDIO_NAME
        first = round(start * AUDIO_SAMPLE_RATE / clip.fps)
        try:
            with soundfile.SoundFile(path) as wav:
                if wav.samplerate != AUDIO_SAMPLE_RATE or wav.channels != 1:
                    raise InputError(
                        f"{path}: expected {AUDIO_SAMPLE_RATE} Hz mono, got {wav.samplerate} Hz "
                        f"x {wav.channels} channel(s)"
                    )
                if first < wav.frames:
                    wav.seek(first)
                    samples = wav.read(length, dtype="float32")
                    out[: len(samples)] = samples
        except (OSError, RuntimeError, soundfile.LibsndfileError) as exc:
            raise InputError(f"{path}: cannot be read ({exc})") from None
        return out

    def _cached_latents(
        self, clip: ClipInfo, rng: np.random.Generator
    ) -> tuple[np.ndarray | None, int | None]:
        """A cached latent window and its start frame, or (None, None) without a cache.

        ``latents_dir/<clip>.safetensors`` holds ``latents`` ``[N, C, 1 + (F-1)/4, h, w]``
        (N encoded windows of F frames) and ``starts`` int64 ``[N]`` (each window's first
        frame); the item's window is then one of those N, drawn from the item's generator.
        """
        if self.latents_dir is None:
            return None, None
        path = self.latents_dir / f"{clip.clip_id}.safetensors"
        if not path.is_file():
            return None, None
        try:
            tensors = load_file(str(path))
        except (OSError, ValueError) as exc:
            raise InputError(f"latent cache {path}: unreadable ({exc})") from None
        latents, starts = tensors.get("latents"), tensors.get("starts")
        if latents is None or starts is None or latents.ndim != 5 or len(latents) != len(starts):
            raise InputError(f"latent cache {path}: needs latents [N, C, T, h, w] and starts [N]")
        if latents.shape[2] != self.latent_frames:
            raise InputError(
                f"latent cache {path}: windows of {latents.shape[2]} latent frames, "
                f"{self.frames} video frames need {self.latent_frames}"
            )
        choice = int(rng.integers(0, len(starts)))
        start = int(starts[choice])
        if not 0 <= start <= clip.frames - self.frames:
            raise InputError(f"latent cache {path}: window start {start} outside the clip")
        return latents[choice], start
