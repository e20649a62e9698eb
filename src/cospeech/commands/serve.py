"""``cospeech serve``: the web page with a live avatar (see docs/serve.md)."""

from __future__ import annotations

import argparse

DEFAULTS_NOTE = "the model's"


def _run(args: argparse.Namespace) -> int:
    from cospeech.errors import InputError, check_range
    from cospeech.pipeline.generator import Generator
    from cospeech.serve.server import generate_options, serve
    from cospeech.serve.settings import MIB, ServeSettings

    check_range("--port", args.port, 0, 65535)  # socket.bind wraps larger numbers
    settings = ServeSettings(
        workers=args.workers, max_queue=args.max_queue, job_ttl_s=args.job_ttl,
        max_image_bytes=round(args.max_image_mb * MIB),
        max_image_pixels=round(args.max_image_megapixels * 1e6),
        max_audio_bytes=round(args.max_audio_mb * MIB), max_audio_seconds=args.max_audio_seconds,
        steps=args.steps, guidance=args.guidance, size=args.size, fps=args.fps,
    )  # fmt: skip
    if args.speed is not None and args.workers is not None:
        raise InputError("--speed sizes the pool, --workers sets it: give one of them")
    generator = Generator.from_pretrained(
        model=args.model, device=args.device, precision=args.precision
    )
    generator.resolve(generate_options(settings))  # a bad --steps / --size fails here
    serve(generator, settings, args.host, args.port, args.speed,
          say=lambda line: print(line, flush=True))  # fmt: skip
    return 0


def register(tree) -> None:
    from cospeech.precision import PRECISIONS
    from cospeech.serve.settings import ServeSettings

    d = ServeSettings()
    parser = tree.command("serve", "web page: upload a photo and speech, watch it live", _run)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (0.0.0.0 opens it to the network)")  # fmt: skip
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free port)")
    parser.add_argument(
        "--workers", type=int,
        help="jobs generated at once, 1-64 (default: as many as the measured speed keeps "
        "at real time, at least 1)",
    )  # fmt: skip
    parser.add_argument(
        "--speed", type=float,
        help="frames per second one job generates alone; sizes the pool without the "
        "start-up measurement (default: measured)",
    )  # fmt: skip
    parser.add_argument("--max-queue", type=int, default=d.max_queue,
                        help="jobs that may wait; more are refused with 429")  # fmt: skip
    parser.add_argument("--job-ttl", type=float, default=d.job_ttl_s,
                        help="seconds a finished video stays downloadable")  # fmt: skip
    parser.add_argument("--max-image-mb", type=float, default=d.max_image_bytes / (1 << 20),
                        help="largest photo upload in MiB")  # fmt: skip
    parser.add_argument("--max-image-megapixels", type=float, default=d.max_image_pixels / 1e6,
                        help="largest photo in megapixels")  # fmt: skip
    parser.add_argument("--max-audio-mb", type=float, default=d.max_audio_bytes / (1 << 20),
                        help="largest speech upload in MiB")  # fmt: skip
    parser.add_argument("--max-audio-seconds", type=float, default=d.max_audio_seconds,
                        help="longest speech in seconds")  # fmt: skip
    parser.add_argument("--model", help="teacher or student (of the shipped models), a model "
                        "folder with teacher/, vae/ and optionally student/, or a trained DiT "
                        "folder (default: the shipped student if there is one, else the "
                        "shipped teacher)")  # fmt: skip
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...)")
    parser.add_argument(
        "--precision", choices=PRECISIONS, default="auto",
        help="number format of the models, as generate's (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--steps", type=int, help=f"Euler steps, or a student's levels (default: {DEFAULTS_NOTE})"
    )
    parser.add_argument("--guidance", type=float, help=f"guidance scale (default: {DEFAULTS_NOTE})")
    parser.add_argument("--size", type=int, help=f"frame side in pixels (default: {DEFAULTS_NOTE})")
    parser.add_argument("--fps", type=float, help=f"frame rate (default: {DEFAULTS_NOTE})")
