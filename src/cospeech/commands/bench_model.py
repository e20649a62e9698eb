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
    parser.add_argument("--preset", default="demo", help="preset name or YAML config (demo)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, repeatable (e.g. --set num_layers=10)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (cpu)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32")
    parser.add_argument("--frames", type=int, default=49, help="video frames, 1 + 4k (49)")
    parser.add_argument("--size", default="128x128", help="HxW pixels, multiple of 16")
    parser.add_argument("--attention", choices=ATTENTION_CHOICES, default="dense")
    parser.add_argument("--chunk-frames", type=int, default=3, help="latent frames per chunk")
    parser.add_argument("--steps", type=int, default=2, help="student denoising steps (2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs, median (3)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from cospeech.models.bench import benchmark_model, parse_size
    from cospeech.models.config import load_video_dit_config

    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    config = load_video_dit_config(args.preset, args.overrides)
    height, width = parse_size(args.size)
    with tqdm(total=5, desc="bench model", leave=False, disable=None) as bar:

        def progress(message: str) -> None:
            bar.set_description(message)
            bar.update(1)

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
    print(f"preset: {args.preset}" + (f" ({', '.join(args.overrides)})" if args.overrides else ""))
    print(result.format())
    return 0
