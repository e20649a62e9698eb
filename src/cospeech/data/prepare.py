"""Real videos -> the dataset format (``cospeech data prepare SRC --out DIR``).

Per source video: decode with PyAV; keypoints for every frame (MediaPipe Holistic or a
DWPose/RTMW ONNX model), One-Euro smoothed; the paper's frame filter
(:mod:`cospeech.data.filtering`); kept runs cut into clips; one square crop per clip
(:mod:`cospeech.data.cropping`) applied to the frames and the keypoints; audio resampled to
16 kHz mono. Each clip is written into ``DIR/.tmp/<clip>/`` and renamed to ``DIR/<clip>/``
when complete, so a crash never leaves a half-written clip. A source that is finished gets
a marker in ``DIR/.done/``; a second run skips it. A file that cannot be read (corrupt,
truncated, not a video, an unreadable codec) is reported in the summary and skipped.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile

from cospeech.atomic import make_folder
from cospeech.data.cropping import CropBox, clip_box
from cospeech.data.filtering import FILTER_PRESETS, FilterConfig, keep_frames, kept_runs
from cospeech.data.manifest import (
    AUDIO_NAME,
    AUDIO_SAMPLE_RATE,
    META_NAME,
    POSE_NAME,
    VIDEO_NAME,
    clip_duration,
    entry_from_meta,
    read_meta,
    write_manifest,
    write_meta,
)
from cospeech.errors import InputError, count
from cospeech.jsonfile import write_json
from cospeech.media.video import VideoWriter, iter_frames, probe, read_audio_track
from cospeech.pose import schema
from cospeech.pose.extract import BACKENDS, extract_keypoints, open_extractor
from cospeech.pose.extract.smoothing import DEFAULT_SMOOTHING, OneEuroConfig, smooth_keypoints
from cospeech.pose.sequence import PoseSequence
from cospeech.progress import track

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v"})
DONE_DIR = ".done"
TMP_DIR = ".tmp"
BOX_POINTS: dict[str, tuple[int, ...]] = {"upper_body": schema.UPPER_BODY, "face": schema.FACE}
# Hash buckets for the speaker-level train/test split.
SPLIT_BUCKETS = 10_000
MAX_SIZE = 4096  # clip side in pixels


@dataclass(frozen=True)
class PrepareConfig:
    """How sources become clips. ``box_points`` names the keypoints the crop covers
    (:data:`BOX_POINTS`); ``box_margin`` is added on each side, as a fraction of their
    extent. Speakers (the file-name stem up to ``speaker_separator``) go to the ``test``
    split with probability ``test_fraction``, by a hash of their id."""

    filter: FilterConfig = FILTER_PRESETS["paper"]
    box_points: str = "upper_body"
    box_margin: float = 0.2
    box_min_confidence: float = 0.5
    size: int = 512
    min_frames: int = 25
    max_frames: int = 250
    backend: str = "mediapipe"
    pose_model: str | None = None
    smoothing: OneEuroConfig = DEFAULT_SMOOTHING
    require_audio: bool = False
    test_fraction: float = 0.0
    speaker_separator: str = "_"

    def __post_init__(self) -> None:
        if self.size % 2 or not 0 < self.size <= MAX_SIZE:
            raise InputError(f"--size must be even and in [2, {MAX_SIZE}], got {self.size}")
        if self.min_frames < 1 or self.max_frames < self.min_frames:
            raise InputError(
                f"clip length: need 1 <= --min-frames ({self.min_frames}) "
                f"<= --max-frames ({self.max_frames})"
            )
        if not (math.isfinite(self.box_margin) and self.box_margin >= 0):
            raise InputError(f"--margin must be >= 0, got {self.box_margin}")
        if not 0 <= self.test_fraction <= 1:
            raise InputError(f"--test-fraction must be in [0, 1], got {self.test_fraction}")
        if self.backend not in BACKENDS:
            raise InputError(f"--backend must be one of {', '.join(BACKENDS)}, got {self.backend}")
        if self.backend == "onnx" and self.pose_model is None:
            raise InputError("--backend onnx needs --pose-model FILE.onnx (DWPose or RTMW)")
        if self.backend != "onnx" and self.pose_model is not None:
            raise InputError(
                f"--pose-model does nothing with --backend {self.backend}: add --backend onnx"
            )


PREPARE_PRESETS: dict[str, PrepareConfig] = {
    "paper": PrepareConfig(),
    "face-only": PrepareConfig(
        filter=FILTER_PRESETS["face-only"], box_points="face", box_margin=0.5
    ),
}


@dataclass
class PrepareSummary:
    """What a run did; ``failures`` and ``notes`` are (source, reason) pairs."""

    sources: int = 0
    processed: int = 0
    already_done: int = 0
    clips_written: int = 0
    frames_kept: int = 0
    frames_total: int = 0
    frames_failed: int = 0
    undecoded: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)

    def fail(self, source: Path, reason: str, frames_total: int) -> None:
        """Count a failed source; ``frames_total`` 0: it could not be decoded."""
        self.failures.append((str(source), reason))
        self.frames_total += frames_total
        self.frames_failed += frames_total
        self.undecoded += int(frames_total == 0)

    def lines(self) -> list[str]:
        share = self.frames_kept / self.frames_total if self.frames_total else 0.0
        frames = f"frames kept: {self.frames_kept} of {self.frames_total} ({share:.1%})"
        decoded_failures = len(self.failures) - self.undecoded
        if decoded_failures:
            failed = count(decoded_failures, "failed source")
            frames += f"; {self.frames_failed} of them in {failed}"
        if self.undecoded:
            frames += f"; {count(self.undecoded, 'failed source')} not decoded, not counted"
        out = [
            f"sources: {self.sources} found, {self.processed} processed, "
            f"{self.already_done} already done, {len(self.failures)} failed",
            f"clips written: {self.clips_written}",
            frames,
        ]
        out += [f"note: {source}: {reason}" for source, reason in self.notes]
        out += [f"failed: {source}: {reason}" for source, reason in self.failures]
        return out


@dataclass(frozen=True)
class ClipPlan:
    """One clip to write: source frames ``[start, stop)`` through ``box``."""

    clip_id: str
    start: int
    stop: int
    box: CropBox


def find_sources(src: Path, out: Path) -> list[Path]:
    """Video files under ``src`` (or ``src`` itself), sorted, leaving out ``out``."""
    if src.is_file():
        return [src]
    if not src.is_dir():
        raise InputError(f"{src}: no such file or folder")
    out = out.resolve()
    return sorted(
        p
        for p in src.rglob("*")
        if p.is_file()
        and p.suffix.lower() in VIDEO_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(src).parts)
        and out not in p.resolve().parents
    )


def source_id(path: Path, root: Path) -> str:
    """A folder-safe id from the path below ``root`` (``a/b c.mp4`` -> ``a__b_c``)."""
    relative = path.relative_to(root) if path != root else Path(path.name)
    name = "__".join(relative.with_suffix("").parts)
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def speaker_id(path: Path, separator: str) -> str:
    """The speaker: the file-name stem up to the first ``separator`` (all of it if empty)."""
    stem = path.stem
    return stem.split(separator, 1)[0] if separator else stem


def split_of(speaker: str, test_fraction: float) -> str:
    """``test`` for a stable ``test_fraction`` share of speakers, else ``train``."""
    digest = hashlib.sha1(speaker.encode()).hexdigest()
    bucket = int(digest, 16) % SPLIT_BUCKETS
    return "test" if bucket < test_fraction * SPLIT_BUCKETS else "train"


def _write_wav(path: Path, samples: np.ndarray) -> None:
    soundfile.write(str(path), samples, AUDIO_SAMPLE_RATE, subtype="PCM_16")


class _ClipWriter:
    """Writes one clip into ``out/.tmp/<clip>/``; :meth:`finish` renames it into place."""

    def __init__(self, out: Path, plan: ClipPlan, fps: float) -> None:
        self.final = out / plan.clip_id
        self.tmp = out / TMP_DIR / plan.clip_id
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        self.video = VideoWriter(self.tmp / VIDEO_NAME, fps)
        self.video.__enter__()

    def add(self, frame: np.ndarray) -> None:
        self.video.add(frame)

    def finish(self, pose: PoseSequence, audio: np.ndarray | None, meta: dict) -> None:
        self.video.__exit__(None, None, None)
        pose.save(self.tmp / POSE_NAME)
        if audio is not None:
            _write_wav(self.tmp / AUDIO_NAME, audio)
        write_meta(self.tmp, meta)
        os.replace(self.tmp, self.final)

    def abort(self, exc: BaseException) -> None:
        try:
            self.video.__exit__(type(exc), exc, exc.__traceback__)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _clip_audio(audio: np.ndarray | None, start: int, stop: int, fps: float) -> np.ndarray | None:
    """The samples under frames ``[start, stop)`` (zero-padded past the end of the track)."""
    if audio is None:
        return None
    first, last = round(start * AUDIO_SAMPLE_RATE / fps), round(stop * AUDIO_SAMPLE_RATE / fps)
    piece = np.zeros(last - first, np.float32)
    available = audio[first:last]
    piece[: len(available)] = available
    return piece


class SourceFailure(InputError):
    """A source that could not be prepared after its ``frames_total`` frames were decoded."""

    def __init__(self, reason: str, frames_total: int) -> None:
        super().__init__(reason)
        self.frames_total = frames_total


def failure_reason(exc: BaseException, path: Path) -> str:
    """Why source ``path`` failed, for the summary (without a repeated ``video PATH:``)."""
    reason = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
    return reason.removeprefix(f"video {path}: ")


def plan_clips(
    keypoints: np.ndarray, width: int, height: int, sid: str, config: PrepareConfig
) -> list[ClipPlan]:
    """The clips of a source from its keypoints ``[T, 133, 3]``: the filter's kept runs, each
    with its crop box; :class:`InputError` when there is no person or no clip."""
    total = len(keypoints)
    if not (keypoints[..., 2] > 0).any():
        raise InputError(f"no person found in {total} frames")
    keep = keep_frames(keypoints, width, height, config.filter)
    runs = kept_runs(keep, config.min_frames, config.max_frames)
    if not runs:
        raise InputError(
            f"no clip: {int(keep.sum())} of {total} frames pass the filter, "
            f"none in a run of {config.min_frames}"
        )
    points = BOX_POINTS[config.box_points]
    return [
        ClipPlan(
            f"{sid}-{start:06d}",
            start,
            stop,
            clip_box(
                keypoints[start:stop],
                width,
                height,
                points,
                config.box_margin,
                config.box_min_confidence,
            ),
        )
        for start, stop in runs
    ]


@dataclass
class _SourceResult:
    clips: list[str]
    frames_total: int
    frames_kept: int
    note: str | None = None


def prepare_source(
    path: Path, root: Path, out: Path, config: PrepareConfig, progress: bool = False
) -> _SourceResult:
    """Write the clips of one source video; raises :class:`InputError` when it has none."""
    info = probe(path)
    if not info.fps > 0:
        raise InputError("unknown frame rate")
    audio = read_audio_track(path, AUDIO_SAMPLE_RATE)
    note = None
    if audio is None:
        if config.require_audio:
            raise InputError("no audio track")
        note = 'no audio track: clips kept without audio (meta "audio": false)'

    extractor = open_extractor(config.backend, config.pose_model)
    try:
        keypoints, (width, height) = extract_keypoints(
            iter_frames(path), extractor, "video", total=info.frames, progress=progress
        )
    finally:
        extractor.close()
    keypoints = smooth_keypoints(keypoints, info.fps, height, config.smoothing)
    total = len(keypoints)
    try:
        plans = plan_clips(keypoints, width, height, source_id(path, root), config)
    except InputError as exc:
        raise SourceFailure(str(exc), total) from None
    speaker = speaker_id(path, config.speaker_separator)
    size = config.size

    def finish(writer: _ClipWriter, plan: ClipPlan) -> None:
        pose = PoseSequence(
            plan.box.transform(keypoints[plan.start : plan.stop], size), info.fps, size, size
        )
        meta = {
            "id": plan.clip_id,
            "identity": speaker,
            "source": str(path),
            "split": split_of(speaker, config.test_fraction),
            "fps": info.fps,
            "width": size,
            "height": size,
            "frames": plan.stop - plan.start,
            "duration": clip_duration(plan.stop - plan.start, info.fps),
            "source_frames": [plan.start, plan.stop],
            "source_size": [width, height],
            "crop_box": [plan.box.x0, plan.box.y0, plan.box.side],
            "audio": audio is not None,
            "sample_rate": AUDIO_SAMPLE_RATE,
            "pose_backend": config.backend,
        }
        writer.finish(pose, _clip_audio(audio, plan.start, plan.stop, info.fps), meta)

    todo = [p for p in plans if not (out / p.clip_id / META_NAME).is_file()]
    try:
        _write_clips(path, out, todo, info.fps, size, finish)
    except Exception as exc:  # the frames were decoded: the summary counts them
        raise SourceFailure(failure_reason(exc, path), total) from exc
    return _SourceResult(
        clips=[p.clip_id for p in plans], frames_total=total,
        frames_kept=sum(p.stop - p.start for p in plans), note=note,
    )  # fmt: skip


def _write_clips(
    path: Path,
    out: Path,
    plans: list[ClipPlan],
    fps: float,
    size: int,
    finish: Callable[[_ClipWriter, ClipPlan], None],
) -> None:
    """Second decoding pass: crop the frames of each planned clip into its writer."""
    if not plans:
        return
    queue = iter(plans)
    plan: ClipPlan | None = next(queue)
    writer: _ClipWriter | None = None
    try:
        for index, frame in enumerate(iter_frames(path)):
            if index < plan.start:
                continue
            if writer is None:
                writer = _ClipWriter(out, plan, fps)
            writer.add(plan.box.crop(frame, size))
            if index == plan.stop - 1:
                finish(writer, plan)
                writer = None
                plan = next(queue, None)
                if plan is None:
                    break
    except BaseException as exc:
        if writer is not None:
            writer.abort(exc)
        raise
    if plan is not None:
        if writer is not None:
            writer.abort(InputError("video ended early"))
        raise InputError(f"the video ended before frame {plan.stop} on the second decoding")


def clip_folders(out: Path) -> list[Path]:
    """The finished clips of dataset ``out`` (folders with a ``meta.json``), sorted."""
    return sorted(p.parent for p in out.glob(f"*/{META_NAME}") if not p.parent.name.startswith("."))


def rebuild_manifest(out: Path) -> int:
    """Write ``out/manifest.jsonl`` from the clip folders' ``meta.json``; returns the count."""
    entries = [entry_from_meta(read_meta(folder), folder.name) for folder in clip_folders(out)]
    write_manifest(out, entries)
    return len(entries)


def prepare_dataset(
    src: str | Path, out: str | Path, config: PrepareConfig = PrepareConfig(), progress: bool = True
) -> PrepareSummary:
    """Prepare every video under ``src`` into ``out``; never stops on a bad file."""
    src, out = Path(src), Path(out)
    if config.box_points not in BOX_POINTS:
        raise InputError(f"box points {config.box_points!r}: choose one of {sorted(BOX_POINTS)}")
    sources = find_sources(src, out)
    if not sources:
        suffixes = ", ".join(sorted(VIDEO_SUFFIXES))
        raise InputError(f"{src}: no videos in this folder ({suffixes})")
    if config.backend == "onnx":  # a bad model fails here once, not once per source
        open_extractor(config.backend, config.pose_model).close()
    root = src if src.is_dir() else src.parent
    summary = PrepareSummary(sources=len(sources))
    created = make_folder(out, "dataset folder")
    make_folder(out / DONE_DIR, "dataset folder")
    try:
        for path in track(sources, "prepare", unit="video", enabled=progress):
            _prepare_one(path, root, out, config, summary, progress)
    finally:  # finished, failed or interrupted (Ctrl-C): the same resumable state
        _end_run(out, created)
    return summary


def _prepare_one(
    path: Path, root: Path, out: Path, config: PrepareConfig, summary: PrepareSummary,
    progress: bool,
) -> None:  # fmt: skip
    """Prepare source ``path`` unless it is marked done, counting it in ``summary``."""
    marker = out / DONE_DIR / f"{source_id(path, root)}.json"
    if marker.is_file():
        summary.already_done += 1
        return
    try:
        result = prepare_source(path, root, out, config, progress)
    except Exception as exc:  # one bad source never stops the run; it is reported
        frames = exc.frames_total if isinstance(exc, SourceFailure) else 0
        summary.fail(path, failure_reason(exc, path), frames)
        return
    summary.processed += 1
    summary.clips_written += len(result.clips)
    summary.frames_kept += result.frames_kept
    summary.frames_total += result.frames_total
    if result.note:
        summary.notes.append((str(path), result.note))
    write_json(marker, {"source": str(path), **result.__dict__})


def _end_run(out: Path, created: bool) -> None:
    """Leave ``out`` as every run ends, finished, failed or interrupted: no temporary clip,
    and a manifest of every finished clip (sources marked done are skipped by a rerun, the
    others retried, their finished clips kept). A folder this run made that holds no
    finished clip is removed."""
    shutil.rmtree(out / TMP_DIR, ignore_errors=True)
    if created and not clip_folders(out):
        shutil.rmtree(out, ignore_errors=True)
    else:
        rebuild_manifest(out)
