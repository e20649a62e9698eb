"""``cospeech eval motion``: the motion model and its baselines on a dataset split."""

from __future__ import annotations

import argparse


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cospeech.errors import InputError
    from cospeech.jsonfile import write_json
    from cospeech.motion.evaluate import evaluate, format_table

    if args.limit < 0:
        raise InputError(f"--limit must be >= 0, got {args.limit}")
    model = args.model
    if model is not None and (Path(model) / "final-ema").is_dir():
        model = str(Path(model) / "final-ema")  # a training run folder
    sheet_rows: dict = {}

    def keep_first(clip, outputs) -> None:
        if not sheet_rows:
            sheet_rows.update(size=(clip.width, clip.height), rows=outputs)

    results = evaluate(
        model, args.data, args.split, args.limit, args.seed, progress=True, on_clip=keep_first
    )
    print(format_table(results))
    if args.contact_sheet:
        from cospeech.motion.evaluate import (
            GROUND_TRUTH,
            LEARNED_OFFLINE,
            LEARNED_STREAMING,
            RULES_ALLPHONE,
        )
        from cospeech.motion.sheet import motion_sheet, save_png

        names = (GROUND_TRUTH, LEARNED_OFFLINE, LEARNED_STREAMING, RULES_ALLPHONE)
        rows = {name: sheet_rows["rows"][name] for name in names}
        save_png(motion_sheet(rows, *sheet_rows["size"], args.sheet_frames), args.contact_sheet)
    if args.json:
        write_json(args.json, results)
    return 0


def register(tree) -> None:
    p = tree.subcommand(
        "eval", "motion", "lip error, mouth correlation, beat alignment, hand diversity",
        _run, group_help="evaluate models",
    )  # fmt: skip
    p.add_argument("--model", help="model folder or training run (default: the shipped model)")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--limit", type=int, default=0, help="first N clips only (0 = all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the gesture sampling")
    p.add_argument("--json", help="also write the scores as JSON")
    p.add_argument("--contact-sheet", help="PNG of the first clip: truth, learned, rules")
    p.add_argument("--sheet-frames", type=int, default=8, help="frames per contact-sheet row")
