"""``cospeech bench attention``: sparse attention backends vs dense SDPA on pose-derived masks."""

from __future__ import annotations

import argparse


def _load() -> str:
    """The 1-minute load average (other jobs on the machine), or "n/a"."""
    import os

    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "n/a"


def _run(args: argparse.Namespace) -> int:
    import torch

    from cospeech.attention.bench import (
        SHAPES,
        attention_flops,
        bench_pose,
        default_backends,
        describe_plan,
        force_density,
        format_table,
        pose_plan,
        run_bench,
    )
    from cospeech.attention.kernels import BACKENDS
    from cospeech.device import resolve_device
    from cospeech.errors import InputError, check_range
    from cospeech.motion.generate import MAX_SEED
    from cospeech.progress import Progress

    device = resolve_device(args.device)
    shapes = args.shape or (["quick"] if args.quick else ["cpu"])
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 5)
    check_range("--repeats", repeats, 1)
    check_range("--k", args.k, 0)
    check_range("--block-size", args.block_size, 1)
    check_range("--seed", args.seed, 0, MAX_SEED)
    if args.density is not None and not 0 < args.density <= 1:
        raise InputError(f"--density must be in (0, 1], got {args.density:g}")
    if args.backends:
        backends = args.backends.split(",")
    else:  # --quick skips flex on CPU: its first compile alone takes ~20 s
        backends = ["gather"] if args.quick and device.type == "cpu" else default_backends(device)
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise InputError(f"--backends: unknown {unknown}; choose from {', '.join(BACKENDS)}")

    if args.threads is not None:
        check_range("--threads", args.threads, 1)
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads() if device.type == "cpu" else None
    print(f"device: {device}" + (f" ({threads} threads)" if threads else ""))
    for name in shapes:
        shape = SHAPES[name]
        pose, source = bench_pose(shape, args.pose, seed=args.seed, source=args.source)
        plan = pose_plan(pose, k=args.k, block_size=args.block_size, exact=args.exact)
        plans = [("pose-derived mask", plan)]
        if args.density is not None:
            grouped = args.density_mode == "grouped"
            forced = force_density(plan, args.density, seed=args.seed, grouped=grouped)
            how = "per query-block group" if grouped else "per single query block"
            plans.append((f"forced density {args.density:g} (random key blocks, {how})", forced))
        print(f"\n== {shape.describe()}")
        print(f"pose: {source}; K = {args.k}; {len(pose)} video frames")
        for title, p in plans:
            print(f"\n-- {title}: {describe_plan(p)}")
            with Progress(f"bench {name}", None, "timing", leave=False) as bar:
                load = _load()
                rows = run_bench(
                    shape, p, backends, repeats, device, check=args.check, backward=args.backward,
                    progress=lambda what, bar=bar: (bar.set_postfix(what), bar.update()),
                )  # fmt: skip
            print(format_table(rows))
            flops = attention_flops(shape) * (3.5 if args.backward else 1.0)
            print(
                f"{'forward + backward' if args.backward else 'forward'}; ms = median of "
                f"{repeats} interleaved rounds; dense SDPA {flops / rows[0].seconds / 1e12:.2f} "
                f"TFLOP/s; load average {load} before, {_load()} after"
            )
    return 0


def register(tree) -> None:
    from cospeech.attention.bench import SHAPES

    parser = tree.subcommand(
        "bench",
        "attention",
        "time the sparse attention backends against dense SDPA on pose-derived masks",
        _run,
        group_help="speed benchmarks",
    )
    parser.add_argument(
        "--shape", action="append", choices=sorted(SHAPES),
        help="problem size (repeatable; default cpu, or quick with --quick): "
        + "; ".join(s.describe() for s in SHAPES.values()),
    )  # fmt: skip
    parser.add_argument(
        "--backends", help="comma-separated: dense,gather,flex,flashinfer "
        "(default: gather,flex on CPU; flex,gather[,flashinfer] on CUDA)",
    )  # fmt: skip
    parser.add_argument("--k", type=int, default=4, help="K most similar past frames")
    parser.add_argument(
        "--repeats", type=int, help="timed rounds per backend (default 5; 3 with --quick)"
    )
    parser.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    parser.add_argument(
        "--threads", type=int,
        help="CPU threads for torch (default: torch's; 1 is fairer when other jobs share the CPU)",
    )  # fmt: skip
    parser.add_argument("--pose", metavar="FILE.npz", help="pose sequence to derive the masks from")
    parser.add_argument(
        "--source", choices=("auto", "rules", "synthetic"), default="auto",
        help="pose without --pose: the corpus's motion rules speaking a sentence (auto: when "
        "available), or the built-in synthetic upper body",
    )  # fmt: skip
    parser.add_argument(
        "--density", type=float,
        help="also time a plan forced to this block density (e.g. 0.25 for the acceptance check)",
    )  # fmt: skip
    parser.add_argument(
        "--density-mode", choices=("grouped", "random"), default="grouped",
        help="how --density adds blocks: to query blocks sharing a key set together "
        "(structured like real masks, default) or to each query block alone",
    )  # fmt: skip
    parser.add_argument("--block-size", type=int, default=128, help="attention block size")
    parser.add_argument("--exact", action="store_true", help="mask partial blocks exactly")
    parser.add_argument(
        "--backward", action="store_true", help="time forward + backward (training)"
    )
    parser.add_argument("--check", action="store_true", help="report max error vs dense masked")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic pose/forcing")
    parser.add_argument(
        "--quick", action="store_true", help="a small shape and gather only: a few seconds"
    )
