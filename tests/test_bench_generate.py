"""``cospeech bench generate`` and ``cospeech bench stream``: the figures they derive, the
drift measures, the memory sampler, and both commands end to end on tiny random models.

No timing is asserted (speed is not unit-tested): only that the reported ratios are the
arithmetic of the reported measurements.
"""

from __future__ import annotations

import gc
import json
import math
import mmap
import statistics
from pathlib import Path

import numpy as np
import pytest

from cospeech.cli import main
from cospeech.errors import InputError
from cospeech.eval.stream_drift import (
    FACE_SIDE,
    HISTOGRAM_BINS,
    MemoryTrace,
    SpanStats,
    drift,
    face_box,
    face_crop,
    histogram_distance,
    long_speech,
)
from cospeech.pipeline.bench import GenerateBench, ModelSpec, ModelSpeed, Repeat, rss_bytes
from cospeech.pose import schema
from cospeech.shipped import ASSETS
from pipeline_fixture import EXAMPLE_SPEECH, tiny_models, write_speech_excerpt

EXAMPLES = ASSETS.parent.parent.parent / "examples"
IMAGE, POSE = EXAMPLES / "reference.png", EXAMPLES / "reference_pose.npz"
MIB = 2**20


def _vm_rss() -> int:
    """VmRSS of /proc/self/status in bytes (the kernel's own report, an independent read)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")


# --- memory -----------------------------------------------------------------------------------


def test_rss_matches_the_kernel_and_sees_an_allocation():
    gc.collect()  # nothing of earlier tests freed between the reads
    before = rss_bytes()
    assert abs(before - _vm_rss()) < 4 * MIB  # the two reads are a few lines apart
    # A fresh anonymous mapping (not malloc, which may hand back pages an earlier test
    # freed but the process kept resident), every page written, so every page resident.
    with mmap.mmap(-1, 64 * MIB) as block:
        for offset in range(0, 64 * MIB, mmap.PAGESIZE):
            block[offset] = 1
        grown = rss_bytes() - before
    assert 56 * MIB < grown < 72 * MIB


def test_memory_trace_reads_the_first_span_and_the_end():
    trace = MemoryTrace()
    for seconds, size in [(0.5, 100 * MIB), (1.0, 120 * MIB), (1.5, 150 * MIB), (2.0, 130 * MIB)]:
        trace.add(seconds, size)
    assert trace.at(0.9) == 120 * MIB and trace.at(1.0) == 120 * MIB
    assert trace.at(9.0) == 130 * MIB  # later than every sample: the last one
    summary = trace.summary(1.0)
    assert summary["rss_after_first_span_mib"] == 120 and summary["rss_end_mib"] == 130
    assert summary["rss_peak_mib"] == 150 and summary["rss_growth_mib"] == 10
    assert summary["samples"] == 4


# --- drift measures ---------------------------------------------------------------------------


def _face_keypoints(n: int, box: tuple[float, float, float, float]) -> np.ndarray:
    """``[n, 133, 3]`` with the 68 face points spread over ``box`` (x0, y0, x1, y1), all
    visible, the rest unseen."""
    keypoints = np.zeros((n, schema.NUM_KEYPOINTS, 3), np.float32)
    face = list(schema.FACE)
    x0, y0, x1, y1 = box
    keypoints[:, face, 0] = np.linspace(x0, x1, len(face))
    keypoints[:, face, 1] = np.linspace(y1, y0, len(face))
    keypoints[:, face, 2] = 1.0
    return keypoints


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """Six random 48x48 frames in levels 0-200 (room for a shift without clipping)."""
    return np.random.default_rng(0).integers(0, 201, (6, 48, 48, 3), dtype=np.uint8)


def _stats(frames: np.ndarray, reference_face: np.ndarray | None = None) -> SpanStats:
    stats = SpanStats(reference_face)
    keypoints = _face_keypoints(len(frames), (14, 10, 34, 30))
    stats.add(frames[:2], keypoints[:2])  # in two chunks, as a stream delivers them
    stats.add(frames[2:], keypoints[2:])
    return stats


def test_identical_spans_have_no_drift(frames):
    box = face_box(_face_keypoints(1, (14, 10, 34, 30))[0], 48, 48)
    reference = face_crop(frames[0], box)
    measures = drift(_stats(frames, reference), _stats(frames.copy(), reference))
    assert measures["mean_colour_shift"] == {"red": 0.0, "green": 0.0, "blue": 0.0}
    assert measures["mean_colour_shift_max"] == 0.0
    assert measures["histogram_distance"] == 0.0
    assert measures["sharpness_ratio"] == 1.0  # the same sums over the same frames
    assert measures["mean_frame_psnr_db"] == math.inf
    assert measures["mean_frame_ssim"] == pytest.approx(1.0, abs=1e-12)
    assert measures["face_distance_change"] == 0.0


def test_a_colour_shift_is_measured_in_closed_form(frames):
    """Red + d on every pixel: the mean colour moves by exactly (d, 0, 0); the mean frames
    differ by d on one channel of three, so MSE = d^2 / 3; the Laplacian ignores a constant
    so the sharpness holds; the face crops (area averaging, weights summing to 1) move by
    d on one channel, a mean absolute difference of d / 3 over a reference equal to the
    first span's frames."""
    d = 24
    same = np.repeat(frames[:1], 6, axis=0)
    shifted = same.copy()
    shifted[..., 0] += d
    box = face_box(_face_keypoints(1, (14, 10, 34, 30))[0], 48, 48)
    reference = face_crop(same[0], box)
    first, last = _stats(same, reference), _stats(shifted, reference)
    measures = drift(first, last)
    assert measures["mean_colour_shift"] == {"red": d, "green": 0.0, "blue": 0.0}
    assert measures["histogram_distance"] > 0
    assert measures["mean_frame_psnr_db"] == pytest.approx(10 * math.log10(255**2 * 3 / d**2))
    assert measures["sharpness_ratio"] == pytest.approx(1.0, rel=1e-5)  # float32 luma
    assert first.face_distance == 0.0 and first.face_frames == 6
    assert measures["face_distance_change"] == pytest.approx(d / 3, abs=1e-3)  # float32
    assert measures["mean_frame_ssim"] < 1.0


def test_histogram_distance_of_one_bin_moved():
    """Every red level moved to the next bin, green and blue unchanged: total variation 1 on
    one channel of three."""
    a = np.zeros((3, HISTOGRAM_BINS))
    a[:, 1] = 10
    b = a.copy()
    b[0] = np.roll(b[0], 1)
    assert histogram_distance(a, b) == pytest.approx(1 / 3)
    assert histogram_distance(a, a) == 0.0


def test_face_box_and_crop():
    keypoints = _face_keypoints(1, (10, 20, 30, 30))[0]
    x0, y0, x1, y1 = face_box(keypoints, 64, 64)
    assert x1 - x0 == y1 - y0 == 26  # 20 px wide, 15 % margin each side: 26 px square
    assert ((x0 + x1) / 2, (y0 + y1) / 2) == (20, 25)
    assert face_box(np.zeros((schema.NUM_KEYPOINTS, 3)), 64, 64) is None  # no face seen
    crop = face_crop(np.full((64, 64, 3), 7, np.uint8), (x0, y0, x1, y1))
    assert crop.shape == (FACE_SIDE, FACE_SIDE, 3)
    np.testing.assert_allclose(crop, 7, rtol=1e-5)  # float32 area weights sum to 1 +- ulp


def test_long_speech_repeats_to_the_length():
    speech = np.arange(5, dtype=np.float32)
    assert long_speech(speech, 0.75, 16).tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]


# --- the speed table's arithmetic -------------------------------------------------------------


def _row(model: str, size: int, samplings: list[float]) -> ModelSpeed:
    repeats = [Repeat(0.1, 0.3, s, 0.5, 0.1, s + 1.0, 0.2, 0.4, None) for s in samplings]
    return ModelSpeed(model, model, "dense", frames=50, fps=25.0, size=size, steps=2,
                      repeats=repeats)  # fmt: skip


def test_speed_rows_derive_from_their_medians():
    teacher, student = _row("teacher", 128, [9.5, 7.5, 8.5]), _row("student", 128, [0.3, 0.5])
    bench = GenerateBench([teacher, student], threads=2)
    assert teacher.compute_s == 9.0 and teacher.compute_fps == 50 / 9.0  # median 8.5 + 0.5
    assert teacher.compute_per_video_s == 9.0 / 2.0
    assert student.compute_s == statistics.median([0.8, 1.0])
    assert bench.speedup(teacher) == 1.0
    assert bench.speedup(student) == pytest.approx((9.0 / 2) / (0.9 / 2))
    assert bench.speedup(_row("big", 256, [1.0])) is None  # another frame size
    data = bench.as_dict()
    assert data["baseline"] == "teacher" and data["threads"] == 2
    assert data["models"][1]["offline_s"] == statistics.median([1.3, 1.5])
    assert data["models"][1]["cli_s"] is None
    text = bench.format()
    assert "torch threads: 2" in text and "10.00x" in text


# --- the commands on tiny models ---------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.getbasetemp()
    folder = tmp_path_factory.mktemp("speech")
    speech = write_speech_excerpt(EXAMPLE_SPEECH, folder / "speech-1s.wav", 1.0)
    return {"models": tiny_models(base), "speech": speech}


def _inputs(tiny) -> list[str]:
    return ["--model-folder", str(tiny["models"]), "--audio", str(tiny["speech"]),
            "--image", str(IMAGE), "--reference-pose", str(POSE), "--threads", "1"]  # fmt: skip


def test_bench_generate_on_tiny_models(tiny, tmp_path, capsys):
    out = tmp_path / "speed.json"
    argv = ["bench", "generate", "--models", "teacher", "--repeats", "2", "--json", str(out)]
    assert main([*argv, *_inputs(tiny)]) == 0
    printed = capsys.readouterr().out
    assert "torch threads: 1" in printed and "compute (sampling + decode + photo)" in printed
    data = json.loads(out.read_text())
    assert data["threads"] == 1 and data["baseline"] == "teacher"
    (row,) = data["models"]
    assert row["frames"] == 25 and row["fps"] == 25 and row["size"] == 128  # the photo layer
    runs = row["repeats"]
    assert len(runs) == 2
    assert all(r["photo_s"] > 0 for r in runs)
    computes = [r["sampling_s"] + r["decode_s"] + r["photo_s"] for r in runs]
    assert row["compute_s"] == pytest.approx(statistics.median(computes), rel=1e-12)
    assert row["compute_fps"] == pytest.approx(row["frames"] / row["compute_s"], rel=1e-12)
    assert row["compute_per_video_s"] == pytest.approx(row["compute_s"] / row["video_s"])
    assert row["speedup"] == 1.0
    for name in ("load_s", "offline_s", "first_chunk_s", "first_chunk_with_load_s", "cli_s"):
        assert row[name] == pytest.approx(statistics.median(r[name] for r in runs), rel=1e-12)
    for run in runs:
        assert 0 < run["load_s"] < run["offline_s"]
        phases = run["prepare_s"] + run["sampling_s"] + run["decode_s"] + run["photo_s"]
        phases += run["write_s"]
        # the call's phases add up to its time; only a few statements lie between timers
        assert run["offline_s"] == pytest.approx(run["load_s"] + phases, abs=0.5)
        assert 0 < run["first_chunk_s"] < run["first_chunk_with_load_s"]
        assert run["cli_s"] > 0


def test_models_name_their_precision(tiny, tmp_path, capsys):
    """``MODEL@PRECISION`` runs that model in that precision, side by side with the same
    model in another; the row is named so and records the precision that ran."""
    spec = ModelSpec.parse("student@bfloat16")
    assert (spec.model, spec.precision, spec.name) == ("student", "bfloat16", "student@bfloat16")
    assert spec.cli_flags() == ["--model", "student", "--precision", "bfloat16"]
    assert ModelSpec.parse("teacher").name == "teacher"
    with pytest.raises(InputError, match="--precision must be one of"):
        ModelSpec.parse("student@fp8")
    out = tmp_path / "speed.json"
    argv = ["bench", "generate", "--models", "teacher@float32,teacher@bfloat16", "--repeats", "1",
            "--no-cli", "--json", str(out)]  # fmt: skip
    assert main([*argv, *_inputs(tiny)]) == 0
    assert "float32" in capsys.readouterr().out
    rows = json.loads(out.read_text())["models"]
    assert [(r["model"], r["precision"]) for r in rows] == [
        ("teacher@float32", "float32"),
        ("teacher@bfloat16", "bfloat16"),
    ]


def test_bench_photo_on_tiny_models(tiny, tmp_path, capsys):
    out = tmp_path / "photo.json"
    argv = ["bench", "photo", "--model", "teacher", "--sizes", "64,128", "--repeats", "2",
            "--json", str(out)]  # fmt: skip
    assert main([*argv, *_inputs(tiny)]) == 0
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["frames"] == 25 and data["model_size"] == 64 and data["threads"] == 1
    assert [row["size"] for row in data["sizes"]] == [64, 128]
    for row in data["sizes"]:
        assert len(row["seconds_per_frame"]) == 2 and min(row["seconds_per_frame"]) > 0
        median = statistics.median(row["seconds_per_frame"])
        assert row["ms_per_frame"] == pytest.approx(1000 * median, rel=1e-12)
        assert f"{row['size']}x{row['size']}: {row['ms_per_frame']:.2f} ms per frame" in printed


def test_bench_photo_refuses_an_output_below_the_models_side(tiny, capsys):
    argv = ["bench", "photo", "--model", "teacher", "--sizes", "32", *_inputs(tiny)]
    assert main(argv) == 2
    assert "--sizes must be in [64, 1024], got 32" in capsys.readouterr().err


@pytest.fixture(scope="module")
def pair(tiny, tmp_path_factory) -> Path:
    """A copy of the tiny model folder with a ``student/`` beside the teacher: the tiny DiT
    with other random weights and a causal-student ``sampling.json`` (2 levels, chunks of 3
    latent frames, dense attention)."""
    import shutil

    import torch

    from cospeech.config import to_dict
    from cospeech.jsonfile import write_json
    from cospeech.models import VideoDiT, load_video_dit_config
    from cospeech.models.i2v import STUDENT_KIND, StudentSampling

    root = tmp_path_factory.mktemp("pair")
    for sub in ("teacher", "vae"):
        shutil.copytree(tiny["models"] / sub, root / sub)
    torch.manual_seed(1)
    VideoDiT(load_video_dit_config("tiny")).save_pretrained(root / "student")
    sampling = StudentSampling(
        kind=STUDENT_KIND, steps=[1000.0, 500.0], shift=1.0, chunk_frames=3, cache_sink=1,
        cache_window=0, attention="dense", k=4, block_size=128, window=6, size=64,
    )  # fmt: skip
    write_json(root / "student" / "sampling.json", to_dict(sampling))
    return root


def test_teacher_and_student_side_by_side(tiny, pair, tmp_path):
    """Both rows measured in one run; the speedup is the ratio of the reported compute
    seconds per generated second. The teacher of a folder that also holds a student cannot
    be named by `generate --model`, so its fresh-process run is left out (None)."""
    out = tmp_path / "pair.json"
    argv = ["bench", "generate", "--models", "teacher,student", "--repeats", "1",
            "--json", str(out), *_inputs(tiny)]  # fmt: skip
    argv[argv.index(str(tiny["models"]))] = str(pair)
    assert main(argv) == 0
    teacher, student = json.loads(out.read_text())["models"]
    assert (teacher["kind"], student["kind"]) == ("teacher", "student")
    assert teacher["frames"] == student["frames"] == 25
    expected = teacher["compute_per_video_s"] / student["compute_per_video_s"]
    assert student["speedup"] == pytest.approx(expected, rel=1e-12)
    assert teacher["cli_s"] is None and student["cli_s"] > 0


def test_bench_stream_on_tiny_models(tiny, tmp_path, capsys):
    out = tmp_path / "stream.json"
    argv = ["bench", "stream", "--model", "teacher", "--minutes", "0.05", "--span-s", "1",
            "--json", str(out)]  # fmt: skip
    assert main([*argv, *_inputs(tiny)]) == 0
    assert "memory (RSS)" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["frames"] == 75 and data["video_s"] == 3.0 and data["span_s"] == 1
    assert data["first"]["frames"] == data["last"]["frames"] == 25
    assert data["first"]["face_frames"] == 25  # the driving pose always has a face
    assert data["compute_fps"] == pytest.approx(data["frames"] / data["compute_s"])
    assert 0 < data["peak_latent_frames"] <= 20
    memory = data["memory"]
    assert memory["samples"] >= 2
    assert 50 < memory["rss_after_first_span_mib"] <= memory["rss_peak_mib"] < 64 * 1024
    assert memory["rss_growth_mib"] == pytest.approx(
        memory["rss_end_mib"] - memory["rss_after_first_span_mib"]
    )
    for name in ("histogram_distance", "mean_frame_ssim", "face_distance_change"):
        assert math.isfinite(data["drift"][name])


@pytest.mark.parametrize(
    ("name", "defaults"),
    [("generate", ["teacher,student", "examples/speech.wav", "3"]), ("stream", ["10.0", "60.0"])],
)
def test_help_shows_the_defaults(name, defaults, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", name, "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert all(f"(default: {value})" in text for value in defaults)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["generate", "--repeats", "0"], "--repeats must be >= 1, got 0"),
        (["generate", "--models", "teacher,,student"], "--models 'teacher,,student': expected"),
        (["generate", "--audio", "nope.wav"], "--audio nope.wav: no such file"),
        (["generate", "--json", "out.txt"], "--json out.txt: must end in .json"),
        (["stream", "--minutes", "0"], "--minutes must be in (0, 30], got 0"),
        (["stream", "--minutes", "1", "--span-s", "31"], "--span-s must be in (0, 30]"),
        (["stream", "--threads", "0"], "--threads must be in [1,"),
        (["generate", "--size", "100"], "--size 100:"),
        (["photo", "--sizes", "256,big"], "--sizes '256,big': expected sides in pixels"),
        (["photo", "--sizes", "4096"], "--sizes must be in [1, 1024], got 4096"),
        (["photo", "--repeats", "0"], "--repeats must be >= 1, got 0"),
    ],
)
def test_bad_options_are_one_line(argv, message, capsys):
    assert main(["bench", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cospeech: error: ") and message in err and "\n" not in err
