"""``cospeech eval vae``: reconstruction PSNR/SSIM/lip sync of a video VAE on held-out clips."""

from __future__ import annotations

import argparse

from cospeech.commands.eval_teacher import add_clip_options


def _run(args: argparse.Namespace) -> int:
    from cospeech.atomic import check_output
    from cospeech.errors import count
    from cospeech.eval.teacher import check_clip_options, write_report
    from cospeech.eval.vae import evaluate_vae
    from cospeech.models.vae import TinyVideoVAE
    from cospeech.shipped import ASSETS, VAE_DIR

    check_clip_options(args.clips, args.frames)
    if args.output:
        check_output(args.output, name="--output")
    vae = TinyVideoVAE.from_pretrained(args.model or ASSETS / VAE_DIR)
    report = evaluate_vae(vae, args.data, args.split, args.clips, args.frames)
    for clip in report["clips"]:
        print(f"{clip['clip']}: PSNR {clip['psnr']:.2f} dB, SSIM {clip['ssim']:.3f}, "
              f"lip sync r {clip['lipsync']:.2f}")  # fmt: skip
    mean = report["mean"]
    print(f"mean over {count(len(report['clips']), 'clip')}: PSNR {mean['psnr']:.2f} dB, "
          f"SSIM {mean['ssim']:.3f}, lip sync r {mean['lipsync']:.2f}")  # fmt: skip
    if args.output:
        write_report(report, args.output)
    return 0


def register(tree) -> None:
    parser = tree.subcommand(
        "eval", "vae", "reconstruction PSNR/SSIM/lip sync of a video VAE on held-out clips", _run,
        group_help="evaluate trained models",
    )  # fmt: skip
    add_clip_options(parser)
    parser.add_argument("--model", help="TinyVideoVAE folder (default: the shipped demo VAE)")
    parser.add_argument("-o", "--output", help="write the report as JSON")
