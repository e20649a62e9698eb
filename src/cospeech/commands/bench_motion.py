"""``cospeech bench motion``: streaming chunk compute, offline speed and memory, and how
close streaming output is to offline output."""

from __future__ import annotations

import argparse

SPLITS = ("train", "val", "test")


def _check_seconds(flag: str, value: float, limit: float) -> None:
    """``InputError`` naming ``flag`` unless ``0 < value <= limit`` (seconds)."""
    import math

    from cospeech.errors import InputError

    if not (math.isfinite(value) and 0 < value <= limit):
        raise InputError(f"{flag} must be in (0, {limit:g}] seconds, got {value:g}")


def _check(args: argparse.Namespace) -> None:
    """Every option's range, before the model and data are read."""
    import os

    from cospeech.audio.load import AudioConfig
    from cospeech.errors import check_range
    from cospeech.motion.generate import MotionOptions

    check_range("--threads", args.threads, 1, os.cpu_count() or 1)
    for chunk in args.chunks:
        check_range("--chunks", chunk, 1, MotionOptions().window_frames)
    limit = AudioConfig().max_duration_s
    _check_seconds("--stream-s", args.stream_s, limit)
    _check_seconds("--long-s", args.long_s, limit)
    check_range("--agreement-clips", args.agreement_clips, 0)


def _run(args: argparse.Namespace) -> int:
    import numpy as np

    from cospeech.errors import count
    from cospeech.motion.bench import streaming_agreement, time_offline, time_streaming
    from cospeech.motion.dataset import load_split
    from cospeech.motion.generate import MotionGenerator

    _check(args)
    generator = MotionGenerator.load(args.model)
    clip = load_split(args.data, args.split, limit=1)[0]
    reference = clip.reference_pose

    def tiled(seconds: float) -> np.ndarray:
        return np.resize(clip.audio, round(seconds * 16000)).astype(np.float32)

    print(f"threads: {args.threads}")
    for chunk in args.chunks:
        t = time_streaming(
            generator, tiled(args.stream_s), reference, chunk, args.threads, progress=True
        )
        print(
            f"streaming chunk {count(chunk, 'frame')} ({t.chunk_s * 1000:.0f} ms): compute "
            f"mean {t.mean_compute_s * 1000:.1f} ms, p95 {t.p95_compute_s * 1000:.1f} ms "
            f"({t.mean_compute_s / t.chunk_s:.3f} of real time); latency "
            f"{t.latency_s * 1000:.0f} ms"
        )
    rtf, memory = time_offline(
        generator, tiled(args.long_s), reference, args.threads, progress=True
    )
    print(f"offline {args.long_s:g} s: {rtf:.4f} s per audio second, peak RSS +{memory:.0f} MiB")
    if args.agreement_clips > 0:
        agree = streaming_agreement(
            generator, args.data, args.split, args.agreement_clips, progress=True
        )
        print(
            f"streaming vs offline on {count(args.agreement_clips, 'clip')}: face distance "
            f"{agree['face_distance_px']:.3f} px, mouth-opening correlation "
            f"{agree['mouth_correlation']:.3f}, hand variance ratio "
            f"{agree['hand_variance_ratio']:.2f}; hand speed across chunk seams / inside: "
            f"streaming {agree['seam_ratio_streaming']:.2f}, offline "
            f"{agree['seam_ratio_offline']:.2f}"
        )
    return 0


def register(tree) -> None:
    p = tree.subcommand(
        "bench", "motion", "motion model: streaming chunk compute, offline speed, agreement",
        _run, group_help="speed benchmarks",
    )  # fmt: skip
    p.add_argument("--model", help="motion model folder (default: the shipped model)")
    p.add_argument("--data", required=True, help="dataset folder (audio and references)")
    p.add_argument("--split", default="test", choices=SPLITS, help="split to read")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument(
        "--chunks", type=int, nargs="+", default=[5, 10], help="streaming chunk sizes in frames"
    )
    p.add_argument("--stream-s", type=float, default=30.0, help="seconds streamed per chunk size")
    p.add_argument("--long-s", type=float, default=600.0, help="offline input length in seconds")
    p.add_argument(
        "--agreement-clips", type=int, default=20,
        help="first N clips for streaming vs offline agreement, 0 skips it",
    )  # fmt: skip
