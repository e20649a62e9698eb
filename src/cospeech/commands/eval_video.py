"""``cospeech eval video``: face, identity, lip sync, hands and image quality of any video."""

from __future__ import annotations

import argparse


def _skip_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _run(args: argparse.Namespace) -> int:
    from cospeech.eval.video.faces import FaceConfig
    from cospeech.eval.video.report import (
        VideoEvalConfig,
        evaluate_video,
        format_table,
        json_ready,
    )
    from cospeech.jsonfile import write_json

    config = VideoEvalConfig(
        faces=FaceConfig(upsample=args.upsample),
        max_offset=args.max_offset,
        skip=_skip_list(args.skip),
    )
    report = evaluate_video(args.video, args.reference, args.audio, config, progress=True)
    print(format_table(report))
    if args.json:
        write_json(args.json, json_ready(report))
    return 0


def register(tree) -> None:
    p = tree.subcommand(
        "eval", "video", "face rate, identity, lip sync, hands, flicker and sharpness of a video",
        _run, group_help="evaluate models",
    )  # fmt: skip
    p.add_argument("video", help="the video to measure (real or generated)")
    p.add_argument(
        "--reference",
        help="photo of the person, for the identity (default: the first frame with a face)",
    )
    p.add_argument("--audio", help="speech for the sync (default: the video's own audio)")
    p.add_argument("--json", help="also write the measures as JSON (NaN written as null)")
    p.add_argument(
        "--skip", default="",
        help="comma-separated measures to leave out: identity, sync, hands, quality",
    )  # fmt: skip
    p.add_argument(
        "--max-offset", type=int, default=15, help="sync offsets searched, +-frames (default 15)"
    )
    p.add_argument(
        "--upsample", type=int, default=1,
        help="face detector upsampling 0-3 (1: faces from about 40 px; default 1)",
    )  # fmt: skip
