"""Starting the server: the generator, the worker pool (sized from the measured speed),
the app, and uvicorn on a socket bound before anything is printed."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from cospeech.errors import InputError
from cospeech.pipeline.generate import GenerateOptions
from cospeech.pipeline.generator import Generator
from cospeech.serve.app import STATIC, create_app
from cospeech.serve.jobs import JobPool
from cospeech.serve.render import render
from cospeech.serve.settings import ServeSettings, workers_for_speed

SAMPLE_PHOTO = STATIC / "sample.png"  # a synthetic speaker (examples/reference.png)
WARMUP_SECONDS = 1.0
MAX_CONNECTIONS = 100  # uvicorn answers 503 beyond this many open connections
WS_MAX_MESSAGE = 64 * 1024  # clients send nothing useful over the stream socket
KEEP_ALIVE_S = 5


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"


def generate_options(settings: ServeSettings) -> GenerateOptions:
    return GenerateOptions(
        steps=settings.steps, guidance=settings.guidance, size=settings.size, fps=settings.fps
    )


def measure_speed(generator: Generator, options: GenerateOptions) -> float:
    """Frames per second of one job alone (sampling + VAE decode, models warm): a
    :data:`WARMUP_SECONDS` clip of a syllable-rate modulated tone on the sample photo."""
    rate = generator.sample_rate
    t = np.arange(int(WARMUP_SECONDS * rate)) / rate
    speech = 0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
    stream = generator.stream(speech.astype(np.float32), SAMPLE_PHOTO, options=options)
    frames = sum(len(chunk.frames) for chunk in stream)
    return frames / max(1e-6, stream.phases["sampling"] + stream.phases["decode"])


def pool_size(
    settings: ServeSettings, generator: Generator, options: GenerateOptions,
    speed: float | None, say: Callable[[str], None],
) -> int:  # fmt: skip
    """``settings.workers``, else the jobs the given or measured ``speed`` sustains at
    real time (:func:`.settings.workers_for_speed`)."""
    if settings.workers is not None:
        return settings.workers
    fps = generator.resolve(options).fps
    if speed is None:
        say("measuring the generation speed (--workers or --speed skip this) ...")
        started = time.perf_counter()
        speed = measure_speed(generator, options)
        say(f"one job generates {speed:.1f} frames/s ({time.perf_counter() - started:.0f} s)")
    workers = workers_for_speed(speed, fps)
    say(f"{workers} job(s) at once: {speed:.1f} frames/s generated, {fps:g} frames/s played")
    return workers


def share_cores(generator: Generator, workers: int) -> None:
    """On CPU, give each of the ``workers`` concurrent jobs its share of the cores as torch
    threads, never more than torch had (``OMP_NUM_THREADS``): more threads than cores only
    wait on each other (docs/benchmarks.md)."""
    if generator.device.type == "cpu":
        share = max(1, (os.cpu_count() or 1) // workers)
        torch.set_num_threads(min(torch.get_num_threads(), share))


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0: any free port); InputError when it cannot be had."""
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise InputError(f"--host {host}: unknown address ({exc.strerror})") from None
    sock = socket.socket(info[0], socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(info[4])
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


@contextlib.contextmanager
def running_pool(generator: Generator, settings: ServeSettings, workers: int) -> Iterator[JobPool]:
    """A started :class:`JobPool` rendering with ``generator``; shut down (every job
    cancelled, every file removed) on the way out."""
    job_render = partial(render, generator, generate_options(settings))
    pool = JobPool(job_render, workers, settings.max_queue, settings.job_ttl_s)
    try:
        yield pool
    finally:
        pool.shutdown()


def serve(
    generator: Generator, settings: ServeSettings, host: str, port: int,
    speed: float | None = None, say: Callable[[str], None] = print,
) -> None:  # fmt: skip
    """Serve until interrupted (Ctrl-C / SIGTERM), then clean up."""
    import uvicorn

    sock = bind(host, port)
    with contextlib.closing(sock):
        workers = pool_size(settings, generator, generate_options(settings), speed, say)
        share_cores(generator, workers)
        with running_pool(generator, settings, workers) as pool:
            config = uvicorn.Config(
                create_app(pool, settings), log_level="warning", ws_max_size=WS_MAX_MESSAGE,
                limit_concurrency=MAX_CONNECTIONS, timeout_keep_alive=KEEP_ALIVE_S,
            )  # fmt: skip
            address = Address(*sock.getsockname()[:2])
            say(f"cospeech serve: open {address.url} (Ctrl-C stops)")
            with _exit_on_sigterm():
                uvicorn.Server(config).run(sockets=[sock])


@contextlib.contextmanager
def _exit_on_sigterm() -> Iterator[None]:
    """uvicorn stops on SIGTERM and then raises the signal again: make that a
    ``SystemExit(143)`` so the pool still shuts down and removes its files (Ctrl-C comes
    back as KeyboardInterrupt the same way)."""

    def stop(_signum: int, _frame) -> None:
        raise SystemExit(128 + signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
