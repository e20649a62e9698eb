"""``cospeech bench model``: speed of the video DiT with random weights."""

from __future__ import annotations

import argparse

from cospeech.models.bench import ATTENTION_CHOICES

DTYPES = ("float32", "bfloat16", "float16")


def register(tree) -> None:
    parser = tree.subcommand(
        "bench",
        "model",
        "time the video DiT (random weights): one forward, one streaming chunk, student FPS",
        run,
        group_help="speed benchmarks",
    )
    parser.add_argument("--preset", default="demo", help="preset name or YAML config")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, repeatable (e.g. --set num_layers=10)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="weights and inputs")
    parser.add_argument("--frames", type=int, default=49, help="video frames, 1 + 4k")
    parser.add_argument("--size", default="128x128", help="HxW pixels, multiples of 16")
    parser.add_argument(
        "--attention", choices=ATTENTION_CHOICES, default="dense", help="attention mode"
    )
    parser.add_argument("--chunk-frames", type=int, default=3, help="latent frames per chunk")
    parser.add_argument("--steps", type=int, default=2, help="student denoising steps")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the median is reported")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")


def run(args: argparse.Namespace) -> int:
    import torch

    from cospeech.errors import check_range
    from cospeech.models.bench import benchmark_model, parse_size
    from cospeech.models.config import load_video_dit_config
    from cospeech.progress import Progress

    if args.threads is not None:
        check_range("--threads", args.threads, 1)
        torch.set_num_threads(args.threads)
    config = load_video_dit_config(args.preset, args.overrides)
    height, width = parse_size(args.size)
    phases = 6 if args.attention == "sparse" else 5
    with Progress("bench model", phases, "phase", leave=False) as bar:

        def progress(message: str) -> None:  # called as each phase starts
            if bar.postfix:
                bar.update(1)
            bar.set_postfix(message)

        result = benchmark_model(
            config,
            video_frames=args.frames,
            height=height,
            width=width,
            attention=args.attention,
            steps=args.steps,
            device=args.device,
            dtype=getattr(torch, args.dtype),
            chunk_frames=args.chunk_frames,
            repeats=args.repeats,
            progress=progress,
        )
        bar.update(1)
    print(f"preset: {args.preset}" + (f" ({', '.join(args.overrides)})" if args.overrides else ""))
    print(result.format())
    return 0
