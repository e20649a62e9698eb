"""``cospeech bench generate`` (models side by side: load, compute, end to end, first
chunk), ``cospeech bench stream`` (a long stream: drift and memory) and ``cospeech bench
photo`` (the photo layer alone, per output size)."""

from __future__ import annotations

import argparse

DEMO_AUDIO, DEMO_IMAGE, DEMO_POSE = (
    "examples/speech.wav", "examples/reference.png", "examples/reference_pose.npz",
)  # fmt: skip
MAX_MINUTES = 30.0  # the audio loader's cap (AudioConfig.max_duration_s)


def _threads(value: int | None) -> None:
    """Set torch's CPU threads (``--threads``, 1 to the CPU count) when given."""
    import os

    import torch

    from cospeech.errors import check_range

    if value is not None:
        check_range("--threads", value, 1, os.cpu_count() or 1)
        torch.set_num_threads(value)


def _inputs(args: argparse.Namespace):
    """The checked input files; the demo photo comes with its own keypoints (`make demo`)."""
    from pathlib import Path

    from cospeech.pipeline.bench import BenchInputs

    pose = args.reference_pose
    if pose is None and args.image == DEMO_IMAGE:
        pose = DEMO_POSE
    inputs = BenchInputs(Path(args.audio), Path(args.image), Path(pose) if pose else None)
    inputs.check()
    return inputs


def _spec(args: argparse.Namespace, model: str):
    from pathlib import Path

    from cospeech.pipeline.bench import ModelSpec

    return ModelSpec.parse(model, Path(args.model_folder) if args.model_folder else None)


def _options(args: argparse.Namespace):
    from cospeech.pipeline.generate import GenerateOptions

    return GenerateOptions(
        size=args.size,
        attention=args.attention,
        photo_layer=not args.no_photo_layer,
        output_size=args.output_size,
    )


def _report(bench, inputs, json_path: str | None) -> None:
    """Print the inputs and the bench's table; write its JSON when asked."""
    from cospeech.jsonfile import write_json

    print(f"input: {inputs.audio}, {inputs.image}")
    print(bench.format())
    if json_path:
        write_json(json_path, bench.as_dict())
        print(f"wrote {json_path}")


def _run_generate(args: argparse.Namespace) -> int:
    from cospeech.atomic import check_output
    from cospeech.errors import InputError, check_range
    from cospeech.pipeline.bench import benchmark_generate
    from cospeech.progress import Progress

    check_range("--repeats", args.repeats, 1)
    if args.json:
        check_output(args.json, ".json", name="--json")
    names = [name.strip() for name in args.models.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise InputError(f"--models {args.models!r}: expected distinct names, e.g. teacher,student")
    inputs = _inputs(args)
    _threads(args.threads)
    specs = [_spec(args, name) for name in names]
    with Progress("bench generate", len(specs) * args.repeats, "run", leave=False) as bar:

        def progress(message: str) -> None:  # called as each model's repeat starts
            if bar.postfix:
                bar.update(1)
            bar.set_postfix(message)

        bench = benchmark_generate(
            specs, inputs, _options(args), repeats=args.repeats, run_cli=not args.no_cli,
            cli_threads=args.threads, progress=progress,
        )  # fmt: skip
        bar.update(1)
    _report(bench, inputs, args.json)
    return 0


def _run_photo(args: argparse.Namespace) -> int:
    import cv2

    from cospeech.atomic import check_output
    from cospeech.errors import InputError, check_range
    from cospeech.pipeline.bench import benchmark_photo_layer
    from cospeech.pipeline.photo_layer import MAX_OUTPUT_SIZE
    from cospeech.progress import Progress

    check_range("--repeats", args.repeats, 1)
    try:
        sizes = [int(size) for size in args.sizes.split(",")]
    except ValueError:
        raise InputError(
            f"--sizes {args.sizes!r}: expected sides in pixels, e.g. 256,512"
        ) from None
    for size in sizes:  # the model's side, the lower bound, is checked once it is loaded
        check_range("--sizes", size, 1, MAX_OUTPUT_SIZE)
    if args.json:
        check_output(args.json, ".json", name="--json")
    inputs = _inputs(args)
    _threads(args.threads)
    if args.threads is not None:
        cv2.setNumThreads(args.threads)
    with Progress("bench photo", len(sizes) * args.repeats, "pass", leave=False) as bar:

        def progress(message: str) -> None:
            if bar.postfix:
                bar.update(1)
            bar.set_postfix(message)

        bench = benchmark_photo_layer(_spec(args, args.model), inputs, sizes, args.repeats,
                                      progress)  # fmt: skip
        bar.update(1)
    _report(bench, inputs, args.json)
    return 0


def _run_stream(args: argparse.Namespace) -> int:
    from cospeech.atomic import check_output
    from cospeech.audio.load import SAMPLE_RATE
    from cospeech.errors import InputError
    from cospeech.eval.stream_drift import long_speech, stream_drift
    from cospeech.jsonfile import write_json
    from cospeech.pipeline.generator import load_speech
    from cospeech.progress import Progress

    if not 0 < args.minutes <= MAX_MINUTES:
        raise InputError(f"--minutes must be in (0, {MAX_MINUTES:g}], got {args.minutes:g}")
    if not 0 < args.span_s <= 30 * args.minutes:
        raise InputError(
            f"--span-s must be in (0, {30 * args.minutes:g}] (half of --minutes), "
            f"got {args.span_s:g}"
        )
    if args.json:
        check_output(args.json, ".json", name="--json")
    inputs = _inputs(args)
    _threads(args.threads)
    spec = _spec(args, args.model)
    spec.check(_options(args))
    speech = long_speech(load_speech(inputs.audio)[0], 60 * args.minutes, SAMPLE_RATE)
    generator = spec.load()
    total = round(60 * args.minutes * generator.resolve(_options(args)).fps)
    with Progress("bench stream", total, "frame") as bar:
        report = stream_drift(
            generator, speech, str(inputs.image), reference_pose=inputs.reference_pose,
            options=_options(args), span_s=args.span_s, on_frames=bar.update,
        )  # fmt: skip
    import torch

    print(f"model: {args.model}; torch threads: {torch.get_num_threads()}")
    print(report.format())
    if args.json:
        write_json(args.json, {"model": args.model, "threads": torch.get_num_threads(),
                               "minutes": args.minutes, **report.as_dict()})  # fmt: skip
        print(f"wrote {args.json}")
    return 0


def _input_options(parser: argparse.ArgumentParser) -> None:
    """The speech, photo, its keypoints and the model folder (every bench of this module)."""
    parser.add_argument("--audio", default=DEMO_AUDIO, help="speech file")
    parser.add_argument("--image", default=DEMO_IMAGE, help="reference photo")
    parser.add_argument(
        "--reference-pose",
        help="keypoints of the photo (.npz) (default: the demo's with the demo photo, else "
        "detected with mediapipe)",
    )  # fmt: skip
    parser.add_argument("--model-folder", help="model folder (default: the shipped demo models)")


def _common(parser: argparse.ArgumentParser) -> None:
    from cospeech.pipeline.plans import ATTENTIONS

    _input_options(parser)
    parser.add_argument(
        "--size", type=int, help="frame side in pixels, the same for every model (default: "
        "each model's own)",
    )  # fmt: skip
    parser.add_argument(
        "--output-size", type=int,
        help="output frame side with the photo layer (default: 2x the model's, as generate)",
    )  # fmt: skip
    parser.add_argument(
        "--no-photo-layer", action="store_true",
        help="time the models' own frames, without the photo layer (default: with it)",
    )  # fmt: skip
    parser.add_argument(
        "--attention", choices=ATTENTIONS,
        help="attention of every model (default: each model's own: dense for the teacher, "
        "its sampling.json's for the student)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", help="also write the figures as JSON")


def register(tree) -> None:
    p = tree.subcommand(
        "bench", "generate",
        "teacher vs student side by side: load, compute FPS, end to end, first chunk",
        _run_generate, group_help="speed benchmarks",
    )  # fmt: skip
    p.add_argument(
        "--models", default="teacher,student",
        help="comma-separated models (teacher, student or folders), each optionally "
        "MODEL@PRECISION (float32 or bfloat16; auto when none is named), e.g. "
        "teacher@float32,student@float32,student@bfloat16; the first is the baseline of the "
        "speedup",
    )  # fmt: skip
    p.add_argument("--repeats", type=int, default=3, help="runs per model; medians reported")
    p.add_argument(
        "--no-cli", action="store_true",
        help="skip the end-to-end `cospeech generate` in a fresh process",
    )  # fmt: skip
    _common(p)
    s = tree.subcommand(
        "bench", "stream", "a long speech streamed: drift (first vs last minute) and memory",
        _run_stream, group_help="speed benchmarks",
    )  # fmt: skip
    s.add_argument("--minutes", type=float, default=10.0, help="minutes of speech streamed")
    s.add_argument("--model", default="student", help="teacher, student or a folder")
    s.add_argument(
        "--span-s", type=float, default=60.0, help="seconds of the first and last span compared"
    )
    _common(s)
    p = tree.subcommand(
        "bench", "photo", "the photo layer alone (warp + blend) per output size",
        _run_photo, group_help="speed benchmarks",
    )  # fmt: skip
    p.add_argument("--sizes", default="128,256,512", help="comma-separated output sides")
    p.add_argument("--repeats", type=int, default=3, help="passes per size; medians reported")
    p.add_argument(
        "--model", default="student",
        help="model whose motion drives the poses (teacher, student or a folder)",
    )  # fmt: skip
    _input_options(p)
    p.add_argument("--threads", type=int, help="torch and OpenCV threads (default: theirs)")
    p.add_argument("--json", help="also write the figures as JSON")
