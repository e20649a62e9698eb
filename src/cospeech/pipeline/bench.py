"""``cospeech bench generate``: the speed of whole generations, model against model.

Every model of the list runs on the same speech, photo and frame size, in one process,
interleaved repeat by repeat (so the machine's load hits them alike). Per repeat and model:

- **offline**: ``Generator.from_pretrained`` (timed: *load*) then the offline call writing an
  mp4 into a temporary folder; its phases give *compute* = sampling + VAE decode + the photo
  layer (and a warp-conditioned model's warp condition; no model loading, motion, or file
  writing), *prepare* (inputs, reference, motion model) and
  *write* (H.264 + AAC), and *offline* = load + the call, end to end.
- **first chunk**: a fresh ``from_pretrained`` then ``stream()`` until its first
  :class:`~cospeech.pipeline.generator.Chunk`: seconds from the ``stream`` call
  (``FrameStream.first_chunk_seconds``, the motion model included) and from the start of
  loading. The rest of the stream is not generated.
- **cli**: ``cospeech generate`` in a fresh Python process (imports, loading, motion,
  compute and writing: what a user waits for), optional; not run for a model its
  ``--model`` flag cannot name (the teacher of a ``folder`` that also holds a student).

Each figure is the median over the repeats; the derived ones come from those medians:
``compute_fps = frames / compute_s``, ``compute_per_video_s = compute_s / video_s`` and,
against the first model of the list (the baseline, normally the teacher), ``speedup =
baseline compute_per_video_s / compute_per_video_s`` (None when the frame sizes differ).

Also the resident memory of this process (:func:`rss_bytes`), used by the long-stream run,
and ``cospeech bench photo`` (:func:`benchmark_photo_layer`): the photo layer alone, per
output size, on the driving poses of the same inputs.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from cospeech.errors import CospeechError, InputError, check_range
from cospeech.latent_geometry import TIME_STRIDE
from cospeech.pipeline.bundle import MODEL_KINDS, load_settings, model_source
from cospeech.pipeline.generate import GenerateOptions, GenerateResult, resolve_options
from cospeech.pipeline.generator import Generator, load_photo_pose
from cospeech.pipeline.photo_layer import MAX_OUTPUT_SIZE, PhotoLayer, photo_layer_for
from cospeech.pipeline.reference import frame_reference
from cospeech.pose.warp import BATCH
from cospeech.precision import check_precision

FIRST_FIELDS = ("first_chunk_s", "first_chunk_with_load_s")


def rss_bytes() -> int:
    """Resident set size of this process now, in bytes (Linux ``/proc/self/statm``)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError) as exc:
        raise CospeechError(
            f"cannot read this process's memory (/proc/self/statm): {exc}"
        ) from None
    return pages * os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class BenchInputs:
    """The speech, the photo and its keypoints (None: detected), as ``generate`` takes them."""

    audio: Path
    image: Path
    reference_pose: Path | None = None

    def check(self) -> None:
        """InputError naming the flag of a file that does not exist."""
        given = {"--audio": self.audio, "--image": self.image,
                 "--reference-pose": self.reference_pose}  # fmt: skip
        for flag, path in given.items():
            if path is not None and not Path(path).is_file():
                raise InputError(f"{flag} {path}: no such file")


@dataclass(frozen=True)
class ModelSpec:
    """One model to time: ``model`` as ``Generator.from_pretrained(folder, model=...)``
    takes it (``"teacher"``, ``"student"`` or a folder), the model ``folder`` (None: the
    bundled models) and the ``precision`` it runs in (:mod:`cospeech.precision`)."""

    model: str
    folder: Path | None = None
    precision: str = "auto"

    @classmethod
    def parse(cls, name: str, folder: Path | None = None) -> ModelSpec:
        """``MODEL`` or ``MODEL@PRECISION`` (``student@float32``), as ``--models`` lists
        them (InputError for an unknown precision)."""
        model, _, precision = name.rpartition("@") if "@" in name else (name, "", "auto")
        return cls(model, folder, check_precision(precision))

    @property
    def name(self) -> str:
        """The row's name: ``model``, with ``@precision`` unless ``auto``."""
        return self.model if self.precision == "auto" else f"{self.model}@{self.precision}"

    def load(self) -> Generator:
        return Generator.from_pretrained(self.folder, model=self.model, precision=self.precision)

    def check(self, options: GenerateOptions) -> None:
        """InputError when the model is missing or ``options`` do not suit it (before any
        weights are loaded)."""
        resolve_options(options, load_settings(self.folder, self.model))

    def cli_flags(self) -> list[str] | None:
        """``--model X`` of ``cospeech generate`` loading the same DiT and VAE, or None
        when its one flag cannot name them (the teacher of a folder that has a student)."""
        precision = ["--precision", self.precision]
        if self.folder is None:
            return ["--model", self.model, *precision]
        wanted = model_source(self.folder, self.model)
        candidate = str(self.folder) if self.model in MODEL_KINDS else self.model
        same = model_source(None, candidate) == wanted
        return ["--model", candidate, *precision] if same else None


@dataclass(frozen=True)
class Repeat:
    """Seconds measured in one repeat for one model (``cli_s`` None when not run)."""

    load_s: float
    prepare_s: float
    sampling_s: float
    decode_s: float
    write_s: float
    offline_s: float
    first_chunk_s: float
    first_chunk_with_load_s: float
    cli_s: float | None = None
    photo_s: float = 0.0  # the photo layer and the warp condition

    @property
    def compute_s(self) -> float:
        return self.sampling_s + self.decode_s + self.photo_s


@dataclass(frozen=True)
class ModelSpeed:
    """Median speed of one model over its repeats (see the module docstring)."""

    model: str
    kind: str
    attention: str
    frames: int
    fps: float
    size: int
    steps: int
    repeats: list[Repeat] = field(repr=False)
    precision: str = "float32"

    def median(self, name: str) -> float | None:
        """Median of one :class:`Repeat` field or of ``compute_s`` (None if never measured)."""
        values = [getattr(r, name) for r in self.repeats if getattr(r, name) is not None]
        return statistics.median(values) if values else None

    @property
    def video_s(self) -> float:
        return self.frames / self.fps

    @property
    def compute_s(self) -> float:
        return statistics.median(r.compute_s for r in self.repeats)

    @property
    def compute_fps(self) -> float:
        return self.frames / self.compute_s

    @property
    def compute_per_video_s(self) -> float:
        """Seconds of compute per generated second of video."""
        return self.compute_s / self.video_s

    def as_dict(self) -> dict:
        names = ("load_s", "prepare_s", "sampling_s", "decode_s", "photo_s", "write_s",
                 "offline_s",
                 *FIRST_FIELDS, "cli_s")  # fmt: skip
        return {
            "model": self.model, "kind": self.kind, "attention": self.attention,
            "precision": self.precision, "frames": self.frames, "fps": self.fps, "size": self.size,
            "steps": self.steps, "video_s": self.video_s, "compute_s": self.compute_s,
            "compute_fps": self.compute_fps, "compute_per_video_s": self.compute_per_video_s,
            **{name: self.median(name) for name in names},
            "repeats": [asdict(r) for r in self.repeats],
        }  # fmt: skip


@dataclass(frozen=True)
class GenerateBench:
    """Rows of :func:`benchmark_generate`, the first one the baseline."""

    rows: list[ModelSpeed]
    threads: int

    def speedup(self, row: ModelSpeed) -> float | None:
        """Baseline compute per generated second over ``row``'s (None: other frame size)."""
        base = self.rows[0]
        if row.size != base.size:
            return None
        return base.compute_per_video_s / row.compute_per_video_s

    def as_dict(self) -> dict:
        rows = [{**row.as_dict(), "speedup": self.speedup(row)} for row in self.rows]
        return {"threads": self.threads, "baseline": self.rows[0].model, "models": rows}

    def format(self) -> str:
        """The side-by-side table."""
        header = ["", *(row.model for row in self.rows)]
        lines = [
            ("frames", lambda r: f"{r.frames} ({r.video_s:.2f} s) at {r.size}x{r.size}"),
            ("runs", lambda r: f"{r.kind}, {r.steps} steps, {r.attention} attention, "
                               f"{r.precision}"),
            ("load", lambda r: _seconds(r.median("load_s"))),
            ("compute (sampling + decode + photo)",
             lambda r: f"{_seconds(r.compute_s)} = {r.compute_fps:.2f} FPS"),
            ("compute s per generated s", lambda r: f"{r.compute_per_video_s:.3f}"),
            (f"speedup vs {self.rows[0].model}", lambda r: _ratio(self.speedup(r))),
            ("offline, loading included", lambda r: _seconds(r.median("offline_s"))),
            ("  of which prepare / write", lambda r: f"{_seconds(r.median('prepare_s'))} / "
                                                     f"{_seconds(r.median('write_s'))}"),
            ("cospeech generate (fresh process)", lambda r: _seconds(r.median("cli_s"))),
            ("first chunk from stream()", lambda r: _seconds(r.median("first_chunk_s"))),
            ("first chunk from loading",
             lambda r: _seconds(r.median("first_chunk_with_load_s"))),
        ]  # fmt: skip
        table = [header] + [[name, *(cell(row) for row in self.rows)] for name, cell in lines]
        widths = [max(len(line[i]) for line in table) for i in range(len(header))]
        text = [" | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                for line in table]  # fmt: skip
        text.insert(1, "-+-".join("-" * w for w in widths))
        repeats = len(self.rows[0].repeats)
        return "\n".join([f"torch threads: {self.threads}; medians of {repeats} repeat(s)", *text])


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _ratio(value: float | None) -> str:
    return "- (other size)" if value is None else f"{value:.2f}x"


def time_offline(
    spec: ModelSpec, inputs: BenchInputs, options: GenerateOptions, output: Path
) -> tuple[float, GenerateResult, float]:
    """``(load seconds, the call's result, seconds of load + call)``: the offline call
    writing ``output`` (mp4)."""
    started = time.perf_counter()
    generator = spec.load()
    loaded = time.perf_counter()
    result = generator(inputs.audio, inputs.image, reference_pose=inputs.reference_pose,
                       options=options, output=output)  # fmt: skip
    return loaded - started, result, time.perf_counter() - started


def time_first_chunk(
    spec: ModelSpec, inputs: BenchInputs, options: GenerateOptions
) -> tuple[float, float]:
    """``(seconds from the stream() call, seconds from loading)`` to the first chunk."""
    started = time.perf_counter()
    generator = spec.load()
    stream = generator.stream(inputs.audio, inputs.image, reference_pose=inputs.reference_pose,
                              options=options)  # fmt: skip
    try:
        chunk = next(stream)
        with_load = time.perf_counter() - started
    finally:
        stream.close()
    return chunk.seconds, with_load


def cli_command(
    spec: ModelSpec, inputs: BenchInputs, options: GenerateOptions, output: Path
) -> list[str] | None:
    """``cospeech generate`` (through this Python) for the same run, writing ``output``
    (None when its flags cannot select the model, :meth:`ModelSpec.cli_flags`)."""
    flags = spec.cli_flags()
    if flags is None:
        return None
    command = [sys.executable, "-m", "cospeech.cli", "--progress", "off", "generate",
               "--audio", str(inputs.audio), "--image", str(inputs.image), "-o", str(output),
               *flags]  # fmt: skip
    if inputs.reference_pose is not None:
        command += ["--reference-pose", str(inputs.reference_pose)]
    flags = (("--size", options.size), ("--attention", options.attention),
             ("--output-size", options.output_size))  # fmt: skip
    for flag, value in flags:
        if value is not None:
            command += [flag, str(value)]
    if not options.photo_layer:
        command.append("--no-photo-layer")
    return command


def time_cli(command: list[str], threads: int | None) -> float:
    """Wall seconds of ``command`` (``OMP_NUM_THREADS=threads`` when given);
    CospeechError with its last line of stderr when it fails."""
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise CospeechError(f"cospeech generate failed (exit {done.returncode}): {last}")
    return seconds


def time_repeat(
    spec: ModelSpec,
    inputs: BenchInputs,
    options: GenerateOptions,
    folder: Path,
    cli_threads: int | None,
    run_cli: bool,
) -> tuple[Repeat, GenerateResult]:
    """One repeat of one model (see the module docstring); mp4s go to ``folder``."""
    load_s, result, offline_s = time_offline(spec, inputs, options, folder / "offline.mp4")
    first_s, first_with_load_s = time_first_chunk(spec, inputs, options)
    command = cli_command(spec, inputs, options, folder / "cli.mp4") if run_cli else None
    cli_s = time_cli(command, cli_threads) if command is not None else None
    phases = result.phases
    photo_s = phases.get("photo", 0.0) + phases.get("warp", 0.0)
    repeat = Repeat(load_s, phases["prepare"], phases["sampling"], phases["decode"],
                    phases["write"], offline_s, first_s, first_with_load_s, cli_s,
                    photo_s)  # fmt: skip
    return repeat, result


def _speed(model: str, result: GenerateResult, repeats: list[Repeat]) -> ModelSpeed:
    return ModelSpeed(model, result.model, result.attention, result.frames, result.fps,
                      result.size, result.steps, repeats, result.precision)  # fmt: skip


def benchmark_generate(
    specs: list[ModelSpec],
    inputs: BenchInputs,
    options: GenerateOptions | None = None,
    repeats: int = 1,
    run_cli: bool = True,
    cli_threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> GenerateBench:
    """Time each model of ``specs`` ``repeats`` times, interleaved (see the module
    docstring); ``progress(message)`` is called as each timed run starts."""
    if not specs:
        raise InputError("--models: name at least one model")
    check_range("--repeats", repeats, 1)
    inputs.check()
    options = options or GenerateOptions()
    for spec in specs:
        spec.check(options)
    say = progress or (lambda _message: None)
    measured: dict[int, list[Repeat]] = {i: [] for i in range(len(specs))}
    results: dict[int, GenerateResult] = {}
    with tempfile.TemporaryDirectory(prefix="cospeech-bench-") as tmp:
        for number in range(repeats):
            for index, spec in enumerate(specs):
                say(f"{spec.name}, repeat {number + 1}/{repeats}")
                folder = Path(tmp) / f"{index}-{number}"
                folder.mkdir()
                repeat, results[index] = time_repeat(spec, inputs, options, folder,
                                                     cli_threads, run_cli)  # fmt: skip
                measured[index].append(repeat)
    rows = [_speed(spec.name, results[i], measured[i]) for i, spec in enumerate(specs)]
    return GenerateBench(rows, torch.get_num_threads())


@dataclass(frozen=True)
class PhotoLayerSpeed:
    """The photo layer at one output ``size``: seconds per frame of each repeat."""

    size: int
    seconds_per_frame: list[float]

    @property
    def ms_per_frame(self) -> float:
        return 1000 * statistics.median(self.seconds_per_frame)


@dataclass(frozen=True)
class PhotoLayerBench:
    """:func:`benchmark_photo_layer`: ``frames`` driving poses composed ``chunk`` at a time
    over model frames of side ``model_size``, at each output size."""

    frames: int
    chunk: int
    model_size: int
    threads: int
    rows: list[PhotoLayerSpeed]

    def as_dict(self) -> dict:
        rows = [{"size": r.size, "ms_per_frame": r.ms_per_frame,
                 "seconds_per_frame": r.seconds_per_frame} for r in self.rows]  # fmt: skip
        return {"frames": self.frames, "chunk": self.chunk, "model_size": self.model_size,
                "threads": self.threads, "sizes": rows}  # fmt: skip

    def format(self) -> str:
        repeats = len(self.rows[0].seconds_per_frame)
        lines = [
            f"photo layer over {self.model_size}x{self.model_size} model frames, "
            f"{self.frames} driving poses, {self.chunk} per call, {self.threads} OpenCV "
            f"thread(s); medians of {repeats} repeat(s)"
        ]
        for row in self.rows:
            lines.append(f"{row.size}x{row.size}: {row.ms_per_frame:.2f} ms per frame "
                         f"({1000 / row.ms_per_frame:.0f} frames/s)")  # fmt: skip
        return "\n".join(lines)


def time_photo_layer(layer: PhotoLayer, keypoints: np.ndarray, chunk: int) -> float:
    """Seconds per frame of :meth:`PhotoLayer.compose_frames` over the driving ``keypoints``
    ``[F, 133, 3]`` (model pixels), ``chunk`` frames per call, the model's frames mid-grey
    (the layer's cost does not depend on their pixels)."""
    side = layer.model_size
    painted = np.full((chunk, side, side, 3), 128, np.uint8)
    started = time.perf_counter()
    for first in range(0, len(keypoints), chunk):
        poses = keypoints[first : first + chunk]
        layer.compose_frames(painted[: len(poses)], poses)
    return (time.perf_counter() - started) / len(keypoints)


def benchmark_photo_layer(
    spec: ModelSpec, inputs: BenchInputs, sizes: list[int], repeats: int,
    progress: Callable[[str], None] | None = None,
) -> PhotoLayerBench:  # fmt: skip
    """The photo layer alone at each output size of ``sizes``, on the driving poses the
    model ``spec``'s motion makes from ``inputs``' speech and photo (``repeats`` passes
    over them per size, interleaved size by size)."""
    import cv2

    generator = spec.load()
    options = generator.resolve(GenerateOptions(photo_layer=False))
    for size in sizes:
        check_range("--sizes", size, options.size, MAX_OUTPUT_SIZE)
    # The photo and its keypoints read (or detected) once, for the motion and every size.
    photo, pose = load_photo_pose(str(inputs.image), inputs.reference_pose)
    job = generator.prepare(inputs.audio, photo, reference_pose=pose, options=options)
    layers = [photo_layer_for(generator.bundle, frame_reference(photo, pose, size), options.size)
              for size in sizes]  # fmt: skip
    # As generate calls it: the student per chunk, the teacher's decoded frames in batches.
    student = generator.kind == "student"
    chunk = generator.bundle.settings.chunk_frames * TIME_STRIDE if student else BATCH
    seconds: list[list[float]] = [[] for _ in sizes]
    for repeat in range(repeats):
        for size, layer, times in zip(sizes, layers, seconds, strict=True):
            if progress is not None:
                progress(f"{size}x{size}, repeat {repeat + 1}/{repeats}")
            times.append(time_photo_layer(layer, job.keypoints, chunk))
    rows = [PhotoLayerSpeed(size, times) for size, times in zip(sizes, seconds, strict=True)]
    return PhotoLayerBench(job.frames, chunk, options.size, cv2.getNumThreads(), rows)
