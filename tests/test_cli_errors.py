"""Bad input to the finished commands ends in one line on stderr and exit code 2.

Every case checks the whole contract (docs/cli.md, "Errors"): exit code 2, exactly one
non-empty stderr line starting with ``cospeech: error:`` that names the problem, no
traceback, and no output (file or folder) left behind. A few cases run in a subprocess to
show that nothing else (native library logging, worker tracebacks) reaches the terminal.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from cospeech.audio.espeak import espeak_available
from cospeech.cli import main
from cospeech.errors import CheckpointError, InputError
from cospeech.media.video import probe, write_video
from cospeech.pose.sequence import PoseSequence

FRAMES, SIDE = 10, 64


class _Trap:
    """Unpickling this creates a folder: proof that a file was (wrongly) unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def _keypoints(frames: int, width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    kp = rng.random((frames, 133, 3)).astype(np.float32)
    kp[..., 0] *= width
    kp[..., 1] *= height
    return kp


def _audio_only_mp4(path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for start in range(0, 16000, 1024):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="flt", layout="mono"
            )
            frame.sample_rate, frame.pts = 16000, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


@pytest.fixture(scope="module")
def d(tmp_path_factory) -> Path:
    """A folder of bad (and a few good) inputs."""
    d = tmp_path_factory.mktemp("inputs")
    frames = np.random.default_rng(0).integers(0, 256, (FRAMES, SIDE, SIDE, 3), dtype=np.uint8)
    write_video(d / "ok.mp4", frames, 25.0)
    data = (d / "ok.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (d / "codec.mp4").write_bytes(data.replace(b"avc1", b"zzzz"))  # a codec nobody decodes
    _audio_only_mp4(d / "audio.mp4")
    for name in ("text.mp4", "text.png", "model.onnx", "afile"):
        (d / name).write_text("not what the name says\n")
    Image.fromarray(np.full((SIDE, SIDE, 3), 128, np.uint8)).save(d / "flat.png")
    (d / "folder").mkdir()
    (d / "empty").mkdir()
    (d / "junk").mkdir()
    (d / "junk" / "a.mp4").write_text("junk")
    (d / "junk" / "b.mkv").write_bytes(data[:200])

    kp = _keypoints(FRAMES, SIDE, SIDE)
    PoseSequence(kp, 25.0, SIDE, SIDE).save(d / "good.npz")
    PoseSequence(np.concatenate([kp, kp]), 25.0, SIDE, SIDE).save(d / "long.npz")
    PoseSequence(kp, 25.0, SIDE, 48).save(d / "wrong_size.npz")
    PoseSequence(kp[:2], 25.0, 63, 63).save(d / "odd.npz")
    nan = kp.copy()
    nan[3, 5, 0] = np.nan
    np.savez(d / "nan.npz", keypoints=nan, fps=25.0, width=SIDE, height=SIDE)
    np.savez(d / "shape.npz", keypoints=kp[:, :100], fps=25.0, width=SIDE, height=SIDE)
    np.savez(d / "huge.npz", keypoints=kp, fps=25.0, width=10**12, height=SIDE)
    np.savez(d / "fields.npz", keypoints=kp, fps=25.0)
    trap = np.empty(1, dtype=object)
    trap[0] = _Trap(d / "UNPICKLED")
    np.savez(d / "pickle.npz", keypoints=trap, fps=25.0, width=SIDE, height=SIDE)
    (d / "pickle_file.npz").write_bytes(pickle.dumps(_Trap(d / "UNPICKLED")))
    (d / "empty.npz").write_bytes(b"")

    (d / "list.yaml").write_text("- 1\n- 2\n")
    (d / "bad.yaml").write_text("a: [1\n")  # PyYAML's message spans several lines
    return d


def expect_error(capsys, argv: list[str], *names: str, absent: tuple[Path, ...] = ()) -> str:
    """Run the CLI in-process; check the one-line contract and return the line."""
    code = main(argv)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2, captured
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("cospeech: error: ") and "Traceback" not in captured.err
    for name in names:
        assert name in lines[0], lines[0]
    for path in absent:
        assert not path.exists(), f"{path} left behind"
    return lines[0]


def _fill(items: list[str], d: Path, out: Path) -> list[str]:
    return [item.format(d=d, out=out) for item in items]


# --- pose extract / pose draw ---------------------------------------------------------------

POSE_CASES = {
    "extract-missing": (["pose", "extract", "{d}/missing.mp4", "-o", "{out}/p.npz"],
                        ["missing.mp4", "no such file"]),
    "extract-text-as-mp4": (["pose", "extract", "{d}/text.mp4", "-o", "{out}/p.npz"],
                            ["text.mp4", "cannot be opened"]),
    "extract-text-as-png": (["pose", "extract", "{d}/text.png", "-o", "{out}/p.npz"],
                            ["text.png", "not an image"]),
    "extract-truncated": (["pose", "extract", "{d}/truncated.mp4", "-o", "{out}/p.npz"],
                          ["truncated.mp4", "truncated"]),
    "extract-audio-only": (["pose", "extract", "{d}/audio.mp4", "-o", "{out}/p.npz"],
                           ["audio.mp4", "no video stream"]),
    "extract-unknown-codec": (["pose", "extract", "{d}/codec.mp4", "-o", "{out}/p.npz"],
                              ["codec.mp4", "codec cannot be decoded"]),
    "extract-folder": (["pose", "extract", "{d}/folder", "-o", "{out}/p.npz"],
                       ["folder", "is a folder"]),
    "extract-no-person": (["pose", "extract", "{d}/flat.png", "-o", "{out}/p.npz"],
                          ["flat.png", "no person found"]),
    "extract-out-proc": (["pose", "extract", "{d}/ok.mp4", "-o", "/proc/cospeech-x.npz"],
                         ["cannot write /proc/cospeech-x.npz"]),
    "extract-out-under-file": (["pose", "extract", "{d}/ok.mp4", "-o", "{d}/afile/p.npz"],
                               ["afile is not a folder"]),
    "extract-out-suffix": (["pose", "extract", "{d}/ok.mp4", "-o", "{out}/p.txt"],
                           ["must end in .npz"]),
    "extract-onnx-text": (["pose", "extract", "{d}/ok.mp4", "-o", "{out}/p.npz", "--backend",
                           "onnx", "--pose-model", "{d}/model.onnx"],
                          ["model.onnx", "not a loadable ONNX model"]),
    "extract-onnx-missing": (["pose", "extract", "{d}/ok.mp4", "-o", "{out}/p.npz", "--backend",
                              "onnx", "--pose-model", "{d}/none.onnx"],
                             ["none.onnx", "no such file"]),
    "extract-onnx-no-model": (["pose", "extract", "{d}/ok.mp4", "-o", "{out}/p.npz",
                               "--backend", "onnx"], ["--pose-model"]),
    "extract-model-without-onnx": (["pose", "extract", "{d}/ok.mp4", "-o", "{out}/p.npz",
                                    "--pose-model", "{d}/model.onnx"], ["--backend onnx"]),
    "draw-nan": (["pose", "draw", "{d}/nan.npz", "-o", "{out}/o.mp4"], ["nan.npz", "NaN"]),
    "draw-shape": (["pose", "draw", "{d}/shape.npz", "-o", "{out}/o.mp4"],
                   ["shape.npz", "expected keypoints [T, 133, 3], got [10, 100, 3]"]),
    "draw-missing-fields": (["pose", "draw", "{d}/fields.npz", "-o", "{out}/o.mp4"],
                            ["fields.npz", "missing field(s)"]),
    "draw-huge-size": (["pose", "draw", "{d}/huge.npz", "-o", "{out}/o.mp4"],
                       ["huge.npz", "frame size"]),
    "draw-pickle-array": (["pose", "draw", "{d}/pickle.npz", "-o", "{out}/o.mp4"],
                          ["pickle.npz", "not a valid pose .npz"]),
    "draw-pickle-file": (["pose", "draw", "{d}/pickle_file.npz", "-o", "{out}/o.mp4"],
                         ["pickle_file.npz", "not an .npz archive"]),
    "draw-empty-file": (["pose", "draw", "{d}/empty.npz", "-o", "{out}/o.mp4"],
                        ["empty.npz", "not an .npz archive"]),
    "draw-video-as-pose": (["pose", "draw", "{d}/ok.mp4", "-o", "{out}/o.mp4"],
                           ["ok.mp4", "not an .npz archive"]),
    "draw-video-size": (["pose", "draw", "{d}/wrong_size.npz", "--video", "{d}/ok.mp4", "-o",
                         "{out}/o.mp4"], ["frames are 64x64, the pose is 64x48"]),
    "draw-video-short": (["pose", "draw", "{d}/long.npz", "--video", "{d}/ok.mp4", "-o",
                          "{out}/o.mp4"], ["ok.mp4", "has 10 frame(s), the pose has 20"]),
    "draw-video-corrupt": (["pose", "draw", "{d}/good.npz", "--video", "{d}/truncated.mp4",
                            "-o", "{out}/o.mp4"], ["truncated.mp4", "cannot be opened"]),
    "draw-out-suffix": (["pose", "draw", "{d}/good.npz", "-o", "{out}/o.avi"],
                        ["must end in .mp4"]),
    "draw-out-folder": (["pose", "draw", "{d}/good.npz", "-o", "{out}/o.mp4/"],
                        ["it is a folder"]),
    "draw-sheet-columns": (["pose", "draw", "{d}/good.npz", "-o", "{out}/o.png",
                            "--sheet-columns", "0"], ["--sheet-columns must be >= 1"]),
    "draw-sheet-width": (["pose", "draw", "{d}/good.npz", "-o", "{out}/o.png",
                          "--sheet-width", "-5"], ["--sheet-width must be >= 1"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(POSE_CASES))
def test_pose_commands(case, d, tmp_path, capsys):
    argv, names = POSE_CASES[case]
    if case == "draw-out-folder":
        (tmp_path / "o.mp4").mkdir()
    expect_error(capsys, _fill(argv, d, tmp_path), *names)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "o.mp4"]
    assert leftovers == [], leftovers  # no output, no temporary file
    assert not (d / "UNPICKLED").exists()  # the pickles were refused unopened


def test_pose_draw_pads_odd_sizes(d, tmp_path, capsys):
    out = tmp_path / "odd.mp4"
    assert main(["pose", "draw", str(d / "odd.npz"), "-o", str(out)]) == 0
    info = probe(out)
    assert (info.frames, info.width, info.height) == (2, 64, 64)
    assert capsys.readouterr().err == ""  # no progress bar when stderr is not a terminal


# --- data synth / data prepare --------------------------------------------------------------

DATA_CASES = {
    "synth-no-clips": (["data", "synth", "--out", "{out}/c", "--clips", "0"],
                       ["--clips must be >= 1, got 0"]),
    "synth-negative-clips": (["data", "synth", "--out", "{out}/c", "--clips", "-3"],
                             ["--clips must be >= 1"]),
    "synth-odd-size": (["data", "synth", "--out", "{out}/c", "--size", "63"], ["--size", "63"]),
    "synth-tiny-size": (["data", "synth", "--out", "{out}/c", "--size", "8"], ["--size", "8"]),
    "synth-huge-size": (["data", "synth", "--out", "{out}/c", "--size", "100000"],
                        ["--size", "100000"]),
    "synth-fps-zero": (["data", "synth", "--out", "{out}/c", "--fps", "0"], ["--fps"]),
    "synth-fps-nan": (["data", "synth", "--out", "{out}/c", "--fps", "nan"], ["--fps"]),
    "synth-fraction": (["data", "synth", "--out", "{out}/c", "--val-fraction", "1.5"],
                       ["--val-fraction must be in [0, 1)"]),
    "synth-fractions-sum": (["data", "synth", "--out", "{out}/c", "--val-fraction", "0.5",
                             "--test-fraction", "0.5"], ["must be below 1"]),
    "synth-workers": (["data", "synth", "--out", "{out}/c", "--workers", "0"], ["--workers"]),
    "synth-out-file": (["data", "synth", "--out", "{d}/afile", "--clips", "1", "--size", "32"],
                       ["afile", "is a file"]),
    "synth-out-proc": (["data", "synth", "--out", "/proc/cospeech-c", "--clips", "1", "--size",
                        "32"], ["/proc/cospeech-c", "cannot be made"]),
    "prepare-missing": (["data", "prepare", "{d}/none", "--out", "{out}/c"],
                        ["none", "no such file or folder"]),
    "prepare-file": (["data", "prepare", "{d}/afile", "--out", "{out}/c"],
                     ["no source could be prepared", "afile", "cannot be opened"]),
    "prepare-empty": (["data", "prepare", "{d}/empty", "--out", "{out}/c"],
                      ["empty", "no videos"]),
    "prepare-junk": (["data", "prepare", "{d}/junk", "--out", "{out}/c"],
                     ["no source could be prepared", "(and 1 more)"]),
    "prepare-confidence": (["data", "prepare", "{d}/ok.mp4", "--out", "{out}/c",
                            "--face-confidence", "1.5"], ["--face-confidence", "[0, 1]"]),
    "prepare-visibility": (["data", "prepare", "{d}/ok.mp4", "--out", "{out}/c",
                            "--upper-body-visibility", "-0.1"], ["--upper-body-visibility"]),
    "prepare-min-frames": (["data", "prepare", "{d}/ok.mp4", "--out", "{out}/c",
                            "--min-frames", "0"], ["--min-frames (0)"]),
    "prepare-max-frames": (["data", "prepare", "{d}/ok.mp4", "--out", "{out}/c",
                            "--min-frames", "10", "--max-frames", "3"], ["--max-frames (3)"]),
    "prepare-margin": (["data", "prepare", "{d}/ok.mp4", "--out", "{out}/c", "--margin", "-1"],
                       ["--margin must be >= 0"]),
    "prepare-test-fraction": (["data", "prepare", "{d}/ok.mp4", "--out", "{out}/c",
                               "--test-fraction", "2"], ["--test-fraction"]),
    "prepare-size": (["data", "prepare", "{d}/ok.mp4", "--out", "{out}/c", "--size", "63"],
                     ["--size", "63"]),
    "prepare-out-file": (["data", "prepare", "{d}/ok.mp4", "--out", "{d}/afile"],
                         ["afile", "is a file"]),
    "prepare-onnx-text": (["data", "prepare", "{d}/ok.mp4", "--out", "{out}/c", "--backend",
                           "onnx", "--pose-model", "{d}/model.onnx"],
                          ["model.onnx", "not a loadable ONNX model"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_data_commands(case, d, tmp_path, capsys):
    argv, names = DATA_CASES[case]
    expect_error(capsys, _fill(argv, d, tmp_path), *names, absent=(tmp_path / "c",))
    assert (d / "afile").is_file()


@pytest.mark.skipif(not espeak_available(), reason="libespeak-ng not installed")
def test_synth_refuses_other_settings_and_resumes_after_ctrl_c(tmp_path, capsys, monkeypatch):
    from cospeech.data.synth import corpus as corpus_module

    out = tmp_path / "corpus"
    small = ["data", "synth", "--out", str(out), "--size", "32", "--identities", "1"]
    # Ctrl-C after the first finished clip: exit 130, nothing half-written left behind.
    write_corpus = corpus_module.write_corpus

    def interrupted(root, config, workers=1, progress=None):
        def stop(done: int) -> None:
            raise KeyboardInterrupt

        return write_corpus(root, config, workers=workers, progress=stop)

    monkeypatch.setattr(corpus_module, "write_corpus", interrupted)
    assert main([*small, "--clips", "3"]) == 130
    assert capsys.readouterr().err.strip() == "cospeech: interrupted"
    clips = sorted((out / "clips").iterdir())
    assert len(clips) == 1 and not clips[0].name.startswith(".")  # finished ones only
    assert (clips[0] / "meta.json").is_file()

    monkeypatch.setattr(corpus_module, "write_corpus", write_corpus)
    expect_error(capsys, [*small, "--clips", "3", "--fps", "20"], "other settings")
    assert main([*small, "--clips", "3"]) == 0  # the rerun resumes
    assert sorted(p.name for p in (out / "clips").iterdir()) == [f"clip{i:06d}" for i in range(3)]


# --- bench ----------------------------------------------------------------------------------

BENCH_CASES = {
    "attention-device": (["bench", "attention", "--device", "tpu", "--quick"],
                         ["--device tpu", "unknown device"]),
    "attention-k": (["bench", "attention", "--quick", "--k", "-1"], ["--k must be >= 0"]),
    "attention-block": (["bench", "attention", "--quick", "--block-size", "0"],
                        ["--block-size must be >= 1"]),
    "attention-backend": (["bench", "attention", "--quick", "--backends", "gather,nope"],
                          ["--backends", "nope"]),
    "attention-pose": (["bench", "attention", "--quick", "--pose", "{d}/text.mp4"],
                       ["text.mp4", "not an .npz archive"]),
    "model-preset": (["bench", "model", "--preset", "nope"], ["nope", "no such file or preset"]),
    "model-preset-list": (["bench", "model", "--preset", "{d}/list.yaml"],
                          ["list.yaml", "key: value"]),
    "model-preset-text": (["bench", "model", "--preset", "{d}/afile"], ["afile", "key: value"]),
    "model-preset-binary": (["bench", "model", "--preset", "{d}/ok.mp4"],
                            ["ok.mp4", "not a readable text file"]),
    "model-preset-yaml": (["bench", "model", "--preset", "{d}/bad.yaml"],
                          ["bad.yaml", "not valid YAML", "line 2"]),
    "model-set-type": (["bench", "model", "--set", "num_layers=abc"],
                       ["num_layers", "expected an integer, got 'abc'"]),
    "model-set-unknown": (["bench", "model", "--set", "nope=1"], ["unknown field(s) ['nope']"]),
    "model-size": (["bench", "model", "--size", "100x100", "--frames", "5"],
                   ["100x100", "multiple of 16"]),
    "model-size-text": (["bench", "model", "--size", "abc"], ["expected HxW"]),
    "model-frames": (["bench", "model", "--frames", "-1"], ["frames must be 1 + 4k, got -1"]),
    "model-chunk": (["bench", "model", "--frames", "5", "--size", "32x32", "--chunk-frames",
                     "0"], ["chunk frames must be >= 1"]),
    "model-device": (["bench", "model", "--device", "foo"], ["--device foo: unknown device"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BENCH_CASES))
def test_bench_commands(case, d, tmp_path, capsys):
    argv, names = BENCH_CASES[case]
    expect_error(capsys, _fill(argv, d, tmp_path), *names)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
@pytest.mark.parametrize("command", ["attention", "model"])
def test_bench_cuda_without_cuda(command, capsys):
    expect_error(capsys, ["bench", command, "--device", "cuda"], "CUDA is not available")


@pytest.mark.parametrize(
    "argv", [["nope"], ["bench", "attention", "--shape", "nope"], ["pose", "extract", "--bad"]]
)
def test_argparse_errors_exit_2_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "usage:" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["--help"], ["pose", "extract", "--help"], ["data", "synth", "--help"],
             ["data", "prepare", "--help"], ["bench", "model", "--help"]],
)  # fmt: skip
def test_help_exits_0(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0 and "usage:" in capsys.readouterr().out


# --- library level --------------------------------------------------------------------------

POSE_FILES = {
    "nan.npz": "NaN", "shape.npz": "expected keypoints", "fields.npz": "missing field(s)",
    "huge.npz": "frame size", "pickle.npz": "not a valid pose .npz",
    "pickle_file.npz": "not an .npz archive", "empty.npz": "not an .npz archive",
    "text.mp4": "not an .npz archive", "folder": "is a folder", "none.npz": "no such file",
}  # fmt: skip


@pytest.mark.parametrize("name", list(POSE_FILES))
def test_pose_sequence_load_junk(name, d):
    with pytest.raises(InputError) as error:
        PoseSequence.load(d / name)
    message = str(error.value)
    assert message.startswith(f"pose file {d / name}: ") and POSE_FILES[name] in message
    assert "\n" not in message and not (d / "UNPICKLED").exists()


def _break(kind: str, folder: Path) -> None:
    weights, config = folder / "model.safetensors", folder / "config.json"
    tensors = load_file(weights)
    if kind == "pickle":
        weights.unlink()
        torch.save({"w": torch.zeros(1)}, folder / "pytorch_model.bin")
    elif kind == "missing-key":
        tensors.pop(sorted(tensors)[0])
        save_file(tensors, weights)
    elif kind == "wrong-shape":
        tensors[sorted(tensors)[-1]] = torch.zeros(3, 3)
        save_file(tensors, weights)
    elif kind == "junk-weights":
        weights.write_text("junk")
    elif kind == "not-json":
        config.write_text("{nope")
    elif kind == "binary-config":
        config.write_bytes(b"\xff\xfe\x00")
    elif kind in ("unknown-field", "wrong-type"):
        data = json.loads(config.read_text())
        fields = data.get("cospeech", data)
        if kind == "unknown-field":
            fields["bogus"] = 1
        else:
            fields[next(k for k, v in fields.items() if type(v) is int)] = "abc"
        config.write_text(json.dumps(data))


CHECKPOINT_CASES = {
    "pickle": "pickle", "missing-key": "missing keys", "wrong-shape": "wrong shapes",
    "junk-weights": "not a readable safetensors file", "not-json": "not readable JSON",
    "binary-config": "not readable JSON", "unknown-field": "unknown field(s) ['bogus']",
    "wrong-type": "expected an integer, got 'abc'",
}  # fmt: skip


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, tuple[type, Path]]:
    from cospeech.models.config import load_video_dit_config
    from cospeech.models.dit import VideoDiT
    from cospeech.models.vae.tiny import TinyVAEConfig, TinyVideoVAE

    root = tmp_path_factory.mktemp("checkpoints")
    VideoDiT(load_video_dit_config("tiny")).save_pretrained(root / "dit")
    TinyVideoVAE(TinyVAEConfig()).save_pretrained(root / "vae")
    return {"dit": (VideoDiT, root / "dit"), "vae": (TinyVideoVAE, root / "vae")}


@pytest.mark.parametrize("model", ["dit", "vae"])
@pytest.mark.parametrize("kind", list(CHECKPOINT_CASES))
def test_from_pretrained_on_broken_checkpoints(model, kind, checkpoints, tmp_path):
    cls, good = checkpoints[model]
    folder = tmp_path / kind
    shutil.copytree(good, folder)
    _break(kind, folder)
    with pytest.raises(CheckpointError) as error:
        cls.from_pretrained(folder)
    message = str(error.value)
    assert str(folder) in message and CHECKPOINT_CASES[kind] in message
    assert "\n" not in message


# --- in a real terminal process -------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, name",
    [
        (["pose", "extract", "{d}/flat.png", "-o", "{out}/p.npz"], "no person found"),
        (["pose", "draw", "{d}/pickle.npz", "-o", "{out}/o.mp4"], "not a valid pose .npz"),
        (["bench", "model", "--preset", "{d}/bad.yaml"], "not valid YAML"),
    ],
)
def test_subprocess_stderr_is_one_line(argv, name, d, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cospeech.cli", *_fill(argv, d, tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("cospeech: error: "), result.stderr
    assert name in lines[0] and list(tmp_path.iterdir()) == []
