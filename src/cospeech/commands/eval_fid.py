"""``cospeech eval fid`` and ``cospeech eval fvd``: Frechet distances of two sets of media
in the feature spaces of the published networks (Inception-v3, I3D)."""

from __future__ import annotations

import argparse

FID_HELP = "FID of two sets of images / video frames (pytorch-fid's Inception-v3)"
FVD_HELP = "FVD of two sets of videos (I3D on 16-frame clips)"


def _report(report: dict, json_path: str | None) -> None:
    """Print ``key  value`` lines; also write ``report`` as JSON when asked."""
    width = max(len(k) for k in report)
    for key, value in report.items():
        shown = f"{value:.4f}" if isinstance(value, float) else value
        print(f"{key:<{width}}  {shown}")
    if json_path:
        from cospeech.jsonfile import write_json

        write_json(json_path, report)


def _run_fid(args: argparse.Namespace) -> int:
    from cospeech.eval.fid import FidConfig, compute_fid
    from cospeech.eval.networks.inception import WEIGHTS_FILE, WEIGHTS_URL
    from cospeech.eval.networks.weights import weight_file

    weights = weight_file(args.weights, WEIGHTS_FILE, "FID", WEIGHTS_URL)
    config = FidConfig(args.frames_per_video, args.batch, args.device)
    _report(compute_fid(args.real, args.gen, weights, config, progress=True), args.json)
    return 0


def _run_fvd(args: argparse.Namespace) -> int:
    from cospeech.eval.fvd import FvdConfig, compute_fvd
    from cospeech.eval.networks.i3d import WEIGHTS_FILE, WEIGHTS_URL
    from cospeech.eval.networks.weights import weight_file

    weights = weight_file(args.weights, WEIGHTS_FILE, "FVD", WEIGHTS_URL)
    config = FvdConfig(args.clips_per_video, args.batch, args.device)
    _report(compute_fvd(args.real, args.gen, weights, config, progress=True), args.json)
    return 0


def _common(p: argparse.ArgumentParser, media: str, weights: str) -> None:
    p.add_argument("real", help=f"the real set: a folder of {media}, or one video")
    p.add_argument("gen", help=f"the generated set: a folder of {media}, or one video")
    p.add_argument(
        "--weights",
        help=f"the network's weight file (default: $COSPEECH_WEIGHTS/{weights}; see docs/eval.md)",
    )
    p.add_argument("--device", help="torch device, e.g. cpu or cuda (default: CUDA if available)")
    p.add_argument("--json", help="also write the result as JSON")


def register(tree) -> None:
    from cospeech.eval.networks.i3d import WEIGHTS_FILE as I3D_FILE
    from cospeech.eval.networks.inception import WEIGHTS_FILE as INCEPTION_FILE

    p = tree.subcommand("eval", "fid", FID_HELP, _run_fid, group_help="evaluate models")
    _common(p, "images and / or videos", INCEPTION_FILE)
    p.add_argument(
        "--frames-per-video", type=int, default=16,
        help="evenly spaced frames taken from each video, first and last included",
    )  # fmt: skip
    p.add_argument("--batch", type=int, default=16, help="images per network call")

    p = tree.subcommand("eval", "fvd", FVD_HELP, _run_fvd, group_help="evaluate models")
    _common(p, "videos", I3D_FILE)
    p.add_argument(
        "--clips-per-video", type=int, default=1,
        help="16-frame clips taken from the start of each video (frames 0-15, 16-31, ...)",
    )  # fmt: skip
    p.add_argument("--batch", type=int, default=4, help="clips per network call")
