"""``cospeech eval teacher``: teacher videos vs ground truth on held-out identities."""

from __future__ import annotations

import argparse

SPLITS = ("train", "val", "test")


def _run(args: argparse.Namespace) -> int:
    from cospeech.atomic import check_output
    from cospeech.errors import count
    from cospeech.eval.teacher import TeacherEvalOptions, evaluate_teacher, write_report
    from cospeech.pipeline.bundle import load_bundle

    if args.output:
        check_output(args.output, name="--output")
    bundle = load_bundle(args.model, model="teacher")
    settings = bundle.settings
    options = TeacherEvalOptions(
        split=args.split, clips=args.clips, frames=args.frames,
        steps=args.steps if args.steps is not None else settings.steps,
        guidance=args.guidance if args.guidance is not None else settings.guidance,
        shift=settings.shift, overlap=settings.overlap, seed=args.seed,
    )  # fmt: skip
    report = evaluate_teacher(bundle, args.data, options)
    for clip in report["clips"]:
        print(
            f"{clip['clip']} ({clip['identity']}): PSNR {clip['psnr']:.2f} dB, SSIM "
            f"{clip['ssim']:.3f}, lip-sync r {clip['lipsync']:.2f} (VAE bound "
            f"{clip['vae_psnr']:.2f} dB / {clip['vae_ssim']:.3f} / r {clip['vae_lipsync']:.2f})"
        )
    mean = report["mean"]
    print(
        f"mean over {count(len(report['clips']), 'clip')}: PSNR {mean['psnr']:.2f} dB, SSIM "
        f"{mean['ssim']:.3f}, lip-sync r {mean['lipsync']:.2f} (VAE bound "
        f"{mean['vae_psnr']:.2f} dB / {mean['vae_ssim']:.3f} / r {mean['vae_lipsync']:.2f})"
    )
    if args.output:
        write_report(report, args.output)
    return 0


def add_clip_options(parser: argparse.ArgumentParser) -> None:
    """``--data``, ``--split``, ``--clips`` and ``--frames``: the options ``eval teacher``
    and ``eval vae`` share."""
    parser.add_argument("--data", required=True, help="dataset folder (manifest.jsonl)")
    parser.add_argument("--split", default="test", choices=SPLITS, help="split to evaluate")
    parser.add_argument(
        "--clips", type=int, default=24,
        help="clips to evaluate, one per identity first (0: all; the default 24 covers "
        "every test identity of the synthetic corpus)",
    )  # fmt: skip
    parser.add_argument("--frames", type=int, default=49, help="first frames of each clip, 1 + 4k")


def register(tree) -> None:
    parser = tree.subcommand(
        "eval", "teacher", "score teacher videos against ground truth (held-out identities)",
        _run, group_help="evaluate trained models",
    )  # fmt: skip
    add_clip_options(parser)
    parser.add_argument("--steps", type=int, help="Euler steps (default: the model's)")
    parser.add_argument("--guidance", type=float, help="guidance scale (default: the model's)")
    parser.add_argument("--seed", type=int, default=0, help="sampling noise seed")
    parser.add_argument("--model", help="model folder with teacher/ and vae/ (default: demo)")
    parser.add_argument("-o", "--output", help="write the full report as JSON")
