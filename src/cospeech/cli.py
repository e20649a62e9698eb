"""``cospeech <command>``: a thin front over the packages.

Each module in :mod:`cospeech.commands` adds its commands through ``register(tree)``.
Any :class:`~cospeech.errors.CospeechError` ends as one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Callable, Sequence

from cospeech import __version__, commands
from cospeech.errors import CospeechError


class CommandTree:
    """Top-level commands and command groups (``cospeech bench attention``)."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self._root = parser.add_subparsers(dest="command", metavar="<command>")
        self._groups: dict[str, argparse._SubParsersAction] = {}

    def command(
        self, name: str, help: str, func: Callable[[argparse.Namespace], int | None]
    ) -> argparse.ArgumentParser:
        parser = self._root.add_parser(name, help=help, description=help)
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
        parser = self._groups[group].add_parser(name, help=help, description=help)
        parser.set_defaults(func=func)
        return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cospeech", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"cospeech {__version__}")
    tree = CommandTree(parser)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"{commands.__name__}.{info.name}").register(tree)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command: 0 ok, 2 a user error (one line on stderr), 130 interrupted."""
    try:  # Ctrl-C while the commands are imported counts too
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except CospeechError as exc:
        message = " ".join(str(exc).split())  # one line, whatever a library put in it
        print(f"cospeech: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cospeech: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
