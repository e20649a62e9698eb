"""How runs of ``train``, ``data synth`` and ``data prepare`` end (issue 17, items 4, 6-10,
12, 13): a resume with other settings names them, a run that fails early leaves no folder,
the end says where the weights are, folders follow the umask, an interrupted or failed
``data prepare`` ends resumable, a corpus cannot shrink, ranges name their flag, and every
default shows in ``--help``."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cospeech.audio.espeak import espeak_available
from cospeech.cli import build_parser, main
from cospeech.data import prepare as prepare_module
from cospeech.data.manifest import clip_duration, read_manifest, read_meta
from cospeech.data.prepare import PREPARE_PRESETS
from cospeech.media.video import iter_frames, write_video
from cospeech.train.checkpoint import list_checkpoints, save_checkpoint
from cospeech.train.loop import Trainer
from cospeech.train.run import RunReport
from media_fixture import carphone
from pipeline_fixture import ENV, tiny_corpus
from test_cli_errors import expect_error
from train_fixture import RegressionStage, make_config

needs_espeak = pytest.mark.skipif(not espeak_available(), reason="libespeak-ng not installed")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """4 clips at 64x64, 2 of them in the training split."""
    return tiny_corpus(tmp_path_factory.getbasetemp())


def _motion(corpus: Path, out: Path, *sets: str) -> list[str]:
    base = ["stage.preset=tiny", "stage.window_frames=40", "train.steps=2",
            "train.batch_size=2", "train.checkpoint_every=1", "train.log_every=1"]  # fmt: skip
    return ["train", "motion", "--data", str(corpus), "--out", str(out), "--device", "cpu",
            *[a for s in [*base, *sets] for a in ("--set", s)]]  # fmt: skip


# --- item 4: resuming a run folder with other settings ----------------------------------

RESUME_CASES = {
    # other model size: the weights do not fit
    "preset": (["stage.preset=demo"], "stage.preset: 'tiny' -> 'demo'"),
    # other trainable parts: the optimizer state does not fit
    "train-only": (["stage.train_only=[flow]"], "stage.train_only: [] -> ['flow']"),
}


@needs_espeak
@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_with_other_settings_names_them(case, corpus, tmp_path, capsys, single_thread):
    out = tmp_path / "run"
    assert main(_motion(corpus, out)) == 0
    saved = {
        p: p.read_bytes() for p in out.rglob("*") if p.is_file() and "tensorboard" not in p.parts
    }
    capsys.readouterr()
    sets, change = RESUME_CASES[case]
    line = expect_error(capsys, _motion(corpus, out, *sets), str(out), "other settings", change)
    assert "train.steps" not in line  # only what differs is named
    for path, data in saved.items():  # the run folder is untouched
        assert path.read_bytes() == data, path


# --- item 7: early failures leave nothing; the end says where the weights are ------------


@needs_espeak
def test_too_few_samples_leaves_no_run_folder(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    expect_error(capsys, _motion(corpus, out, "train.batch_size=3"), "too few for batch size 3",
                 absent=(out,))  # fmt: skip


class _FailsAt(RegressionStage):
    """The regression stage whose loss raises at update ``step``."""

    def __init__(self, step: int) -> None:
        super().__init__(noise=False)
        self.fail_step = step

    def loss(self, model, batch, step):
        if step == self.fail_step:
            raise KeyboardInterrupt
        return super().loss(model, batch, step)


@pytest.mark.parametrize(
    ("fail_step", "kept"), [(2, False), (7, True)]
)  # checkpoints every 5 updates: before the first one nothing is resumable
def test_a_run_stopped_before_its_first_checkpoint_leaves_no_folder(fail_step, kept, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        Trainer(_FailsAt(fail_step), make_config(10), out, device="cpu").run()
    assert out.exists() == kept
    if kept:
        assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step-00000005"]
        Trainer(RegressionStage(noise=False), make_config(10), out, device="cpu").run()
        assert (out / "final" / "model.safetensors").is_file()


def test_a_run_folder_that_is_a_file_is_refused(tmp_path):
    out = tmp_path / "run"
    out.write_text("x")
    with pytest.raises(Exception, match="is a file"):
        Trainer(RegressionStage(noise=False), make_config(2), out, device="cpu").run()


@needs_espeak
def test_train_says_where_the_weights_are(corpus, tmp_path, capsys, single_thread):
    out = tmp_path / "run"
    assert main(_motion(corpus, out, "train.steps=1")) == 0
    assert capsys.readouterr().out.strip() == (
        f"train motion: 1 step done, 1 in all; weights in {out}/final and {out}/final-ema"
    )
    assert main(_motion(corpus, out, "train.steps=1")) == 0  # a re-run of a finished run
    said = capsys.readouterr().out.strip()
    assert said.startswith(f"train motion: {out} was already trained to step 1; weights in")
    assert main(_motion(corpus, out, "train.steps=3", "train.ema_decay=0")) == 0
    assert capsys.readouterr().out.strip() == (
        f"train motion: 2 steps done (resumed at step 1), 3 in all; weights in {out}/final"
    )


@pytest.mark.parametrize(
    ("resumed", "steps", "text"),
    [(0, 1, "1 step done, 1 in all"), (0, 2, "2 steps done, 2 in all"),
     (4, 5, "1 step done (resumed at step 4), 5 in all"), (0, 0, "already trained to step 0"),
     (5, 5, "already trained to step 5")],
)  # fmt: skip
def test_run_report_counts_steps(resumed, steps, text):
    report = RunReport("vae", Path("r"), resumed, steps, [Path("r/final")], True)
    assert text in report.summary() and report.summary().endswith(
        "weights in r/final" + (" (raise train.steps to train on)" if resumed == steps else "")
    )


# --- items 6/13 and 12: option ranges name the option ------------------------------------

TRAIN_CASES = {
    "batch-size": (["--set", "train.batch_size=0"], ["train.batch_size must be", "got 0"]),
    "steps": (["--set", "train.steps=-1"], ["train.steps must be", ">= 0"]),
    "lr": (["--set", "train.optim.lr=0"], ["train.optim.lr must be > 0"]),
    "lr-nan": (["--set", "train.optim.lr=.nan"], ["train.optim.lr must be > 0", "nan"]),
    "betas": (["--set", "train.optim.betas=[0.9,1.0]"], ["train.optim.betas must be in [0, 1)"]),
    "ema": (["--set", "train.ema_decay=1"], ["train.ema_decay must be in [0, 1)"]),
    "precision": (["--set", "train.mixed_precision=fp16"], ["train.mixed_precision", "'fp16'"]),
    "decay-start-constant": (["--set", "train.optim.decay_start=5"],
                             ["decay_start does nothing with decay: constant"]),
    "lora-alpha-off": (["--set", "train.lora.alpha=4"], ["lora.alpha", "do nothing"]),
    "ema-start-off": (["--set", "train.ema_decay=0", "--set", "train.ema_start=3"],
                      ["train.ema_start does nothing"]),
    "window": (["--set", "stage.window_frames=0"], ["stage.window_frames must be", "got 0"]),
    "probability": (["--set", "stage.chunk_probability=2"], ["stage.chunk_probability", "[0, 1]"]),
    "chunk-pair": (["--set", "stage.chunk_frames=[3]"], ["stage.chunk_frames must be [low, high]"]),
    "rollout-off": (["--set", "stage.rollout_blend_frames=3"],
                    ["stage.rollout_blend_frames does nothing", "rollout_probability 0"]),
}  # fmt: skip

STAGE_CASES = {
    "vae-crop": ("vae", ["--set", "stage.crop=12"], ["stage.crop must be 0", "got 12"]),
    "vae-mouth-without-crop": ("vae", ["--set", "stage.mouth_crops=0.5", "--set", "stage.crop=0"],
                               ["stage.mouth_crops does nothing"]),
    "vae-frames": ("vae", ["--set", "stage.frames=8"], ["stage.frames must be 1 + 4k, got 8"]),
    "teacher-frames": ("teacher", ["--set", "stage.frames=6"], ["stage.frames must be 1 + 4k"]),
    "teacher-dropout": ("teacher", ["--set", "stage.cond_dropout=1"],
                        ["stage.cond_dropout must be in [0, 1)"]),
    "teacher-shift": ("teacher", ["--set", "stage.shift=0"], ["stage.shift must be > 0"]),
    # item 12: the README's command without a VAE says how to set one and where one is
    "teacher-no-vae": ("teacher", ["--data", "corpus/"],
                       ["'vae' is not a VAE folder", "--vae DIR", "--set stage.vae=DIR",
                        "cospeech/assets/vae"]),
    "teacher-vae-flag": ("teacher", ["--vae", "{tmp}/none"], ["none' is not a VAE folder"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_train_options_out_of_range(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv, names = TRAIN_CASES[case]
    out = tmp_path / "run"
    expect_error(capsys, ["train", "motion", "--out", str(out), *argv], *names, absent=(out,))


@pytest.mark.parametrize("case", list(STAGE_CASES))
def test_stage_options_out_of_range(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stage, argv, names = STAGE_CASES[case]
    out = tmp_path / "run"
    argv = [a.format(tmp=tmp_path) for a in argv]
    expect_error(capsys, ["train", stage, "--out", str(out), *argv], *names, absent=(out,))
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no latents/ or run folder


# --- item 8: the umask holds for temporary-then-renamed folders --------------------------


def _modes(root: Path) -> set[tuple[str, int]]:
    return {("dir" if p.is_dir() else "file", p.stat().st_mode & 0o777) for p in root.rglob("*")}


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_checkpoints_follow_the_umask(umask, tmp_path):
    previous = os.umask(umask)
    try:
        save_checkpoint(tmp_path / "ck", 3, {"w": torch.ones(2)}, {"w": torch.ones(2)}, {})
    finally:
        os.umask(previous)
    assert _modes(tmp_path / "ck") == {("dir", 0o777 & ~umask), ("file", 0o666 & ~umask)}


@needs_espeak
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_corpus_folders_follow_the_umask(umask, tmp_path):
    out = tmp_path / "c"
    done = subprocess.run(
        [sys.executable, "-m", "cospeech.cli", "data", "synth", "--out", str(out), "--clips",
         "1", "--identities", "1", "--size", "32"],
        env=ENV, capture_output=True, text=True, timeout=300, umask=umask, check=True,
    )  # fmt: skip
    assert done.stdout.startswith("1 clip (")  # not "1 clips"
    assert _modes(out) == {("dir", 0o777 & ~umask), ("file", 0o666 & ~umask)}


# --- item 10: data synth ------------------------------------------------------------------


@needs_espeak
def test_contact_sheet_shows_each_clip_once(tmp_path):
    from cospeech.data.synth.contact_sheet import contact_sheet
    from cospeech.data.synth.corpus import CorpusConfig, write_corpus

    root = tmp_path / "c"
    write_corpus(root, CorpusConfig(clips=2, seed=1, size=32, identities=2, max_duration_s=4.0))
    sheet = contact_sheet(root)
    assert sheet.shape[0] == 2 * 2 * 32  # 2 clips, a plain and a keypoint row each
    first, second = sheet[:32, :32], sheet[64:96, :32]  # the first frame of each clip's row
    # uint8 pixels of two different clips: an inequality, which no CPU's rounding can undo
    assert not np.array_equal(first, second)
    # the second block is clip000001's video (its frame under the label drawn at the top)
    entry = {e.id: e for e in read_manifest(root)}["clip000001"]
    video = np.stack(list(iter_frames(root / entry.path / "video.mp4")))
    below_label = second[20:]
    assert min(np.abs(f[20:32, :32].astype(int) - below_label).mean() for f in video) < 1.0


@needs_espeak
def test_synth_refuses_to_shrink_a_corpus(tmp_path, capsys):
    out = tmp_path / "c"
    small = ["data", "synth", "--out", str(out), "--size", "32", "--identities", "1"]
    assert main([*small, "--clips", "2"]) == 0
    capsys.readouterr()
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    expect_error(capsys, [*small, "--clips", "1"], "holds 2 finished clips (clip000001 the last)",
                 "would leave 1 clip out", "use --clips 2 or more")  # fmt: skip
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # a finished clip beyond a gap (clip000003 without clip000002) still counts
    shutil.copytree(out / "clips" / "clip000001", out / "clips" / "clip000003")
    expect_error(capsys, [*small, "--clips", "2"], "holds 3 finished clips (clip000003 the last)",
                 "would leave 1 clip out", "use --clips 4 or more")  # fmt: skip
    shutil.rmtree(out / "clips" / "clip000003")
    assert main([*small, "--clips", "2"]) == 0  # the same count is a plain rerun
    assert len(read_manifest(out)) == 2


@pytest.mark.parametrize(
    ("frames", "fps", "seconds"),
    [(120, 29.97, 4.004004), (100, 30.0, 3.333333), (82, 25.0, 3.28), (1, 60.0, 0.016667)],
)
def test_durations_are_rounded_to_the_microsecond(frames, fps, seconds):
    duration = clip_duration(frames, fps)
    assert duration == seconds and json.dumps(duration) == repr(seconds)
    assert abs(duration - frames / fps) <= 5e-7


DATA_CASES = {
    "synth-seed": (["data", "synth", "--out", "{out}", "--seed", "-1"], ["--seed must be >= 0"]),
    "synth-identities": (["data", "synth", "--out", "{out}", "--clips", "2", "--identities", "3"],
                         ["--identities 3 is more than --clips 2", "1 speaker would"]),
    "synth-sheet-unwritable": (["data", "synth", "--out", "{out}", "--clips", "1",
                                "--contact-sheet", "/proc/sheet.png"], ["/proc/sheet.png"]),
    "prepare-model-without-onnx": (["data", "prepare", "{src}", "--out", "{out}", "--pose-model",
                                    "m.onnx"], ["--pose-model does nothing with --backend"]),
    "prepare-onnx-without-model": (["data", "prepare", "{src}", "--out", "{out}", "--backend",
                                    "onnx"], ["--backend onnx needs --pose-model"]),
    "prepare-face-only-body": (["data", "prepare", "{src}", "--out", "{out}", "--filter",
                                "face-only", "--upper-body-confidence", "0.5"],
                               ["--upper-body-confidence does nothing with --filter face-only"]),
    "prepare-margin-inf": (["data", "prepare", "{src}", "--out", "{out}", "--margin", "inf"],
                           ["--margin must be >= 0, got inf"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_data_options_name_their_flag(case, tmp_path, capsys):
    argv, names = DATA_CASES[case]
    out = tmp_path / "out"
    argv = [a.format(out=out, src=carphone()) for a in argv]
    expect_error(capsys, argv, *names, absent=(out,))


# --- items 9 and 10: data prepare ends resumable; frames of failed sources count ----------

SOURCE_FRAMES = 12
FACE_ONLY = ["--filter", "face-only", "--size", "32", "--min-frames", "6", "--quiet"]


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    """a_take.mp4 and b_take.mp4 (12 carphone frames each, at 29.97 fps) and a text file
    named c_bad.mp4."""
    folder = tmp_path_factory.mktemp("prepare-sources")
    frames = [f for _, f in zip(range(2 * SOURCE_FRAMES), iter_frames(carphone()), strict=False)]
    write_video(folder / "a_take.mp4", np.stack(frames[:SOURCE_FRAMES]), 29.97)
    write_video(folder / "b_take.mp4", np.stack(frames[SOURCE_FRAMES:]), 29.97)
    (folder / "c_bad.mp4").write_text("not a video\n")
    return folder


@pytest.mark.parametrize(("stop_at", "left"), [("b_take", ["a_take-000000"]), ("a_take", None)])
def test_ctrl_c_ends_like_a_failed_run_and_resumes(stop_at, left, sources, tmp_path, capsys,
                                                   monkeypatch):  # fmt: skip
    out = tmp_path / "d"
    prepare = prepare_module.prepare_source

    def interrupted(path, *args, **kwargs):
        if path.stem == stop_at:
            raise KeyboardInterrupt
        return prepare(path, *args, **kwargs)

    monkeypatch.setattr(prepare_module, "prepare_source", interrupted)
    assert main(["data", "prepare", str(sources), "--out", str(out), *FACE_ONLY]) == 130
    if left is None:  # nothing finished: removed, as a run whose every source failed
        assert not out.exists()
    else:  # the finished clips, their source marked done and a manifest listing them
        assert [e.id for e in read_manifest(out)] == left
        assert sorted(p.name for p in (out / ".done").iterdir()) == ["a_take.json"]
        assert not (out / ".tmp").exists()
    monkeypatch.setattr(prepare_module, "prepare_source", prepare)
    capsys.readouterr()
    assert main(["data", "prepare", str(sources), "--out", str(out), *FACE_ONLY]) == 0
    printed = capsys.readouterr().out
    done = 0 if left is None else 1
    assert f"{2 - done} processed, {done} already done, 1 failed" in printed
    assert [e.id for e in read_manifest(out)] == ["a_take-000000", "b_take-000000"]


def test_summary_counts_frames_of_failed_sources_and_rounds_durations(sources, tmp_path, capsys):
    out = tmp_path / "d"
    # a_take's 12 frames are decoded, but no run reaches 13 frames: it fails, and counts
    argv = ["data", "prepare", str(sources / "a_take.mp4"), "--out", str(out), *FACE_ONLY]
    assert main([*argv, "--min-frames", "13"]) == 2
    captured = capsys.readouterr()
    assert "frames kept: 0 of 12 (0.0%); 12 of them in 1 failed source" in captured.out
    assert "no clip" in captured.err and not out.exists()
    # c_bad.mp4 cannot be decoded: its frames are unknown, and the summary says so
    assert main(["data", "prepare", str(sources), "--out", str(out), *FACE_ONLY]) == 0
    printed = capsys.readouterr().out
    assert "frames kept: 24 of 24 (100.0%); 1 failed source not decoded, not counted" in printed
    meta = read_meta(out / "a_take-000000")
    assert meta["duration"] == round(SOURCE_FRAMES / meta["fps"], 6)
    assert len(repr(meta["duration"]).split(".")[1]) <= 6  # 0.4004, not 0.40040000000000003


# --- items 6/13: every option's default shows in --help -----------------------------------


def _subparser(*names: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in names:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


@pytest.mark.parametrize(
    "command", [("train", "motion"), ("train", "teacher"), ("train", "vae"), ("data", "synth"),
                ("data", "prepare")],
)  # fmt: skip
def test_help_shows_every_default(command):
    parser = _subparser(*command)
    formatter = parser._get_formatter()
    for action in parser._actions:
        if action.required or not action.option_strings or action.nargs == 0:
            continue  # --help, --out, flags that are off unless given
        assert "default" in formatter._get_help_string(action), action.option_strings


def test_help_defaults_agree_with_the_code():
    from cospeech.commands.data_prepare import DEFAULTS
    from cospeech.commands.train import DATA_DEFAULTS
    from cospeech.train.stages import load_stage_module

    paper, face = PREPARE_PRESETS["paper"], PREPARE_PRESETS["face-only"]
    shown = {
        "face_confidence": f"{paper.filter.face_confidence:g}",
        "upper_body_confidence": f"{paper.filter.upper_body_confidence:g}; --filter paper only",
        "upper_body_visibility": f"{paper.filter.upper_body_visibility:g}; --filter paper only",
        "min_frames": str(paper.min_frames), "max_frames": str(paper.max_frames),
        "size": str(paper.size), "backend": paper.backend,
        "test_fraction": f"{paper.test_fraction:g}",
        "margin": f"{paper.box_margin:g} with --filter paper, {face.box_margin:g} with face-only",
    }  # fmt: skip
    assert face.filter.face_confidence == paper.filter.face_confidence
    assert not face.filter.use_upper_body and paper.pose_model is None
    assert {k: v for k, v in DEFAULTS.items() if k != "pose_model"} == shown
    for stage, text in DATA_DEFAULTS.items():
        data = load_stage_module(stage).Config().data
        assert text == (f"./{data}" if data else "none, it must be set")
