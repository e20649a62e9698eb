"""Speed and streaming-vs-offline figures of a motion model (``cospeech bench motion``).

* streaming: compute per chunk (after warm-up) against the chunk's duration, and the
  algorithmic latency (chunk + lookahead);
* offline: real-time factor on a long signal, and the peak resident memory growth while
  generating it (windows keep it bounded);
* agreement of streaming with offline output on dataset clips: mean face-keypoint distance
  (px), the correlation of their mouth openings, the ratio of their hand variances, and how
  much the hands jump at chunk seams (:func:`seam_speeds`).
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cospeech.motion.generate import MotionGenerator, MotionOptions
from cospeech.motion.metrics import HANDS, correlation, hand_variance, mouth_opening
from cospeech.motion.normalize import FACE_POINTS
from cospeech.pose.sequence import PoseSequence
from cospeech.progress import track

SAMPLE_RATE = 16000
WARMUP_CHUNKS = 3


@dataclass
class StreamTiming:
    chunk_s: float
    latency_s: float
    mean_compute_s: float
    p95_compute_s: float


def time_streaming(
    generator: MotionGenerator,
    audio: np.ndarray,
    reference: PoseSequence,
    chunk_frames: int,
    threads: int = 1,
    progress: bool = False,
) -> StreamTiming:
    """Push ``audio`` one chunk's worth of samples at a time; time each push that emits."""
    options = MotionOptions(chunk_frames=chunk_frames, threads=threads)
    stream = generator.stream(reference, options=options)
    step = round(chunk_frames / options.fps * SAMPLE_RATE)
    times = []
    pushes = range(0, audio.size, step)
    for start in track(pushes, f"streaming {chunk_frames}-frame chunks", unit="chunk",
                       enabled=progress):  # fmt: skip
        began = time.perf_counter()
        out = stream.push(audio[start : start + step])
        if out is not None:
            times.append(time.perf_counter() - began)
    stream.finish()
    times = np.array(times[WARMUP_CHUNKS:] or times)
    return StreamTiming(
        chunk_s=chunk_frames / options.fps,
        latency_s=chunk_frames / options.fps + stream.latency_s,
        mean_compute_s=float(times.mean()),
        p95_compute_s=float(np.percentile(times, 95)),
    )


def time_offline(
    generator: MotionGenerator,
    audio: np.ndarray,
    reference: PoseSequence,
    threads: int = 1,
    progress: bool = False,
) -> tuple[float, float]:
    """``(seconds of compute per second of audio, peak resident memory growth in MiB)``."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    began = time.perf_counter()
    options = MotionOptions(threads=threads)
    generator.generate(audio, reference, options=options, progress=progress)
    elapsed = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return elapsed / (audio.size / SAMPLE_RATE), (after - before) / 1024


def seam_speeds(keypoints: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Hand speeds (px per frame, mean over the 42 hand points) of ``keypoints [T, 133, 3]``
    split into ``(steps across a chunk seam, steps inside a chunk)``, for chunks of ``chunk``
    frames starting at frame 0."""
    hands = keypoints[:, list(HANDS), :2].astype(np.float64)
    speed = np.linalg.norm(np.diff(hands, axis=0), axis=-1).mean(axis=1)
    seam = np.arange(1, len(keypoints)) % chunk == 0
    return speed[seam], speed[~seam]


def streaming_agreement(
    generator: MotionGenerator, data: str | Path, split: str, clips: int, progress: bool = False
) -> dict[str, float]:
    """Streaming vs offline on the first ``clips`` clips of ``split``: mean face distance
    (px), mouth-opening correlation, hand variance ratio (streaming / offline), and the
    seam ratio of each mode: mean hand speed across the streaming chunks' seams over the
    mean speed inside them (1 = no jump; offline has no seams, its ratio is the baseline)."""
    from cospeech.motion.dataset import load_split

    options = MotionOptions()
    distances, correlations = [], []
    variances: dict[str, list[float]] = {"offline": [], "streaming": []}
    speeds: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"offline": [], "streaming": []}
    loaded = load_split(data, split, clips, progress=progress)
    for clip in track(loaded, "streaming vs offline", unit="clip", enabled=progress):
        offline = generator.generate(clip.audio, clip.reference_pose, options=options).keypoints
        streamed = generator.generate(
            clip.audio, clip.reference_pose, options=options, streaming=True
        ).keypoints
        face = list(FACE_POINTS)
        distances.append(np.linalg.norm(offline[:, face, :2] - streamed[:, face, :2], axis=-1))
        correlations.append(correlation(mouth_opening(offline), mouth_opening(streamed)))
        for mode, keypoints in (("offline", offline), ("streaming", streamed)):
            variances[mode].append(hand_variance(keypoints))
            speeds[mode].append(seam_speeds(keypoints, options.chunk_frames))

    def seam_ratio(mode: str) -> float:
        across = np.concatenate([a for a, _ in speeds[mode]])
        inside = np.concatenate([b for _, b in speeds[mode]])
        return float(across.mean() / inside.mean())

    return {
        "face_distance_px": float(np.mean(np.concatenate([d.ravel() for d in distances]))),
        "mouth_correlation": float(np.nanmean(correlations)),
        "hand_variance_ratio": float(
            np.mean(variances["streaming"]) / np.mean(variances["offline"])
        ),
        "seam_ratio_streaming": seam_ratio("streaming"),
        "seam_ratio_offline": seam_ratio("offline"),
    }
