"""Messages of the eval and bench commands and of file inputs (issue 17: items 5, 12, 13).

Option errors name the flag the user typed and its range; a folder given for a file says so;
an empty audio file says it is empty (no errno); ``eval teacher`` on a corpus of another
frame size says which corpus to make; a clip without audio says so; every JSON file is
strict (no bare ``NaN``); help shows clean text and the defaults.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cospeech.cli import build_parser, main
from cospeech.errors import InputError
from cospeech.jsonfile import read_json, write_json
from cospeech.pose.sequence import PoseSequence
from pipeline_fixture import clip_with_split, tiny_corpus, tiny_models
from test_cli_errors import _fill, expect_error

MAX_SEED = 2**32 - 1


def _reject(name: str):
    raise ValueError(f"not strict JSON: {name}")


def strict_loads(text: str):
    """``json.loads`` that refuses ``NaN``, ``Infinity`` and ``-Infinity``."""
    return json.loads(text, parse_constant=_reject)


@pytest.fixture(scope="module")
def d(tmp_path_factory) -> Path:
    """Inputs: an empty wav, a text file named .wav, a folder, a pose, a flat photo."""
    d = tmp_path_factory.mktemp("inputs")
    (d / "empty.wav").write_bytes(b"")
    (d / "text.wav").write_text("not audio\n")
    (d / "folder").mkdir()
    kp = np.random.default_rng(0).random((1, 133, 3)).astype(np.float32)
    kp[..., :2] *= 64
    PoseSequence(kp, 25.0, 64, 64).save(d / "pose.npz")
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(d / "flat.png")
    return d


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return tiny_corpus(tmp_path_factory.getbasetemp())


# --- files: a folder, an empty file ------------------------------------------------------------

MOTION = ["motion", "--reference-pose", "{d}/pose.npz", "-o", "{out}/p.npz", "--audio"]
FILE_CASES = {
    "audio-empty": ([*MOTION, "{d}/empty.wav"],
                    ["audio", "empty.wav: the file is empty (0 bytes)"]),
    "audio-folder": ([*MOTION, "{d}/folder"], ["audio", "folder: is a folder, not a file"]),
    "audio-dot": ([*MOTION, "."], ["audio .: is a folder, not a file"]),
    "audio-text": ([*MOTION, "{d}/text.wav"], ["text.wav: not an audio file (Invalid data"]),
    "audio-missing": ([*MOTION, "{d}/none.wav"], ["none.wav: no such file"]),
    "preset-folder": (["bench", "model", "--preset", "{d}/folder"],
                      ["config", "folder: is a folder, not a file"]),
    "train-config-folder": (["train", "motion", "--config", "{d}/folder", "--out", "{out}/run"],
                            ["config", "folder: is a folder, not a file"]),
    "onnx-model-folder": (["pose", "extract", "{d}/flat.png", "-o", "{out}/p.npz", "--backend",
                           "onnx", "--pose-model", "{d}/folder"],
                          ["pose model", "folder: is a folder, not a file"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_file_inputs(case, d, tmp_path, capsys):
    argv, names = FILE_CASES[case]
    line = expect_error(capsys, _fill(argv, d, tmp_path), *names)
    assert "Errno" not in line
    assert "no such file" not in line or case == "audio-missing"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, message", [("folder", "is a folder, not a file"),
                                           ("none.json", "no such file"),
                                           ("text.wav", "not readable JSON")])  # fmt: skip
def test_read_json_names_the_problem(name, message, d):
    with pytest.raises(InputError, match=message):
        read_json(d / name)


# --- eval and bench options: the flag, its range ------------------------------------------------

NEGATIVE_SEED = f"must be in [0, {MAX_SEED}], got -1"
OPTION_CASES = {
    "motion-clips": (["eval", "motion", "--data", "{d}", "--clips", "-1"],
                     ["--clips must be >= 0, got -1"]),
    "motion-seed": (["eval", "motion", "--data", "{d}", "--seed", "-1"],
                    ["--seed " + NEGATIVE_SEED]),
    "motion-sheet-frames": (["eval", "motion", "--data", "{d}", "--sheet-frames", "0"],
                            ["--sheet-frames must be >= 1, got 0"]),
    "motion-sheet-suffix": (["eval", "motion", "--data", "{d}", "--contact-sheet", "{out}/s.jpg"],
                            ["--contact-sheet", "s.jpg: must end in .png"]),
    "motion-json-folder": (["eval", "motion", "--data", "{d}", "--json", "{d}/folder"],
                           ["cannot write", "it is a folder"]),
    "teacher-clips": (["eval", "teacher", "--data", "{d}", "--clips", "-1"],
                      ["--clips must be >= 0, got -1"]),
    "teacher-frames-4k": (["eval", "teacher", "--data", "{d}", "--frames", "50"],
                          ["--frames must be 1 + 4k", "got 50 (nearest valid: 49)"]),
    "teacher-frames-zero": (["eval", "teacher", "--data", "{d}", "--frames", "0"],
                            ["--frames must be >= 1, got 0"]),
    "teacher-steps": (["eval", "teacher", "--data", "{d}", "--steps", "0"],
                      ["--steps must be in [1, 1000], got 0"]),
    "teacher-guidance": (["eval", "teacher", "--data", "{d}", "--guidance", "0.5"],
                         ["--guidance must be", ">= 1, got 0.5"]),
    "teacher-guidance-nan": (["eval", "teacher", "--data", "{d}", "--guidance", "nan"],
                             ["--guidance must be", "got nan"]),
    "teacher-seed": (["eval", "teacher", "--data", "{d}", "--seed", str(MAX_SEED + 1)],
                     [f"--seed must be in [0, {MAX_SEED}], got {MAX_SEED + 1}"]),
    "teacher-output": (["eval", "teacher", "--data", "{d}", "-o", "{d}/folder"],
                       ["cannot write", "it is a folder"]),
    "vae-frames": (["eval", "vae", "--data", "{d}", "--frames", "10"],
                   ["--frames must be 1 + 4k", "(nearest valid: 9)"]),
    "vae-clips": (["eval", "vae", "--data", "{d}", "--clips", "-2"], ["--clips must be >= 0"]),
    "attention-seed": (["bench", "attention", "--quick", "--seed", "-1"],
                       ["--seed " + NEGATIVE_SEED]),
    "attention-threads": (["bench", "attention", "--quick", "--threads", "0"],
                          ["--threads must be >= 1, got 0"]),
    "attention-repeats": (["bench", "attention", "--quick", "--repeats", "0"],
                          ["--repeats must be >= 1, got 0"]),
    "attention-density": (["bench", "attention", "--quick", "--density", "0"],
                          ["--density must be in (0, 1], got 0"]),
    "attention-density-nan": (["bench", "attention", "--quick", "--density", "nan"],
                              ["--density must be in (0, 1], got nan"]),
    "model-threads": (["bench", "model", "--threads", "0"], ["--threads must be >= 1, got 0"]),
    "model-steps": (["bench", "model", "--frames", "5", "--size", "32x32", "--chunk-frames", "1",
                     "--steps", "0"], ["--steps must be >= 1, got 0"]),
    "model-repeats": (["bench", "model", "--frames", "5", "--size", "32x32", "--chunk-frames",
                       "1", "--repeats", "0"], ["--repeats must be >= 1, got 0"]),
    "model-chunk": (["bench", "model", "--chunk-frames", "0"], ["--chunk-frames", ">= 1, got 0"]),
    "model-chunk-too-big": (["bench", "model", "--frames", "9", "--size", "32x32"],
                            ["--frames 9 gives 3 latent frames", "--chunk-frames 3",
                             "use --frames 13 or more"]),
    "model-frames": (["bench", "model", "--frames", "-1"], ["--frames must be 1 + 4k, got -1"]),
    "model-size": (["bench", "model", "--size", "100x100", "--frames", "5"],
                   ["--size 100x100: must be a multiple of 16 pixels"]),
    "model-size-text": (["bench", "model", "--size", "abc"], ["--size 'abc': expected HxW"]),
    "model-device": (["bench", "model", "--device", "foo"], ["--device foo: unknown device"]),
    "motion-bench-threads": (["bench", "motion", "--data", "{d}", "--threads", "0"],
                             ["--threads must be in [1, "]),
    "motion-bench-chunks": (["bench", "motion", "--data", "{d}", "--chunks", "5", "0"],
                            ["--chunks must be in [1, 200], got 0"]),
    "motion-bench-stream": (["bench", "motion", "--data", "{d}", "--stream-s", "0"],
                            ["--stream-s must be in (0, 1800] seconds, got 0"]),
    "motion-bench-stream-nan": (["bench", "motion", "--data", "{d}", "--stream-s", "nan"],
                                ["--stream-s must be in (0, 1800] seconds, got nan"]),
    "motion-bench-long": (["bench", "motion", "--data", "{d}", "--long-s", "99999"],
                          ["--long-s must be in (0, 1800] seconds, got 99999"]),
    "motion-bench-agreement": (["bench", "motion", "--data", "{d}", "--agreement-clips", "-1"],
                               ["--agreement-clips must be >= 0, got -1"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(OPTION_CASES))
def test_eval_and_bench_options(case, d, tmp_path, capsys):
    argv, names = OPTION_CASES[case]
    expect_error(capsys, _fill(argv, d, tmp_path), *names)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["motion", "teacher", "vae"])
def test_eval_split_is_one_of_the_three(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", command, "--data", "x", "--split", "tset"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'tset'" in capsys.readouterr().err


def test_eval_motion_limit_is_a_deprecated_name_of_clips(d, capsys):
    assert main(["eval", "motion", "--data", str(d), "--limit", "-1"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "cospeech: warning: --limit is deprecated, use --clips",
        "cospeech: error: --clips must be >= 0, got -1",
    ]
    parser = build_parser()
    assert parser.parse_args(["eval", "motion", "--data", "x", "--limit", "3"]).clips == 3
    assert parser.parse_args(["eval", "motion", "--data", "x"]).clips == 0
    with pytest.raises(SystemExit):
        main(["eval", "motion", "--help"])
    assert "--limit" not in capsys.readouterr().out  # hidden


# --- eval on data that does not fit ---------------------------------------------------------


def test_eval_teacher_on_another_frame_size_names_the_corpus_to_make(corpus, capsys):
    """The demo teacher renders 128 px; the tiny corpus is 64 px (the issue: 256 px)."""
    line = expect_error(capsys, ["eval", "teacher", "--data", str(corpus), "--frames", "9"])
    assert "frames are 64x64, this model renders 128x128" in line
    assert "cospeech data synth --size 128" in line


def test_check_frame_size_names_the_first_clip_that_does_not_fit(corpus):
    from dataclasses import replace

    from cospeech.data.dataset import read_clips
    from cospeech.eval.teacher import check_frame_size

    clips = read_clips(corpus, None)
    check_frame_size(clips, 64)  # all fit: no error
    big = [clips[0], replace(clips[1], width=256, height=256)]
    with pytest.raises(InputError, match=rf"clip {clips[1].clip_id}: frames are 256x256.*"
                       r"data synth --size 64, or data prepare --size 64"):  # fmt: skip
        check_frame_size(big, 64)


@pytest.fixture(scope="module")
def silent_corpus(corpus, tmp_path_factory) -> Path:
    """The tiny corpus with its test clip prepared from a video without sound."""
    root = tmp_path_factory.mktemp("no-audio") / "corpus"
    shutil.copytree(corpus, root)
    folder, _, _ = clip_with_split(root, "test")
    (folder / "audio.wav").unlink()
    meta = json.loads((folder / "meta.json").read_text())
    meta["audio"] = False
    (folder / "meta.json").write_text(json.dumps(meta))
    return root


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "motion", "--data", "{d}", "--clips", "1"],
        ["bench", "motion", "--data", "{d}", "--agreement-clips", "0", "--stream-s", "1"],
    ],
)
def test_a_clip_without_audio_says_so(argv, silent_corpus, tmp_path, capsys):
    line = expect_error(capsys, _fill(argv, silent_corpus, tmp_path), "has no audio")
    assert "clip" in line and "no such file" not in line


def test_load_split_says_which_clip_has_no_audio(silent_corpus):
    from cospeech.motion.dataset import load_split

    folder, _, _ = clip_with_split(silent_corpus, "test")
    with pytest.raises(InputError, match=f"{folder}.*has no audio"):
        load_split(silent_corpus, "test")
    assert load_split(silent_corpus, "train")  # the other clips still load


# --- strict JSON ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"r": float("nan")}, {"r": None}),
        ({"a": [1.0, float("inf"), -math.inf]}, {"a": [1.0, None, None]}),
        ({"t": (np.float64("nan"), 2)}, {"t": [None, 2]}),
        ({"deep": {"x": [{"y": float("nan")}]}, "ok": 0.5, "s": "NaN"},
         {"deep": {"x": [{"y": None}]}, "ok": 0.5, "s": "NaN"}),
    ],
)  # fmt: skip
def test_write_json_is_strict(data, expected, tmp_path):
    write_json(tmp_path / "x.json", data)
    text = (tmp_path / "x.json").read_text()
    assert "NaN" not in text.replace('"NaN"', "") and "Infinity" not in text
    assert strict_loads(text) == expected


def test_a_nan_training_loss_is_logged_as_null(tmp_path):
    from cospeech.train.logging import MetricsLog

    log = MetricsLog(tmp_path, tensorboard=False)
    log.scalars(3, {"loss": float("nan"), "lr": 1e-4})
    log.close()
    line = (tmp_path / "metrics.jsonl").read_text().splitlines()[0]
    assert strict_loads(line) == {"step": 3, "loss": None, "lr": 1e-4}


def test_eval_motion_json_is_strict(corpus, tmp_path, capsys):
    out = tmp_path / "scores.json"
    assert main(["eval", "motion", "--data", str(corpus), "--clips", "1", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    scores = strict_loads(out.read_text())
    # a still mouth has no correlation: the table says nan, the JSON null
    assert scores["mean pose"]["mouth_correlation"] is None
    assert "| mean pose |" in table and "nan" in table.split("| mean pose |")[1].splitlines()[0]
    finite = scores["learned (offline)"]
    assert all(isinstance(v, float) and math.isfinite(v) for v in finite.values())


# --- help and plurals --------------------------------------------------------------------------


def test_top_level_help_is_clean_text(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "``" not in out and ":mod:" not in out and "thin front" not in out
    assert "Every command has its own --help" in out and "--progress" in out


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


EVAL_BENCH = [("eval", "motion"), ("eval", "teacher"), ("eval", "vae"),
              ("bench", "attention"), ("bench", "model"), ("bench", "motion")]  # fmt: skip


@pytest.mark.parametrize("group, name", EVAL_BENCH)
def test_help_shows_every_default(group, name):
    parser = _subparsers(_subparsers(build_parser())[group])[name]
    text = " ".join(parser.format_help().split())
    shown = 0
    for action in parser._actions:
        default = action.default
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        if default in (None, False, [], argparse.SUPPRESS):
            continue
        value = " ".join(map(str, default)) if isinstance(default, list) else str(default)
        assert f"(default: {value})" in text or "default" in action.help, (action.dest, text)
        shown += 1
    assert shown >= 2


def test_mean_over_one_clip_is_singular(corpus, tmp_path_factory, capsys):
    models = tiny_models(tmp_path_factory.getbasetemp())
    argv = ["eval", "vae", "--data", str(corpus), "--split", "train", "--clips", "1"]
    assert main([*argv, "--frames", "9", "--model", str(models / "vae")]) == 0
    out = capsys.readouterr().out
    assert "mean over 1 clip:" in out and "1 clips" not in out
