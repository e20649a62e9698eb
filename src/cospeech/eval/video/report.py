"""One pass over a video that gathers every measure of :mod:`cospeech.eval.video`.

Inputs are checked before any frame is analysed (a file that is not a video, a missing
audio stream when the sync is measured, an unreadable reference photo or one without a
face), so a bad input costs nothing and leaves no output. The report is a flat dict (see
``docs/eval.md`` for every key); :func:`json_ready` turns its NaNs into None for strict JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cospeech.errors import InputError
from cospeech.eval.video.faces import Face, FaceAnalyzer, FaceConfig, identity_scores
from cospeech.eval.video.faces import reference_descriptor as face_descriptor
from cospeech.eval.video.hands import HandConfig, hand_scores
from cospeech.eval.video.image_quality import (
    STATIC_QUANTILE,
    crop,
    flicker,
    laplacian_variance,
    luma,
)
from cospeech.eval.video.sync import MAX_OFFSET, estimate_sync, loudness_envelope
from cospeech.pose.face68 import head_motion, head_turn, mouth_opening

MEASURES = ("identity", "sync", "hands", "quality")
SAMPLE_RATE = 16000
MEASURE_KEYS = {
    "identity": ("identity_reference", "identity_same_rate", "identity_distance"),
    "sync": (
        "sync_audio", "sync_offset_frames", "sync_offset_seconds", "sync_confidence",
        "mouth_speech_corr", "sync_correlations",
    ),
    "hands": ("hand_confidence", "hand_variance", "hand_expected", "hand_found"),
    "quality": ("flicker", "sharpness", "sharpness_face"),
}  # fmt: skip


@dataclass(frozen=True)
class VideoEvalConfig:
    """Settings of ``cospeech eval video``; ``skip``: measures of :data:`MEASURES` to leave
    out (their keys are reported as None)."""

    faces: FaceConfig = field(default_factory=FaceConfig)
    hands: HandConfig = field(default_factory=HandConfig)
    max_offset: int = MAX_OFFSET
    static_quantile: float = STATIC_QUANTILE
    skip: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.skip) - set(MEASURES))
        if unknown:
            raise InputError(f"unknown measures to skip {unknown}; choose from {list(MEASURES)}")
        if not 0 <= self.max_offset <= 100:
            raise InputError(f"the largest sync offset must be in [0, 100], got {self.max_offset}")

    def wants(self, measure: str) -> bool:
        return measure not in self.skip


@dataclass
class FrameRecords:
    """What the pass over the frames keeps, one entry per frame."""

    faces: list[Face | None] = field(default_factory=list)
    keypoints: list[np.ndarray] = field(default_factory=list)
    lumas: list[np.ndarray] = field(default_factory=list)
    sharpness: list[float] = field(default_factory=list)
    face_sharpness: list[float] = field(default_factory=list)

    def landmarks(self) -> np.ndarray:
        """``[F, 68, 2]``, NaN where no face was found."""
        empty = np.full((68, 2), np.nan)
        return np.stack([empty if f is None else f.landmarks for f in self.faces])

    def descriptors(self) -> np.ndarray:
        """``[F, 128]``, NaN where no face (or no descriptor) was found."""
        empty = np.full(128, np.nan)
        rows = [empty if f is None or f.descriptor is None else f.descriptor for f in self.faces]
        return np.stack(rows)


def _finite_mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def load_speech(video: Path, audio: str | Path | None) -> np.ndarray:
    """Mono 16 kHz speech ``[N]`` from ``audio`` or else the video's own audio stream."""
    from cospeech.audio.load import load_audio
    from cospeech.media.video import read_audio_track

    if audio is not None:
        return load_audio(audio)
    speech = read_audio_track(video, SAMPLE_RATE)
    if speech is None:
        raise InputError(
            f"video {video}: no audio stream to measure the sync with; give --audio WAV "
            "or --skip sync"
        )
    if speech.size == 0:
        raise InputError(f"video {video}: its audio stream holds no samples")
    return speech


def load_reference(analyzer: FaceAnalyzer, reference: str | Path) -> np.ndarray:
    """The identity descriptor ``[128]`` of a reference photo."""
    from cospeech.pose.extract import read_image

    return face_descriptor(analyzer, read_image(reference), str(reference))


def analyse_frames(
    video: Path,
    analyzer: FaceAnalyzer,
    config: VideoEvalConfig,
    total: int | None = None,
    progress: bool = False,
) -> FrameRecords:
    """Faces, hand keypoints and image measures of every frame of ``video``."""
    from cospeech.media.video import iter_frames
    from cospeech.progress import track

    records = FrameRecords()
    holistic = None
    if config.wants("hands"):
        from cospeech.pose.extract.mediapipe_backend import MediaPipeHolistic

        holistic = MediaPipeHolistic(static_images=False)
    try:
        frames = track(iter_frames(video), "eval video", total, "frame", enabled=progress)
        for frame in frames:
            face = analyzer(frame)
            records.faces.append(face)
            if holistic is not None:
                records.keypoints.append(holistic(frame))
            if config.wants("quality"):
                gray = luma(frame)
                records.lumas.append(gray)
                records.sharpness.append(laplacian_variance(gray))
                face_crop = crop(gray, face.box) if face is not None else None
                records.face_sharpness.append(
                    float("nan") if face_crop is None else laplacian_variance(face_crop)
                )
    finally:
        if holistic is not None:
            holistic.close()
    if not records.faces:
        raise InputError(f"video {video}: no decodable frames")
    return records


def identity_report(
    records: FrameRecords, reference: np.ndarray | None, name: str | None, config: FaceConfig
) -> dict[str, Any]:
    """Identity keys; without a reference photo the first frame with a face is the reference."""
    descriptors = records.descriptors()
    if reference is None:
        found = np.flatnonzero(np.isfinite(descriptors).all(axis=1))
        if found.size == 0:
            return {"identity_reference": None, "identity_same_rate": float("nan"),
                    "identity_distance": float("nan")}  # fmt: skip
        reference, name = descriptors[found[0]], f"frame {found[0]}"
    same, distance = identity_scores(descriptors, reference, config.same_person_distance)
    return {"identity_reference": name, "identity_same_rate": same, "identity_distance": distance}


def sync_report(
    records: FrameRecords, speech: np.ndarray, source: str, fps: float, max_offset: int
) -> dict[str, Any]:
    mouth = mouth_opening(records.landmarks())
    loudness = loudness_envelope(speech, SAMPLE_RATE, fps, len(mouth))
    result = estimate_sync(mouth, loudness, max_offset)
    return {
        "sync_audio": source,
        "sync_offset_frames": result.offset,
        "sync_offset_seconds": float("nan") if result.offset is None else result.offset / fps,
        "sync_confidence": result.confidence,
        "mouth_speech_corr": result.zero_offset_correlation,
        "sync_correlations": {
            int(k): float(v) for k, v in zip(result.offsets, result.correlations, strict=True)
        },
    }


def hands_report(records: FrameRecords, config: HandConfig) -> dict[str, Any]:
    scores = hand_scores(np.stack(records.keypoints), config)
    return {"hand_confidence": scores.confidence, "hand_variance": scores.variance,
            "hand_expected": scores.expected, "hand_found": scores.found}  # fmt: skip


def quality_report(records: FrameRecords, quantile: float) -> dict[str, Any]:
    return {
        "flicker": flicker(np.stack(records.lumas), quantile),
        "sharpness": _finite_mean(records.sharpness),
        "sharpness_face": _finite_mean(records.face_sharpness),
    }


def evaluate_video(
    video: str | Path,
    reference: str | Path | None = None,
    audio: str | Path | None = None,
    config: VideoEvalConfig | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Every measure of ``video`` as a flat dict (NaN where a measure is undefined)."""
    from cospeech.media.video import probe

    config = config or VideoEvalConfig()
    video = Path(video)
    info = probe(video)
    if info.fps <= 0:
        raise InputError(f"video {video}: no frame rate in the container")
    if reference is not None and not config.wants("identity"):
        raise InputError("--reference is only used by the identity measure, which is skipped")
    if audio is not None and not config.wants("sync"):
        raise InputError("--audio is only used by the sync measure, which is skipped")
    speech = load_speech(video, audio) if config.wants("sync") else None
    analyzer = FaceAnalyzer(config.faces, descriptors=config.wants("identity"))
    reference_vector = None
    if reference is not None:
        reference_vector = load_reference(analyzer, reference)
    records = analyse_frames(video, analyzer, config, info.frames, progress)
    frames = len(records.faces)
    face_frames = sum(face is not None for face in records.faces)
    landmarks = records.landmarks()
    report: dict[str, Any] = {
        "video": str(video), "frames": frames, "fps": info.fps,
        "width": info.width, "height": info.height,
        "face_rate": face_frames / frames, "face_frames": face_frames,
        "head_motion": head_motion(landmarks), "head_turn": head_turn(landmarks),
    }  # fmt: skip
    for measure in MEASURES:
        report.update(dict.fromkeys(MEASURE_KEYS[measure]))
    if config.wants("identity"):
        name = None if reference is None else str(reference)
        report.update(identity_report(records, reference_vector, name, config.faces))
    if config.wants("sync"):
        source = "video" if audio is None else str(audio)
        report.update(sync_report(records, speech, source, info.fps, config.max_offset))
    if config.wants("hands"):
        report.update(hands_report(records, config.hands))
    if config.wants("quality"):
        report.update(quality_report(records, config.static_quantile))
    report["skipped"] = [m for m in MEASURES if not config.wants(m)]
    return report


def json_ready(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_table(report: dict[str, Any]) -> str:
    """The report as ``key  value`` lines (the per-offset correlations left out)."""
    rows = [(k, v) for k, v in report.items() if k not in ("sync_correlations", "skipped")]
    if report.get("skipped"):
        rows.append(("skipped", ", ".join(report["skipped"])))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {_cell(v)}" for k, v in rows)
