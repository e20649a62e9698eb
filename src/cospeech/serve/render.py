"""One job's generation: the Generator's chunks into a fragmented mp4 on disk.

The file grows fragment by fragment; each write is flushed before the job's byte count
moves, so the WebSocket watchers (:mod:`.app`) only ever read complete bytes. The same
bytes are the downloadable video.
"""

from __future__ import annotations

from typing import BinaryIO

from cospeech.pipeline.generate import GenerateOptions
from cospeech.pipeline.generator import Generator
from cospeech.serve.jobs import Job


class JobSink:
    """A binary sink for the mp4 writer: appends to ``out``, flushes, and tells ``job``."""

    def __init__(self, out: BinaryIO, job: Job) -> None:
        self.out, self.job = out, job

    def write(self, data: bytes) -> int:
        size = self.out.write(data)
        self.out.flush()
        self.job.add_output(size)
        return size

    def flush(self) -> None:
        self.out.flush()


def render(generator: Generator, options: GenerateOptions, job: Job) -> None:
    """Generate ``job`` (its uploaded ``image`` and ``audio``) into ``job.video``.

    InputError for input the generator refuses (no person in the photo, ...); returns
    early, with ``job.cancel`` set, when the job is cancelled (the pool reports it)."""
    from cospeech.media.fragmented import FragmentedMp4Writer

    stream = generator.stream(job.audio, job.image, options=options, cancel=job.cancel)
    try:
        with (
            open(job.video, "wb") as out,
            FragmentedMp4Writer(JobSink(out, job), stream.size, stream.fps,
                                generator.sample_rate) as writer,
        ):  # fmt: skip
            with job.lock:
                job.total_frames, job.mime = stream.total, writer.mime
            job.notify()
            for chunk in stream:
                job.check_cancel()
                writer.write(chunk.frames, chunk.audio)
                job.add_output(0, len(chunk.frames))
            job.check_cancel()
    finally:
        stream.close()
