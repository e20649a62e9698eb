"""``cospeech train <stage>``: train a model stage from a YAML config (torchrun for several)."""

from __future__ import annotations

import argparse


def _run(args: argparse.Namespace) -> int:
    from cospeech.train.run import run_stage

    overrides = ([f"stage.data={args.data}"] if args.data else []) + args.set
    run_stage(args.stage, args.out, args.config, overrides, device=args.device)
    return 0


def register(tree) -> None:
    from cospeech.train.stages import STAGES

    for name in sorted(STAGES):
        parser = tree.subcommand(
            "train",
            name,
            f"train the {name} stage (re-run the same command to resume)",
            _run,
            group_help="train a model stage; under torchrun it runs data-parallel",
        )
        parser.add_argument("--config", help="YAML file with train: and stage: sections")
        parser.add_argument("--out", required=True, help="run folder (checkpoints, logs, final)")
        parser.add_argument("--data", help="dataset folder (shorthand for --set stage.data=DIR)")
        parser.add_argument(
            "--set", action="append", default=[], metavar="KEY=VALUE",
            help="override a config value, e.g. train.steps=100 or stage.data=corpus/",
        )  # fmt: skip
        parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
        parser.set_defaults(stage=name)
