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
        if tmp_path.exists():
            apply_umask(tmp_path)
        try:
            os.replace(tmp_path, target)
        except OSError as exc:
            raise InputError(f"cannot write {target}: {exc.strerror or exc}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def check_output(target: str | Path, *suffixes: str, name: str = "output") -> None:
    """:class:`InputError` unless ``target`` ends in one of ``suffixes`` (any case; none
    given: any name) and can be written (:func:`check_writable`). ``name`` says what the
    path is in the message (``output``, ``--draw``)."""
    target = Path(target)
    if suffixes and target.suffix.lower() not in suffixes:
        allowed = ", ".join(suffixes[:-1]) + (" or " if len(suffixes) > 1 else "") + suffixes[-1]
        raise InputError(f"{name} {target}: must end in {allowed}")
    check_writable(target)


def make_folder(folder: str | Path, name: str) -> bool:
    """Create the output folder ``folder`` (and its parents) unless it exists; whether it
    was created. :class:`InputError` (``name`` says what the folder is: ``corpus folder``)
    when it is a file or cannot be made."""
    folder = Path(folder)
    check_folder(folder, name)
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{name} {folder}: cannot be made ({exc.strerror or exc})") from None
    return created


def check_folder(folder: str | Path, name: str) -> None:
    """:class:`InputError` when the output folder ``folder`` exists as a file."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{name} {folder}: is a file")


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


def current_umask() -> int:
    """The process's file-mode creation mask (read by setting it and restoring it)."""
    umask = os.umask(0o077)
    os.umask(umask)
    return umask


def make_temp_dir(parent: str | Path, prefix: str) -> Path:
    """A new uniquely named folder in ``parent`` with the permissions ``mkdir`` would give
    it under the user's umask (``tempfile.mkdtemp`` always makes 0700 folders), for outputs
    that are built under a temporary name and renamed into place when complete."""
    folder = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    apply_umask(folder)
    return folder


def apply_umask(path: str | Path) -> None:
    """Give ``path`` the mode a plain ``open()`` (file: 0666) or ``mkdir`` (folder: 0777)
    would give it under the user's umask; for files that a library writes 0600 (mkstemp,
    safetensors)."""
    base = 0o777 if Path(path).is_dir() else 0o666
    os.chmod(path, base & ~current_umask())
