"""A real ``cospeech serve`` process on 127.0.0.1 for the serve tests (API and browser)."""

from __future__ import annotations

import contextlib
import queue
import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from pipeline_fixture import COSPEECH, ENV

START_TIMEOUT_S = 180.0


@dataclass
class Served:
    address: str  # http://127.0.0.1:PORT/
    process: subprocess.Popen
    startup: list[str]  # what it printed up to its address


@contextlib.contextmanager
def real_server(*flags: str, env: dict | None = None) -> Iterator[Served]:
    """``cospeech serve`` on 127.0.0.1 and a free port (``--port 0``), terminated (SIGTERM)
    on the way out."""
    command = [*COSPEECH, "serve", "--host", "127.0.0.1", "--port", "0", *flags]
    process = subprocess.Popen(command, env=env or ENV, stdout=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()

    def drain() -> None:  # the pipe never fills, and readline never blocks the test
        for line in process.stdout:
            lines.put(line)
        lines.put("")

    threading.Thread(target=drain, daemon=True).start()
    try:
        address, startup = None, []
        while address is None:
            line = lines.get(timeout=START_TIMEOUT_S)
            if not line:
                raise AssertionError(f"cospeech serve ended early (exit {process.wait()})")
            startup.append(line.rstrip("\n"))
            if found := re.search(r"open (http://127\.0\.0\.1:\d+/)", line):
                address = found.group(1)
        yield Served(address, process, startup)
    finally:
        process.terminate()
        process.wait(timeout=30)
