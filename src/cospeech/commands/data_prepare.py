"""``cospeech data prepare SRC --out DIR``: real videos -> the dataset format."""

from __future__ import annotations

import argparse
import dataclasses

from cospeech.errors import InputError


def _run(args: argparse.Namespace) -> int:
    from cospeech.data.prepare import PREPARE_PRESETS, prepare_dataset

    config = PREPARE_PRESETS[args.filter]
    thresholds = {
        "face_confidence": args.face_confidence,
        "upper_body_confidence": args.upper_body_confidence,
        "upper_body_visibility": args.upper_body_visibility,
    }
    filter_config = dataclasses.replace(
        config.filter, **{k: v for k, v in thresholds.items() if v is not None}
    )
    options = {
        "size": args.size,
        "min_frames": args.min_frames,
        "max_frames": args.max_frames,
        "box_margin": args.margin,
        "backend": args.backend,
        "pose_model": args.pose_model,
        "test_fraction": args.test_fraction,
    }
    config = dataclasses.replace(
        config,
        filter=filter_config,
        require_audio=args.require_audio,
        **{k: v for k, v in options.items() if v is not None},
    )
    if config.backend == "onnx" and config.pose_model is None:
        raise InputError("--backend onnx needs --pose-model FILE.onnx (DWPose or RTMW)")
    summary = prepare_dataset(args.src, args.out, config, progress=not args.quiet)
    print("\n".join(summary.lines()))
    if summary.failures and not summary.processed and not summary.already_done:
        source, reason = summary.failures[0]
        more = f" (and {len(summary.failures) - 1} more)" if len(summary.failures) > 1 else ""
        raise InputError(f"no source could be prepared: {source}: {reason}{more}")
    return 0


def register(tree) -> None:
    parser = tree.subcommand(
        "data",
        "prepare",
        "cut real videos into dataset clips (keypoints, filter, crop, 16 kHz audio)",
        _run,
        group_help="build and prepare datasets",
    )
    parser.add_argument("src", help="a video file or a folder searched for videos")
    parser.add_argument("--out", required=True, help="dataset folder (re-run to resume)")
    parser.add_argument(
        "--filter", default="paper", choices=["paper", "face-only"],
        help="frame filter preset: paper (face + upper body) or face-only (talking heads)",
    )  # fmt: skip
    parser.add_argument("--face-confidence", type=float, help="mean face confidence above this")
    parser.add_argument("--upper-body-confidence", type=float, help="mean upper-body confidence")
    parser.add_argument(
        "--upper-body-visibility", type=float, help="share of upper-body points in view"
    )
    parser.add_argument("--min-frames", type=int, help="shortest clip kept (frames)")
    parser.add_argument("--max-frames", type=int, help="longer runs are cut into clips this long")
    parser.add_argument("--size", type=int, help="clip side in pixels (even)")
    parser.add_argument("--margin", type=float, help="crop margin per side, share of the extent")
    parser.add_argument("--backend", choices=["mediapipe", "onnx"], help="keypoint backend")
    parser.add_argument("--pose-model", help="DWPose / RTMW whole-body .onnx (--backend onnx)")
    parser.add_argument(
        "--require-audio", action="store_true", help="skip sources without an audio track"
    )
    parser.add_argument("--test-fraction", type=float, help="share of speakers in the test split")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
