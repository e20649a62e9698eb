"""Jobs and the bounded worker pool that runs them.

A job moves ``queued -> running -> done | failed``. ``workers`` threads take jobs from a
first-in-first-out queue of at most ``max_queue`` waiting jobs (:class:`QueueFull` beyond
that). A job's files live in its own folder under the pool's private root; a finished job
is kept ``ttl_s`` seconds for its download, then removed with its folder; at shutdown
every job is cancelled and the root removed.

Threads: workers and the janitor are threads; the web app reads job state under
``Job.lock`` and waits for new output through :meth:`Job.subscribe` (an asyncio event set
from the worker thread with ``call_soon_threadsafe``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cospeech.errors import CospeechError
from cospeech.serve.uploads import remove_folder, scrub

log = logging.getLogger("cospeech.serve")

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
CANCELLED_MESSAGE = "cancelled: the page that watched this job was closed"
INTERNAL_MESSAGE = "internal error while generating (details are in the server log)"
SHUTDOWN_MESSAGE = "cancelled: the server is shutting down"
ID_BYTES = 24  # secrets.token_urlsafe: 192 random bits, 32 characters


class QueueFull(CospeechError):
    """No room in the queue (HTTP 429)."""


class JobCancelled(Exception):
    """Raised inside a running job when its cancel event is set."""


@dataclass(eq=False)
class Job:
    """One generation request: its private folder, state and output progress.

    ``frames_done`` / ``total_frames``: video frames written so far and in all;
    ``bytes_written``: bytes of the fragmented mp4 at ``video`` that are complete on disk;
    ``fps``: frames generated per second of its running time; ``mime``: the stream's MIME
    type with codecs (what Media Source Extensions needs), known once generation starts."""

    id: str
    folder: Path
    created: float = field(default_factory=time.monotonic)
    status: str = QUEUED
    started: float | None = None
    ended: float | None = None
    first_frame_s: float | None = None
    frames_done: int = 0
    total_frames: int | None = None
    fps: float | None = None
    error: str | None = None
    bytes_written: int = 0
    mime: str | None = None
    watchers: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = field(default_factory=list)

    @property
    def image(self) -> Path:
        return self.folder / "image"

    @property
    def audio(self) -> Path:
        return self.folder / "audio"

    @property
    def video(self) -> Path:
        return self.folder / "video.mp4"

    @property
    def finished(self) -> bool:
        return self.status in (DONE, FAILED)

    def subscribe(self) -> asyncio.Event:
        """An event of the running loop, set whenever the job's state or output changes."""
        event = asyncio.Event()
        with self.lock:
            self._waiters.append((asyncio.get_running_loop(), event))
        return event

    def unsubscribe(self, event: asyncio.Event) -> None:
        with self.lock:
            self._waiters = [(lp, ev) for lp, ev in self._waiters if ev is not event]

    def notify(self) -> None:
        """Wake every subscriber (callable from any thread)."""
        with self.lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(event.set)

    def add_output(self, size: int, frames: int = 0) -> None:
        """``size`` more bytes are on disk and ``frames`` more frames generated."""
        with self.lock:
            self.bytes_written += size
            self.frames_done += frames
            now = time.monotonic()
            if frames and self.first_frame_s is None:
                self.first_frame_s = now - self.created
            if self.started is not None and self.frames_done and now > self.started:
                self.fps = self.frames_done / (now - self.started)
        self.notify()

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise JobCancelled


class JobPool:
    """Runs ``render(job)`` for submitted jobs on ``workers`` threads.

    ``render`` raises :class:`~cospeech.errors.CospeechError` for a problem of the input
    (its message goes to the client) and :class:`JobCancelled` when the job's cancel
    event stops it; any other exception is logged with its traceback and reported to the
    client as one generic line."""

    def __init__(
        self,
        render: Callable[[Job], None],
        workers: int,
        max_queue: int,
        ttl_s: float,
    ) -> None:
        self._render = render
        self.workers = workers
        self.max_queue = max_queue
        self.ttl_s = ttl_s
        self.root = Path(tempfile.mkdtemp(prefix="cospeech-serve-"))  # mode 0700
        self._jobs: dict[str, Job] = {}
        self._queue: deque[Job] = deque()
        self._lock = threading.Condition()  # re-entrant (an RLock inside)
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, name=f"cospeech-job-{i}", daemon=True)
            for i in range(workers)
        ]
        self._threads.append(
            threading.Thread(target=self._janitor, name="cospeech-janitor", daemon=True)
        )
        for thread in self._threads:
            thread.start()

    def new_job(self) -> Job:
        """A job with an unguessable id and an empty private folder (not queued yet)."""
        folder = Path(tempfile.mkdtemp(prefix="job-", dir=self.root))
        return Job(id=secrets.token_urlsafe(ID_BYTES), folder=folder)

    def check_room(self) -> None:
        """:class:`QueueFull` when no job could be queued now."""
        with self._lock:
            if len(self._queue) >= self.max_queue:
                raise QueueFull(
                    f"the queue is full ({len(self._queue)} jobs waiting); try again later"
                )

    def submit(self, job: Job) -> None:
        """Queue ``job``; :class:`QueueFull` (and its folder removed) when the queue is full."""
        with self._lock:
            try:
                self.check_room()
            except QueueFull:
                remove_folder(job.folder)
                raise
            self._jobs[job.id] = job
            self._queue.append(job)
            self._lock.notify()
        self._notify_queued()

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def position(self, job: Job) -> int | None:
        """1 for the next job to start, 2 for the one after, ...; None once it runs."""
        with self._lock:
            for place, queued in enumerate(self._queue, start=1):
                if queued is job:
                    return place
        return None

    def status(self, job: Job) -> dict:
        """The client's view of ``job`` (``GET /api/jobs/{id}``)."""
        position = self.position(job)
        with job.lock:
            total = job.total_frames
            return {
                "status": job.status,
                "position": position,
                "progress": round(job.frames_done / total, 4) if total else 0.0,
                "frames": job.frames_done,
                "total_frames": total,
                "fps": _rounded(job.fps),
                "first_frame_s": _rounded(job.first_frame_s),
                "error": job.error,
                "mime": job.mime,
            }

    def cancel(self, job: Job, message: str = CANCELLED_MESSAGE) -> None:
        """Stop ``job``: a queued job ends now, a running one at its next chunk."""
        with self._lock:
            queued = job in self._queue
            if queued:
                self._queue.remove(job)
        job.cancel.set()
        if queued:
            self._finish(job, FAILED, message)
            self._notify_queued()

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Cancel every job, stop the threads and remove every file the pool made."""
        self._stopping.set()
        with self._lock:
            jobs = list(self._jobs.values())
            self._lock.notify_all()
        for job in jobs:
            self.cancel(job, SHUTDOWN_MESSAGE)
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        remove_folder(self.root)

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stopping.is_set():
                    self._lock.wait()
                if self._stopping.is_set():
                    return
                job = self._queue.popleft()
            self._notify_queued()
            self._run(job)

    def _run(self, job: Job) -> None:
        with job.lock:
            job.status, job.started = RUNNING, time.monotonic()
        job.notify()
        try:
            job.check_cancel()
            self._render(job)
            job.check_cancel()
        except JobCancelled:
            message = SHUTDOWN_MESSAGE if self._stopping.is_set() else CANCELLED_MESSAGE
            self._finish(job, FAILED, message)
        except CospeechError as exc:
            self._finish(job, FAILED, scrub(str(exc), job.image, job.audio, self.root))
        except Exception:  # the server keeps serving: the client gets one line, the log all
            log.exception("job %s failed", job.id[:6])
            self._finish(job, FAILED, INTERNAL_MESSAGE)
        else:
            self._finish(job, DONE, None)

    def _finish(self, job: Job, status: str, error: str | None) -> None:
        with job.lock:
            job.status, job.error, job.ended = status, error, time.monotonic()
        if status == FAILED:  # nothing left to download: free the disk now
            remove_folder(job.folder)
        job.notify()

    def _notify_queued(self) -> None:
        """Queue positions changed: wake the watchers of every waiting job."""
        with self._lock:
            waiting = list(self._queue)
        for job in waiting:
            job.notify()

    def _janitor(self) -> None:
        """Forget finished jobs ``ttl_s`` after they ended and remove their folders."""
        period = min(30.0, max(0.05, self.ttl_s / 4))
        while not self._stopping.wait(period):
            self.expire(time.monotonic())

    def expire(self, now: float) -> int:
        """Drop the jobs that finished more than ``ttl_s`` before ``now``; their count."""
        with self._lock:
            old = [
                job
                for job in self._jobs.values()
                if job.ended is not None and now - job.ended > self.ttl_s
            ]
            for job in old:
                del self._jobs[job.id]
        for job in old:
            remove_folder(job.folder)
        return len(old)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
