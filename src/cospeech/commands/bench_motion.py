"""``cospeech bench motion``: streaming chunk compute, offline speed and memory, and how
close streaming output is to offline output."""

from __future__ import annotations

import argparse


def _run(args: argparse.Namespace) -> int:
    import numpy as np

    from cospeech.errors import InputError
    from cospeech.motion.bench import streaming_agreement, time_offline, time_streaming
    from cospeech.motion.dataset import load_split
    from cospeech.motion.generate import MotionGenerator

    if args.threads < 1 or args.long_s <= 0 or args.stream_s <= 0:
        raise InputError("--threads, --long-s and --stream-s must be positive")
    generator = MotionGenerator.load(args.model)
    clip = load_split(args.data, args.split, limit=1)[0]
    reference = clip.reference_pose

    def tiled(seconds: float) -> np.ndarray:
        return np.resize(clip.audio, round(seconds * 16000)).astype(np.float32)

    print(f"threads: {args.threads}")
    for chunk in args.chunks:
        t = time_streaming(generator, tiled(args.stream_s), reference, chunk, args.threads)
        print(
            f"streaming chunk {chunk} frames ({t.chunk_s * 1000:.0f} ms): compute mean "
            f"{t.mean_compute_s * 1000:.1f} ms, p95 {t.p95_compute_s * 1000:.1f} ms "
            f"({t.mean_compute_s / t.chunk_s:.3f} of real time); latency "
            f"{t.latency_s * 1000:.0f} ms"
        )
    rtf, memory = time_offline(generator, tiled(args.long_s), reference, args.threads)
    print(f"offline {args.long_s:.0f} s: {rtf:.4f} s per audio second, peak RSS +{memory:.0f} MiB")
    if args.agreement_clips > 0:
        agree = streaming_agreement(generator, args.data, args.split, args.agreement_clips)
        print(
            f"streaming vs offline on {args.agreement_clips} clips: face distance "
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
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--chunks", type=int, nargs="+", default=[5, 10], help="chunk sizes (frames)")
    p.add_argument("--stream-s", type=float, default=30.0, help="seconds streamed per chunk size")
    p.add_argument("--long-s", type=float, default=600.0, help="offline input length (s)")
    p.add_argument("--agreement-clips", type=int, default=20, help="clips for agreement")
