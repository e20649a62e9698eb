"""``cospeech eval vae``: reconstruction PSNR/SSIM/lip sync of a video VAE on held-out clips."""

from __future__ import annotations

import argparse


def _run(args: argparse.Namespace) -> int:
    from cospeech.eval.teacher import write_report
    from cospeech.eval.vae import evaluate_vae
    from cospeech.models.vae import TinyVideoVAE
    from cospeech.pipeline.bundle import ASSETS, VAE_DIR

    vae = TinyVideoVAE.from_pretrained(args.model or ASSETS / VAE_DIR)
    report = evaluate_vae(vae, args.data, args.split, args.clips, args.frames)
    for clip in report["clips"]:
        print(f"{clip['clip']}: PSNR {clip['psnr']:.2f} dB, SSIM {clip['ssim']:.3f}, "
              f"lip sync r {clip['lipsync']:.2f}")  # fmt: skip
    mean = report["mean"]
    print(f"mean over {len(report['clips'])} clips: PSNR {mean['psnr']:.2f} dB, "
          f"SSIM {mean['ssim']:.3f}, lip sync r {mean['lipsync']:.2f}")  # fmt: skip
    if args.output:
        write_report(report, args.output)
    return 0


def register(tree) -> None:
    parser = tree.subcommand(
        "eval", "vae", "reconstruction PSNR/SSIM/lip sync of a video VAE on held-out clips", _run,
        group_help="evaluate trained models",
    )  # fmt: skip
    parser.add_argument("--data", required=True, help="dataset folder (manifest.jsonl)")
    parser.add_argument("--split", default="test", help="split to evaluate (default test)")
    parser.add_argument(
        "--clips", type=int, default=24,
        help="clips to evaluate, one per identity first (24: every test identity of the "
        "corpus; 0: all)",
    )  # fmt: skip
    parser.add_argument("--frames", type=int, default=49, help="frames per clip (1 + 4k)")
    parser.add_argument("--model", help="TinyVideoVAE folder (default: the shipped demo VAE)")
    parser.add_argument("-o", "--output", help="write the report as JSON")
