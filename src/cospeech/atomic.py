"""Atomic file writes: write to a temporary file beside the target, then rename.

A killed process or a failed write never leaves a half-written output behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cospeech.errors import InputError


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``target`` on success.

    The temporary file keeps the target's suffix (libraries such as PyAV pick the container
    from it). On any exception the temporary file is removed and ``target`` is untouched.
    """
    target = Path(target)
    check_writable(target)
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=folder, prefix=f".{target.name}.", suffix=suffix or target.suffix
        )
    except OSError as exc:
        raise InputError(f"cannot write {target}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600; give the file the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~umask)
        try:
            os.replace(tmp_path, target)
        except OSError as exc:
            raise InputError(f"cannot write {target}: {exc.strerror or exc}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def check_writable(target: str | Path) -> None:
    """:class:`InputError` unless a file ``target`` can be created (its folder exists and
    takes files, or can be made). Call it before long work that ends in writing ``target``;
    nothing is created."""
    target = Path(target)
    if target.is_dir():
        raise InputError(f"cannot write {target}: it is a folder")
    existing = target.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"cannot write {target}: {existing} is not a folder")
    try:  # a real probe: os.access says yes to root on read-only or virtual file systems
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        reason = exc.strerror or exc
        raise InputError(
            f"cannot write {target}: cannot create files in {existing} ({reason})"
        ) from None
