"""``cospeech eval teacher``: teacher videos vs ground truth on held-out identities."""

from __future__ import annotations

import argparse


def _run(args: argparse.Namespace) -> int:
    from cospeech.eval.teacher import TeacherEvalOptions, evaluate_teacher, write_report
    from cospeech.pipeline.bundle import load_bundle

    bundle = load_bundle(args.model)
    settings = bundle.settings
    options = TeacherEvalOptions(
        split=args.split, clips=args.clips, frames=args.frames,
        steps=args.steps or settings.steps,
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
        f"mean over {len(report['clips'])} clips: PSNR {mean['psnr']:.2f} dB, SSIM "
        f"{mean['ssim']:.3f}, lip-sync r {mean['lipsync']:.2f} (VAE bound "
        f"{mean['vae_psnr']:.2f} dB / {mean['vae_ssim']:.3f} / r {mean['vae_lipsync']:.2f})"
    )
    if args.output:
        write_report(report, args.output)
    return 0


def register(tree) -> None:
    parser = tree.subcommand(
        "eval", "teacher", "score teacher videos against ground truth (held-out identities)",
        _run, group_help="evaluate trained models",
    )  # fmt: skip
    parser.add_argument("--data", required=True, help="dataset folder (manifest.jsonl)")
    parser.add_argument("--split", default="test", help="split to evaluate (default test)")
    parser.add_argument(
        "--clips", type=int, default=24,
        help="clips to evaluate, one per identity first (24: every test identity of the "
        "corpus; 0: all)",
    )  # fmt: skip
    parser.add_argument("--frames", type=int, default=49, help="frames per clip")
    parser.add_argument("--steps", type=int, help="Euler steps (default: the model's)")
    parser.add_argument("--guidance", type=float, help="guidance scale (default: the model's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", help="model folder with teacher/ and vae/ (default: demo)")
    parser.add_argument("-o", "--output", help="write the full report as JSON")
