"""Caps, ranges and wording of ``generate``, ``motion`` and ``pose`` (issue 17 items 1, 2, 3,
6 and 13; issue 12's timing figures).

Every error case checks the whole contract with ``expect_error`` (docs/cli.md): exit 2, one
line ``cospeech: error: ...`` naming the flag and the allowed values, no output left.
"""

from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cospeech.cli import build_parser, main
from cospeech.errors import InputError, check_range, count
from cospeech.pipeline.bundle import SamplingSettings
from cospeech.pipeline.generate import GenerateResult, check_size
from cospeech.pose.sequence import PoseSequence
from pipeline_fixture import silent_wav, tiny_models
from test_cli_errors import expect_error

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TINY_SIZE = 64  # the tiny teacher's sampling.json size (pipeline_fixture)


def _pose_file(path: Path, width: int, height: int, frames: int = 1) -> Path:
    """A pose of ``frames`` frames for a ``width x height`` frame, shoulders visible."""
    keypoints = np.zeros((frames, 133, 3), np.float32)
    keypoints[:, :, :2] = (width / 2, height / 2)
    keypoints[:, 5] = (0.6 * width, 0.5 * height, 1.0)  # left shoulder
    keypoints[:, 6] = (0.4 * width, 0.5 * height, 1.0)  # right shoulder
    PoseSequence(keypoints, 25.0, width, height).save(path)
    return path


@pytest.fixture(scope="module")
def f(tmp_path_factory) -> dict[str, Path]:
    """Inputs: tiny models (trained size 64), short silent speech, photos and poses."""
    base = tmp_path_factory.getbasetemp()
    d = tmp_path_factory.mktemp("generate-inputs")
    Image.fromarray(np.full((512, 512, 3), 90, np.uint8)).save(d / "photo512.png")
    return {
        "models": tiny_models(base),
        "speech": silent_wav(d / "speech.wav", 0.32),  # 8 frames: 3 latent frames, 1 window
        "blip": silent_wav(d / "blip.wav", 0.04),  # one frame at 25 fps
        "photo512": d / "photo512.png",
        "pose176": _pose_file(d / "pose176x144.npz", 176, 144),  # from another video
        "pose256": _pose_file(d / "pose256.npz", 256, 256),  # the photo at half scale
        "pose10": _pose_file(d / "pose10.npz", 64, 48, frames=10),
        "pose1": _pose_file(d / "pose1.npz", 64, 48),
        "wide": _pose_file(d / "wide.npz", 16384, 1),
    }


def _fill(argv: list[str], f: dict[str, Path], out: Path) -> list[str]:
    paths = {name: str(path) for name, path in f.items()}
    return [item.format(out=out, ex=EXAMPLES, **paths) for item in argv]


GENERATE = ["generate", "--audio", "{speech}", "--image", "{ex}/reference.png",
            "--reference-pose", "{ex}/reference_pose.npz", "--model", "{models}",
            "-o", "{out}/o.mp4"]  # fmt: skip

GENERATE_CASES = {
    # item 2: sizes the model cannot serve are refused, naming the sizes it can
    "size-4096": (["--size", "4096"],
                  ["--size 4096", "trained at 64x64", "sizes 16-64 in steps of 16"]),
    "size-above-training": (["--size", "80"], ["--size 80", "sizes 16-64"]),
    "size-not-multiple": (["--size", "40"], ["--size 40", "steps of 16"]),
    "size-zero": (["--size", "0"], ["--size 0"]),
    # item 6: every range
    "guidance-negative": (["--guidance", "-1"], ["--guidance must be >= 1, got -1"]),
    "guidance-below-one": (["--guidance", "0.5"], ["--guidance must be >= 1, got 0.5"]),
    "guidance-nan": (["--guidance", "nan"], ["--guidance must be >= 1, got nan"]),
    "guidance-inf": (["--guidance", "inf"], ["--guidance must be >= 1, got inf"]),
    "steps-zero": (["--steps", "0"], ["--steps must be in [1, 1000], got 0"]),
    "steps-huge": (["--steps", "100000"], ["--steps must be in [1, 1000], got 100000"]),
    "seed-negative": (["--seed", "-1"], ["--seed must be in [0, 4294967295], got -1"]),
    "seed-huge": (["--seed", str(2**32)], ["--seed must be in [0, 4294967295]"]),
    "fps-zero": (["--fps", "0"], ["--fps must be in [1, 120], got 0"]),
    "fps-huge": (["--fps", "1e6"], ["--fps must be in [1, 120], got 1e+06"]),
    "fps-nan": (["--fps", "nan"], ["--fps must be in [1, 120], got nan"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(GENERATE_CASES))
def test_generate_ranges_name_the_flag(case, f, tmp_path, capsys, monkeypatch):
    import cospeech.pipeline.generate as pipeline

    def no_weights(*_args, **_kwargs):
        raise AssertionError("weights loaded before the options were checked")

    monkeypatch.setattr(pipeline, "load_bundle", no_weights)
    extra, names = GENERATE_CASES[case]
    expect_error(capsys, _fill(GENERATE, f, tmp_path) + extra, *names, absent=(tmp_path / "o.mp4",))


@pytest.mark.parametrize(
    "photo, pose, names",
    [
        ("photo512", "pose176", ["pose176x144.npz", "176x144 frame", "photo512.png", "512x512"]),
        ("photo512", "pose256", ["pose256.npz", "256x256 frame", "512x512"]),  # half scale
    ],
)
def test_reference_pose_of_another_frame_size_is_refused(photo, pose, names, f, tmp_path, capsys):
    argv = _fill(GENERATE, f, tmp_path)
    argv[argv.index("--image") + 1] = str(f[photo])
    argv[argv.index("--reference-pose") + 1] = str(f[pose])
    line = expect_error(capsys, argv, *names, absent=(tmp_path / "o.mp4",))
    assert "cospeech pose extract" in line  # says how to get a pose that fits


def test_size_cap_follows_the_models_training_size():
    for trained in (64, 128, 480):
        largest = trained - trained % 16
        check_size(largest, trained)
        check_size(16, trained)
        with pytest.raises(InputError, match=f"trained at {trained}x{trained}"):
            check_size(largest + 16, trained)


def _models_trained_at(size: int, f, tmp_path: Path) -> Path:
    folder = tmp_path / f"models-{size}"
    shutil.copytree(f["models"], folder)
    settings = SamplingSettings.load(folder / "teacher")
    SamplingSettings(**{**vars(settings), "size": size}).save(folder / "teacher")
    return folder


def test_a_model_trained_larger_serves_larger_sizes_with_plural_wording(f, tmp_path, capsys):
    """The cap is the model's, not a constant: a copy of the tiny teacher whose sampling.json
    says 96 serves --size 80 (refused above for the 64-pixel one). One step, one window:
    the summary says "1 step x 1 window", and its compute and end-to-end figures agree with
    the phases it reports."""
    argv = _fill(GENERATE, f, tmp_path)
    argv[argv.index("--model") + 1] = str(_models_trained_at(96, f, tmp_path))
    assert main([*argv, "--size", "80", "--steps", "1", "--rule-motion"]) == 0
    summary = capsys.readouterr().out
    assert "8 frames" in summary, summary
    assert "at 160x160 (photo layer over the model's 80x80)" in summary, summary
    assert "1 step x 1 window," in summary, summary
    assert "compute" in summary and "end to end" in summary, summary


def test_compute_and_end_to_end_figures():
    result = GenerateResult(
        Path("o.mp4"), frames=50, fps=25.0, size=64, steps=1, windows=2, motion="rules",
        seconds=10.0, phases={"prepare": 3.0, "sampling": 4.0, "decode": 1.0, "write": 2.0},
    )  # fmt: skip
    assert result.compute_seconds == 5.0 and result.compute_fps == 10.0  # 50 / (4 + 1)
    assert result.end_to_end_fps == 5.0  # 50 / 10
    summary = result.summary()
    assert "50 frames (2.00 s)" in summary and "1 step x 2 windows" in summary
    assert "compute 5.0 s = 10.00 FPS (sampling 4.0 s + VAE decode 1.0 s)" in summary
    assert "end to end 10.0 s = 5.00 FPS, 5.0 s per second of video" in summary
    assert "(prepare 3.0 s, write 2.0 s)" in summary


def test_run_phases_add_up_to_the_end_to_end_time(f, tmp_path, monkeypatch):
    import cospeech.pipeline.generate as pipeline

    seen = []
    real = pipeline.generate

    def spy(*args, **kwargs):
        seen.append(real(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(pipeline, "generate", spy)
    assert main([*_fill(GENERATE, f, tmp_path), "--rule-motion"]) == 0
    (result,) = seen
    assert set(result.phases) == {"prepare", "sampling", "decode", "photo", "write"}
    assert all(value >= 0 for value in result.phases.values()), result.phases
    assert math.isclose(sum(result.phases.values()), result.seconds, rel_tol=1e-9)
    assert result.compute_fps > result.end_to_end_fps  # loading and writing left out


# --- motion ---------------------------------------------------------------------------------

MOTION = ["motion", "--audio", "{ex}/speech.wav", "--reference-pose", "{ex}/reference_pose.npz",
          "-o", "{out}/p.npz"]  # fmt: skip

MOTION_CASES = {
    # item 6: an option that does nothing in the chosen mode is refused
    "chunk-offline": (["--chunk-frames", "5"], ["--chunk-frames is used with --streaming only"]),
    "chunk-offline-default-value": (["--chunk-frames", "10"], ["--streaming only"]),
    "chunk-zero": (["--streaming", "--chunk-frames", "0"],
                   ["--chunk-frames must be in [1, 200], got 0"]),
    "chunk-huge": (["--streaming", "--chunk-frames", "100000"],
                   ["--chunk-frames must be in [1, 200], got 100000"]),
    "threads-zero": (["--threads", "0"], ["--threads must be in [1, "]),
    "threads-huge": (["--threads", "100000"], ["--threads must be in [1, ", "got 100000"]),
    "fps-zero": (["--fps", "0"], ["--fps must be in [1, 120], got 0"]),
    "fps-negative": (["--fps", "-5"], ["--fps must be in [1, 120], got -5"]),
    "seed-negative": (["--seed", "-3"], ["--seed must be in [0, 4294967295], got -3"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(MOTION_CASES))
def test_motion_ranges_name_the_flag(case, f, tmp_path, capsys):
    extra, names = MOTION_CASES[case]
    line = expect_error(capsys, _fill(MOTION, f, tmp_path) + extra, *names)
    assert "chunk_frames" not in line  # the flag, not the parameter
    assert list(tmp_path.iterdir()) == []


def test_motion_one_frame_is_one_frame(f, tmp_path, capsys):
    argv = _fill(MOTION, f, tmp_path)
    argv[argv.index("--audio") + 1] = str(f["blip"])
    assert main([*argv, "--streaming", "--chunk-frames", "1"]) == 0
    assert ": 1 frame at 25 fps" in capsys.readouterr().out
    assert len(PoseSequence.load(tmp_path / "p.npz")) == 1


# --- pose draw ------------------------------------------------------------------------------

DRAW_CASES = {
    # item 1: the sheet is sized before anything is drawn
    "sheet-width-100000": (["{pose10}", "-o", "{out}/s.png", "--sheet-width", "100000"],
                           ["contact sheet would be 400000x225000 pixels",
                            "Pillow's limit of 89.5 megapixels", "--sheet-width (100000)"]),
    "sheet-frames-columns": (["{pose10}", "-o", "{out}/s.png", "--sheet-width", "4000",
                              "--sheet-columns", "10"],
                             ["40000x3000 pixels", "--sheet-columns (10)"]),
    "jpeg-side": (["{wide}", "-o", "{out}/s.jpg", "--sheet-width", "66000"],
                  ["66000x4 pixels", "JPEG's limit of 65500 pixels a side"]),
    "sheet-frames-zero": (["{pose10}", "-o", "{out}/s.png", "--sheet-frames", "0"],
                          ["--sheet-frames must be >= 1, got 0"]),
    "sheet-width-negative": (["{pose10}", "-o", "{out}/s.jpg", "--sheet-width", "-1"],
                             ["--sheet-width must be >= 1, got -1"]),
    # item 6: sheet options do nothing for a video
    "sheet-frames-on-video": (["{pose10}", "-o", "{out}/o.mp4", "--sheet-frames", "3"],
                              ["--sheet-frames is for a contact sheet (.png/.jpg output)"]),
    "sheet-width-on-video": (["{pose10}", "-o", "{out}/o.mp4", "--sheet-width", "64"],
                             ["--sheet-width is for a contact sheet"]),
}  # fmt: skip


EXTRACT_CASES = {
    # item 6: smoothing over time does nothing to a photo
    "no-smoothing-photo": (["{photo512}", "-o", "{out}/p.npz", "--no-smoothing"],
                           ["--no-smoothing is for videos"]),
    "no-smoothing-jpeg": (["{out}/x.JPG", "-o", "{out}/p.npz", "--no-smoothing"],
                          ["a photo is one frame"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(EXTRACT_CASES))
def test_pose_extract_options_that_do_nothing(case, f, tmp_path, capsys):
    argv, names = EXTRACT_CASES[case]
    expect_error(capsys, ["pose", "extract", *_fill(argv, f, tmp_path)], *names)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", list(DRAW_CASES))
def test_pose_draw_caps(case, f, tmp_path, capsys):
    argv, names = DRAW_CASES[case]
    expect_error(capsys, ["pose", "draw", *_fill(argv, f, tmp_path)], *names)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("columns, frames, expected", [(100000, 3, (3, 1)), (2, 3, (2, 2))])
def test_sheet_columns_are_cut_to_the_frames(columns, frames, expected, f, tmp_path, capsys):
    out = tmp_path / "s.png"
    argv = ["pose", "draw", str(f["pose10"]), "-o", str(out), "--sheet-width", "32",
            "--sheet-columns", str(columns), "--sheet-frames", str(frames)]  # fmt: skip
    assert main(argv) == 0
    wide, high = expected  # thumbnails across and down; 64x48 frames -> 32x24 thumbnails
    assert Image.open(out).size == (32 * wide, 24 * high)
    assert f"{frames} of 10 frames on a contact sheet" in capsys.readouterr().out


def test_pose_draw_says_1_frame(f, tmp_path, capsys):
    assert main(["pose", "draw", str(f["pose1"]), "-o", str(tmp_path / "o.mp4")]) == 0
    assert capsys.readouterr().out.strip().endswith(": 1 frame drawn")


# --- wording helpers and help ----------------------------------------------------------------


@pytest.mark.parametrize(
    "number, noun, text",
    [(1, "step", "1 step"), (0, "clip", "0 clips"), (2, "window", "2 windows")],
)
def test_count(number, noun, text):
    assert count(number, noun) == text


@pytest.mark.parametrize(
    "value, low, high, ok",
    [(1, 1, 200, True), (200, 1, 200, True), (0, 1, 200, False), (201, 1, 200, False),
     (math.nan, 1, 200, False), (1e9, 1.0, None, True), (math.inf, 1.0, None, False),
     (math.nan, 1.0, None, False), (0.999, 1.0, None, False)],
)  # fmt: skip
def test_check_range(value, low, high, ok):
    if ok:
        check_range("--x", value, low, high)
    else:
        with pytest.raises(InputError, match=r"^--x must be "):
            check_range("--x", value, low, high)


def _subparser(parser: argparse.ArgumentParser, *names: str) -> argparse.ArgumentParser:
    for name in names:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


@pytest.mark.parametrize(
    "command", [("generate",), ("motion",), ("pose", "draw"), ("pose", "extract")]
)
def test_help_shows_every_default(command, capsys):
    """Every option a user may leave out says its default (one of a required pair, such
    as motion's --image / --reference-pose, has none)."""
    parser = _subparser(build_parser(), *command)
    paired = {a for g in parser._mutually_exclusive_groups if g.required for a in g._group_actions}
    optional = [
        action for action in parser._actions
        if action.option_strings and not action.required and action.dest != "help"
        and action not in paired
    ]  # fmt: skip
    assert optional
    for action in optional:
        assert "(default: " in (action.help or ""), action.option_strings
        if "%(default)" in action.help:
            assert action.default is not None, action.option_strings
    text = " ".join(parser.format_help().split())
    assert "(default: None)" not in text
    assert text.count("(default: ") == len(optional)
