"""``cospeech data synth``: write the synthetic speaker corpus (speech, motion, video)."""

from __future__ import annotations

import argparse


def _run(args: argparse.Namespace) -> int:
    import time

    from cospeech.atomic import check_writable
    from cospeech.data.synth.corpus import CorpusConfig, write_corpus
    from cospeech.errors import InputError, count
    from cospeech.progress import Progress

    if args.workers < 1:
        raise InputError(f"--workers must be >= 1, got {args.workers}")
    config = CorpusConfig(
        clips=args.clips,
        seed=args.seed,
        size=args.size,
        fps=args.fps,
        identities=args.identities,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
    )
    if args.contact_sheet:  # before the long work, not after
        check_writable(args.contact_sheet)
    start = time.perf_counter()
    with Progress("data synth", config.clips, "clip") as bar:
        entries = write_corpus(
            args.out, config, workers=args.workers, progress=lambda n: bar.update(n - bar.n)
        )
    if args.contact_sheet:
        from cospeech.data.synth.contact_sheet import write_contact_sheet

        write_contact_sheet(args.out, args.contact_sheet)
    splits = {s: sum(e.split == s for e in entries) for s in ("train", "val", "test")}
    seconds = sum(e.duration for e in entries)
    print(
        f"{count(len(entries), 'clip')} ({seconds:.0f} s of speech; "
        + ", ".join(f"{k} {v}" for k, v in splits.items())
        + f") in {args.out}, {time.perf_counter() - start:.1f} s"
    )
    return 0


def register(tree) -> None:
    p = tree.subcommand(
        "data",
        "synth",
        "write the synthetic speaker corpus (espeak speech, rule motion, rendered video)",
        _run,
        group_help="build and prepare datasets",
    )
    p.add_argument("--out", required=True, help="corpus folder (created; reruns resume it)")
    p.add_argument("--clips", type=int, default=200, help="number of clips (default 200)")
    p.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    p.add_argument("--size", type=int, default=256, help="frame width = height (default 256)")
    p.add_argument("--fps", type=float, default=25.0, help="frames per second (default 25)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    p.add_argument(
        "--identities", type=int, default=0, help="speakers (default max(4, clips // 5))"
    )
    p.add_argument(
        "--val-fraction", type=float, default=0.1, help="share of speakers in val (default 0.1)"
    )
    p.add_argument(
        "--test-fraction", type=float, default=0.2, help="share of speakers in test (default 0.2)"
    )
    p.add_argument(
        "--contact-sheet", metavar="PNG",
        help="also write a grid of frames with keypoints (.png, or .jpg; default: none)",
    )  # fmt: skip
