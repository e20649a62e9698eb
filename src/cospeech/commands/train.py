"""``cospeech train <stage>``: train a model stage from a YAML config (torchrun for several)."""

from __future__ import annotations

import argparse


def _run(args: argparse.Namespace) -> int:
    from cospeech.train.run import run_stage

    shorthands = {"data": args.data, "vae": getattr(args, "vae", None)}
    overrides = [f"stage.{key}={value}" for key, value in shorthands.items() if value] + args.set
    report = run_stage(args.stage, args.out, args.config, overrides, device=args.device)
    if report.is_main:
        print(report.summary())
    return 0


# The stages' own stage.data defaults, for --help (the stage modules load only when run).
DATA_DEFAULTS = {
    "motion": "none, it must be set", "teacher": "./corpus", "vae": "./corpus",
    "sparse": "./corpus", "distill": "./corpus",
}  # fmt: skip


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
        parser.add_argument(
            "--config",
            help="YAML file with train: and stage: sections (default: none, the stage's defaults)",
        )
        parser.add_argument("--out", required=True, help="run folder (checkpoints, logs, final)")
        parser.add_argument(
            "--data",
            help="dataset folder (shorthand for --set stage.data=DIR; default: the config's "
            f"stage.data, else {DATA_DEFAULTS[name]})",
        )
        if name in ("teacher", "sparse", "distill"):
            parser.add_argument(
                "--vae",
                help="VAE folder the latents are made with (shorthand for --set stage.vae=DIR),"
                " e.g. a vae run's final-ema or the bundled demo VAE, cospeech/assets/vae "
                "(default: the config's stage.vae, else ./vae)",
            )
        parser.add_argument(
            "--set", action="append", default=[], metavar="KEY=VALUE",
            help="override a config value, e.g. train.steps=100 or stage.data=corpus/ "
            "(repeatable; default: none)",
        )  # fmt: skip
        parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
        parser.set_defaults(stage=name)
