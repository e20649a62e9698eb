"""``cospeech eval motion``: the motion model and its baselines on a dataset split."""

from __future__ import annotations

import argparse
import sys

SPLITS = ("train", "val", "test")


class _DeprecatedLimit(argparse.Action):
    """``--limit N``: the old name of ``--clips N`` (hidden; warns once on stderr)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print("cospeech: warning: --limit is deprecated, use --clips", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cospeech.atomic import check_output
    from cospeech.errors import check_range
    from cospeech.jsonfile import write_json
    from cospeech.motion.evaluate import evaluate, format_table

    check_range("--sheet-frames", args.sheet_frames, 1)  # evaluate checks --clips, --seed
    if args.json:
        check_output(args.json, name="--json")
    if args.contact_sheet:
        check_output(args.contact_sheet, ".png", name="--contact-sheet")
    model = args.model
    if model is not None and (Path(model) / "final-ema").is_dir():
        model = str(Path(model) / "final-ema")  # a training run folder
    sheet_rows: dict = {}

    def keep_first(clip, outputs) -> None:
        if not sheet_rows:
            sheet_rows.update(size=(clip.width, clip.height), rows=outputs)

    results = evaluate(
        model, args.data, args.split, args.clips, args.seed, progress=True, on_clip=keep_first
    )
    print(format_table(results))
    if args.contact_sheet:
        from cospeech.media.image import write_image
        from cospeech.motion.evaluate import (
            GROUND_TRUTH,
            LEARNED_OFFLINE,
            LEARNED_STREAMING,
            RULES_ALLPHONE,
        )
        from cospeech.motion.sheet import motion_sheet

        names = (GROUND_TRUTH, LEARNED_OFFLINE, LEARNED_STREAMING, RULES_ALLPHONE)
        rows = {name: sheet_rows["rows"][name] for name in names}
        sheet = motion_sheet(rows, *sheet_rows["size"], args.sheet_frames)
        write_image(sheet, args.contact_sheet)
    if args.json:
        write_json(args.json, results)  # scores without a value (NaN) are written as null
    return 0


def register(tree) -> None:
    p = tree.subcommand(
        "eval", "motion", "lip error, mouth correlation, beat alignment, hand diversity",
        _run, group_help="evaluate trained models",
    )  # fmt: skip
    p.add_argument("--model", help="model folder or training run (default: the shipped model)")
    p.add_argument("--data", required=True, help="dataset folder (manifest.jsonl)")
    p.add_argument("--split", default="test", choices=SPLITS, help="split to evaluate")
    p.add_argument("--clips", type=int, default=0, help="first N clips of the split, 0 = all")
    p.add_argument(
        "--limit", type=int, dest="clips", action=_DeprecatedLimit, default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of the gesture sampling")
    p.add_argument("--json", help="also write the scores as JSON (no value: null)")
    p.add_argument("--contact-sheet", help="PNG of the first clip: truth, learned, rules")
    p.add_argument("--sheet-frames", type=int, default=8, help="frames per contact-sheet row")
