"""``cospeech data prepare SRC --out DIR``: real videos -> the dataset format."""

from __future__ import annotations

import argparse
import dataclasses

from cospeech.errors import InputError

# What --help shows as each option's default: the values of the presets in
# cospeech.data.prepare.PREPARE_PRESETS (that module loads only when the command runs;
# tests/test_errors_runs.py checks that these agree with it).
DEFAULTS = {
    "face_confidence": "0.9", "upper_body_confidence": "0.8; --filter paper only",
    "upper_body_visibility": "0.9; --filter paper only", "min_frames": "25",
    "max_frames": "250", "size": "512", "margin": "0.2 with --filter paper, 0.5 with face-only",
    "backend": "mediapipe", "pose_model": "none; --backend onnx needs one",
    "test_fraction": "0",
}  # fmt: skip
UPPER_BODY_FLAGS = ("upper_body_confidence", "upper_body_visibility")


def _run(args: argparse.Namespace) -> int:
    from cospeech.data.prepare import PREPARE_PRESETS, prepare_dataset

    config = PREPARE_PRESETS[args.filter]
    for name in UPPER_BODY_FLAGS:
        if getattr(args, name) is not None and not config.filter.use_upper_body:
            flag = "--" + name.replace("_", "-")
            raise InputError(f"{flag} does nothing with --filter {args.filter} (face only)")
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
    options = {
        "face_confidence": (float, "keep frames whose mean face confidence is above this"),
        "upper_body_confidence": (float, "keep frames whose upper-body confidence is above this"),
        "upper_body_visibility": (float, "keep frames with this share of upper-body points seen"),
        "min_frames": (int, "shortest clip kept (frames)"),
        "max_frames": (int, "longer runs are cut into clips this long (frames)"),
        "size": (int, "clip side in pixels (even)"),
        "margin": (float, "crop margin per side, share of the extent"),
        "pose_model": (str, "DWPose / RTMW whole-body .onnx"),
        "test_fraction": (float, "share of speakers in the test split"),
    }  # fmt: skip
    for name, (kind, text) in options.items():
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=kind, help=f"{text} (default: {DEFAULTS[name]})")
    parser.add_argument(
        "--backend", choices=["mediapipe", "onnx"],
        help=f"keypoint backend (default: {DEFAULTS['backend']})",
    )  # fmt: skip
    parser.add_argument(
        "--require-audio", action="store_true", help="skip sources without an audio track"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
