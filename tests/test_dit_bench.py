"""``cospeech bench model``: runs end to end on the tiny preset; bad input is one clear error."""

from __future__ import annotations

import argparse

import pytest

from cospeech.cli import CommandTree
from cospeech.commands import bench_model
from cospeech.errors import InputError
from cospeech.models.bench import ModelBenchResult, parse_size


def run_command(argv: list[str]) -> int | None:
    parser = argparse.ArgumentParser(prog="cospeech")
    bench_model.register(CommandTree(parser))
    args = parser.parse_args(argv)
    return args.func(args)


def test_bench_model_reports_forward_chunk_and_fps(capsys):
    argv = [
        "bench",
        "model",
        "--preset",
        "tiny",
        "--frames",
        "17",
        "--size",
        "32x48",
        "--attention",
        "causal",
        "--steps",
        "2",
        "--repeats",
        "1",
        "--threads",
        "1",
    ]
    assert run_command(argv) == 0
    out = capsys.readouterr().out
    assert "5 latent frames, 30 tokens" in out  # 17 frames -> 5; 32x48 px -> 2x3 tokens
    assert "forward (causal, whole clip)" in out
    assert "chunk (3 latent = 12 video frames, KV cache of 2 frames)" in out
    assert "2-step causal student" in out


def test_student_fps_formula():
    result = ModelBenchResult(
        device="cpu",
        dtype="float32",
        attention="dense",
        video_frames=49,
        latent_frames=13,
        height=128,
        width=128,
        tokens=832,
        params=1,
        pose_params=0,
        forward_ms=500.0,
        chunk_ms=100.0,
        chunk_frames=3,
        steps=2,
        time_stride=4,
    )
    assert result.chunk_video_frames == 12
    assert result.student_fps == pytest.approx(12 / 0.3)  # 2 steps + 1 commit, 100 ms each


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--frames", "16"], "1 \\+ 4k"),
        (["--frames", "9"], "latent frames"),
        (["--size", "40x40"], "multiple of 16"),
        (["--size", "big"], "HxW"),
        (["--preset", "no-such"], "no such file or preset"),
    ],
)
def test_bench_model_bad_input(extra, message):
    with pytest.raises(InputError, match=message):
        run_command(["bench", "model", "--preset", "tiny", "--size", "32x32", *extra])


def test_parse_size():
    assert parse_size("128x192") == (128, 192)
