"""Checks shared by the checkpoint loaders: pickles refused unread, mismatches in one line.

Pickle files are never opened (unpickling runs arbitrary code); weights that do not fit a
model are reported as one :class:`CheckpointError` listing every problem.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from pathlib import Path
from typing import NoReturn

from cospeech.errors import CheckpointError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
MAX_LISTED = 12


def is_pickle(path: Path) -> bool:
    """Whether ``path`` has the suffix of a pickled torch file."""
    return path.suffix.lower() in PICKLE_SUFFIXES


def refuse_pickle(path: Path) -> NoReturn:
    """Raise the :class:`CheckpointError` for pickle file ``path``."""
    raise CheckpointError(
        f"{path} is a pickle file; cospeech never unpickles checkpoints (arbitrary code). "
        "Convert it to safetensors in a trusted environment"
    )


def refuse_pickles_in(folder: Path) -> None:
    """:func:`refuse_pickle` for the first pickle file in ``folder``, if it holds one."""
    pickles = sorted(p for p in folder.iterdir() if is_pickle(p))
    if pickles:
        refuse_pickle(pickles[0])


def mismatch_report(
    missing: Collection[str], unexpected: Collection[str], wrong: Collection[str] = ()
) -> str:
    """``"missing keys: a, b; unexpected keys: c; wrong shapes: ..."`` (empty parts left
    out, each list sorted and cut after :data:`MAX_LISTED`); "" when all are empty."""
    parts = (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong))
    return "; ".join(f"{label}: {_listed(items)}" for label, items in parts if items)


def _listed(items: Iterable[str]) -> str:
    items = sorted(items)
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f", ... ({len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else "")
