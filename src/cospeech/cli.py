"""The ``cospeech`` command: a thin front over the packages.

Each module in :mod:`cospeech.commands` adds its commands through ``register(tree)``.
Any :class:`~cospeech.errors.CospeechError` ends as one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Callable, Sequence

from cospeech import __version__, commands, progress
from cospeech.errors import CospeechError

DESCRIPTION = "Speech + one photo -> a talking, gesturing video. Every command has its own --help."
EPILOG = (
    "Progress goes to stderr: a bar on a terminal, otherwise one plain line every few "
    "seconds (--progress, or the COSPEECH_PROGRESS and COSPEECH_PROGRESS_INTERVAL "
    "environment variables)."
)


class HelpFormatter(argparse.HelpFormatter):
    """Adds ``(default: X)`` to an option's help unless the default is None/False or the
    help already names it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            not text
            or "default" in text
            or default is None
            or default is False
            or default == []
            or default is argparse.SUPPRESS
            or action.option_strings == []
        ):
            return action.help
        shown = " ".join(map(str, default)) if isinstance(default, list) else default
        return f"{text} (default: {shown})"


class CommandTree:
    """Top-level commands and command groups (``cospeech bench attention``)."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self._root = parser.add_subparsers(dest="command", metavar="<command>")
        self._groups: dict[str, argparse._SubParsersAction] = {}

    def command(
        self, name: str, help: str, func: Callable[[argparse.Namespace], int | None]
    ) -> argparse.ArgumentParser:
        parser = self._root.add_parser(
            name, help=help, description=help, formatter_class=HelpFormatter
        )
        parser.set_defaults(func=func)
        return parser

    def subcommand(
        self,
        group: str,
        name: str,
        help: str,
        func: Callable[[argparse.Namespace], int | None],
        group_help: str = "",
    ) -> argparse.ArgumentParser:
        if group not in self._groups:
            group_parser = self._root.add_parser(group, help=group_help, description=group_help)
            group_parser.set_defaults(func=lambda _args, p=group_parser: p.print_help() or 2)
            self._groups[group] = group_parser.add_subparsers(metavar="<subcommand>")
        parser = self._groups[group].add_parser(
            name, help=help, description=help, formatter_class=HelpFormatter
        )
        parser.set_defaults(func=func)
        return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cospeech", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"cospeech {__version__}")
    parser.add_argument(
        "--progress", choices=progress.MODES,
        help="how progress is shown on stderr: auto (a bar on a terminal, plain lines "
        "otherwise; the default), bar, lines or off",
    )  # fmt: skip
    tree = CommandTree(parser)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"{commands.__name__}.{info.name}").register(tree)
    return parser


def _error(text: str) -> None:
    """Close any progress bar, then print ``text`` on its own line of stderr."""
    progress.close_all()
    print(text, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command: 0 ok, 2 a user error (one line on stderr), 130 interrupted."""
    configured, previous = False, None
    try:  # Ctrl-C while the commands are imported counts too
        parser = build_parser()
        args = parser.parse_args(argv)
        progress.current_settings()  # a bad COSPEECH_PROGRESS fails here, before any work
        if args.progress:
            previous, configured = progress.configure(mode=args.progress), True
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except CospeechError as exc:
        message = " ".join(str(exc).split())  # one line, whatever a library put in it
        _error(f"cospeech: error: {message}")
        return 2
    except KeyboardInterrupt:
        _error("cospeech: interrupted")
        return 130
    finally:
        progress.close_all()
        if configured:  # --progress holds for this run only (main may run again)
            progress.restore(previous)


if __name__ == "__main__":
    sys.exit(main())
