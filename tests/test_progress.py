"""Progress on stderr (``cospeech.progress``): a bar on a terminal, a few plain lines in a
log, nothing for quick work, and errors that start on a fresh line.

The line counts are checked against a fake clock (exact), then against real commands run
with stderr redirected to a file (bounded by the run time over the interval) and attached
to a pseudo-terminal (a tqdm bar, carriage returns).
"""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import numpy as np
import pytest
import soundfile

from cospeech import progress
from cospeech.cli import main
from cospeech.errors import InputError
from cospeech.progress import Progress, track
from pipeline_fixture import COSPEECH, ENV, clip_with_split, tiny_corpus

SECONDS, FRAMES = 8, 200  # the speech of the command tests, and its frames at 25 fps
LINE = re.compile(r"^(?P<desc>[^:]+): (?P<n>\d+)(/(?P<total>\d+))? \w+")


class Clock:
    """A fake ``progress._now``: advances only when told to."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(progress, "_now", fake)
    return fake


@pytest.fixture
def lines_mode(monkeypatch):
    """Plain lines every 5 s, whatever the environment or stderr say."""
    monkeypatch.delenv(progress.MODE_VARIABLE, raising=False)
    monkeypatch.delenv(progress.INTERVAL_VARIABLE, raising=False)
    previous = progress.configure("lines", 5.0)
    yield
    progress.restore(previous)


# --- plain lines (stderr not a terminal) -----------------------------------------------------

# (seconds per unit, units) -> plain lines expected with a 5 s interval: one whenever 5 s
# have passed since the last line, and a final one when the work took >= 5 s and the last
# line shown has an older count.
LINE_CASES = {
    "quick": (0.01, 100, 0),  # 1 s in all: nothing at all
    "exactly-one-interval": (1.0, 5, 1),  # a line at 5 s, which is also the last count
    "one-per-second": (1.0, 100, 20),  # lines at 5, 10, ..., 100 s
    "uneven": (1.0, 7, 2),  # a line at 5 s (5/7), the final one at 7 s
    "slow-units": (12.0, 3, 3),  # every update is past the interval
    "just-under": (0.49, 10, 0),  # 4.9 s: still quiet
}


@pytest.mark.parametrize("case", list(LINE_CASES))
def test_lines_are_throttled_by_the_interval(case, clock, lines_mode, capsys):
    step, units, expected = LINE_CASES[case]
    with Progress("work", units, "item") as bar:
        for _ in range(units):
            clock.t += step
            bar.update()
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert len(lines) == expected, err
    if lines:
        assert lines[-1].startswith(f"work: {units}/{units} items, ")


def test_a_line_tells_count_elapsed_and_time_left(clock, lines_mode, capsys):
    with Progress("generate", 205, "frame") as bar:
        clock.t += 12.3
        bar.update(120)
        bar.set_postfix("loss 0.1234")
        assert bar.line() == "generate: 120/205 frames, 12.3 s, about 8.7 s left (loss 0.1234)"
        clock.t += 100
        bar.update(85)
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "generate: 120/205 frames, 12.3 s, about 8.7 s left",
        "generate: 205/205 frames, 1 min 52 s (loss 0.1234)",
    ]


def test_unknown_total_and_resumed_counts(clock, lines_mode, capsys):
    with Progress("bench", None, "timing") as bar:
        clock.t += 6
        bar.update(3)
    with Progress("train", 100, "step", initial=40) as bar:  # resumed at step 40
        clock.t += 10
        bar.update(10)  # 10 steps in 10 s: 50 left take about 50 s
    assert capsys.readouterr().err.splitlines() == [
        "bench: 3 timings, 6.0 s",
        "train: 50/100 steps, 10.0 s, about 50.0 s left",
    ]


def test_an_aborted_progress_prints_no_final_line(clock, lines_mode, capsys):
    with pytest.raises(InputError), Progress("work", 10) as bar:
        clock.t += 6
        bar.update()  # a line: 6 s passed
        clock.t += 1
        raise InputError("boom")
    assert capsys.readouterr().err.splitlines() == ["work: 1/10 steps, 6.0 s, about 54.0 s left"]
    assert progress._open == []


def test_track_counts_each_item_when_the_next_is_asked_for(clock, capsys):
    previous = progress.configure("lines", 0.0)  # interval 0: a line for every update
    try:
        seen = []
        for item in track(["a", "b", "c"], "letters", unit="letter"):
            seen.append(item)
            clock.t += 1
        generated = list(track((i for i in range(2)), "gen"))  # no len: no total
    finally:
        progress.restore(previous)
    assert seen == ["a", "b", "c"] and generated == [0, 1]
    assert capsys.readouterr().err.splitlines() == [
        "letters: 1/3 letters, 1.0 s, about 2.0 s left",
        "letters: 2/3 letters, 2.0 s, about 1.0 s left",
        "letters: 3/3 letters, 3.0 s",
        "gen: 1 step, 0.0 s",  # no total: the count alone
        "gen: 2 steps, 0.0 s",
    ]


@pytest.mark.parametrize("mode, enabled", [("off", True), ("lines", False), ("bar", False)])
def test_off_or_disabled_prints_nothing(mode, enabled, clock, capsys):
    previous = progress.configure(mode, 0.0)
    try:
        with Progress("quiet", 3, enabled=enabled) as bar:
            clock.t += 10
            bar.update(3)
    finally:
        progress.restore(previous)
    assert capsys.readouterr().err == ""


# --- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, ("auto", 5.0)),
        ({"COSPEECH_PROGRESS": "LINES", "COSPEECH_PROGRESS_INTERVAL": "2.5"}, ("lines", 2.5)),
        ({"COSPEECH_PROGRESS": "off"}, ("off", 5.0)),
        ({"COSPEECH_PROGRESS_INTERVAL": "0"}, ("auto", 0.0)),
    ],
)
def test_settings_from_the_environment(env, expected, monkeypatch):
    for name in (progress.MODE_VARIABLE, progress.INTERVAL_VARIABLE):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = progress.current_settings()
    assert (settings.mode, settings.interval_s) == expected


@pytest.mark.parametrize(
    "env, message",
    [
        ({"COSPEECH_PROGRESS": "fancy"}, "progress mode must be one of auto, bar, lines, off"),
        ({"COSPEECH_PROGRESS_INTERVAL": "soon"}, "not a number of seconds"),
        ({"COSPEECH_PROGRESS_INTERVAL": "-1"}, "progress interval must be >= 0 seconds"),
        ({"COSPEECH_PROGRESS_INTERVAL": "nan"}, "progress interval must be >= 0 seconds"),
    ],
)
def test_bad_settings_end_in_one_error_line(env, message, monkeypatch, capsys):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["eval", "motion", "--data", "nowhere"]) == 2  # fails before any work
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cospeech: error: ") and message in err


def test_the_progress_flag_holds_for_one_run(monkeypatch, capsys):
    monkeypatch.setenv(progress.MODE_VARIABLE, "lines")
    code = main(["--progress", "off", "bench", "model", "--frames", "-1"])
    assert code == 2 and progress.current_settings().mode == "lines"
    capsys.readouterr()


# --- a bar on a terminal, and errors on a fresh line ------------------------------------------


def _forced_bar(monkeypatch) -> io.StringIO:
    """``--progress bar`` with stderr an in-memory file (tqdm draws the same bytes)."""
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    return err


def _last_screen_line(err: str) -> str:
    """What a terminal shows on the last line of ``err``: each ``\\r`` sends the cursor
    back to column 0, and later characters overwrite earlier ones (trailing blanks
    dropped)."""
    cells: list[str] = []
    column = 0
    for char in err.rstrip("\n").split("\n")[-1]:
        if char == "\r":
            column = 0
            continue
        if column < len(cells):
            cells[column] = char
        else:
            cells.append(char)
        column += 1
    return "".join(cells).rstrip()


def test_forced_bar_draws_a_tqdm_bar(monkeypatch, clock):
    err = _forced_bar(monkeypatch)
    previous = progress.configure("bar")
    try:
        for _ in track(range(4), "draw", unit="frame"):
            pass
    finally:
        progress.restore(previous)
    text = err.getvalue()
    assert "\r" in text and "draw: 100%" in text and "4/4" in text


def _failing_command(leave: bool):
    def run(_args) -> int:
        for i in track(range(5), "work", unit="item", leave=leave):
            if i == 2:  # raised in the loop body: the generator stays suspended, bar open
                raise InputError("broke at item 2")
        return 0

    return run


@pytest.mark.parametrize("leave", [True, False])
def test_an_error_starts_on_a_fresh_line_after_a_bar(leave, monkeypatch):
    import cospeech.commands.pose as pose_commands

    monkeypatch.setattr(pose_commands, "_draw", _failing_command(leave))
    err = _forced_bar(monkeypatch)
    assert main(["--progress", "bar", "pose", "draw", "x.npz", "-o", "x.mp4"]) == 2
    text = err.getvalue()
    assert "work:" in text  # the bar was drawn
    # nothing of the bar is left on the error's line, and the error starts at column 0
    assert _last_screen_line(text) == "cospeech: error: broke at item 2"
    assert progress._open == []


def test_pose_draw_error_mid_video_is_on_its_own_line(tmp_path, monkeypatch):
    """A real command: ``pose draw`` fails while writing its 3rd frame."""
    import cospeech.media.image as image_module
    from cospeech.pose.sequence import PoseSequence

    kp = np.random.default_rng(0).random((6, 133, 3)).astype(np.float32)
    kp[..., :2] *= 32
    PoseSequence(kp, 25.0, 32, 32).save(tmp_path / "p.npz")
    pad, calls = image_module.pad_to_even, []

    def failing_pad(image):  # called in the loop body, once per frame
        calls.append(1)
        if len(calls) == 3:
            raise InputError("disk full (simulated)")
        return pad(image)

    monkeypatch.setattr(image_module, "pad_to_even", failing_pad)
    err = _forced_bar(monkeypatch)
    argv = ["--progress", "bar", "pose", "draw", str(tmp_path / "p.npz"), "-o"]
    assert main([*argv, str(tmp_path / "o.mp4")]) == 2
    assert _last_screen_line(err.getvalue()) == "cospeech: error: disk full (simulated)"
    assert "draw:" in err.getvalue() and not (tmp_path / "o.mp4").exists()


def test_in_lines_mode_an_error_after_progress_lines_is_its_own_line(clock, monkeypatch, capsys):
    import cospeech.commands.pose as pose_commands

    def run(_args) -> int:
        for i in track(range(5), "work", unit="item"):
            clock.t += 3
            if i == 3:
                raise InputError("broke at item 3")
        return 0

    monkeypatch.setattr(pose_commands, "_draw", run)
    monkeypatch.setenv(progress.INTERVAL_VARIABLE, "5")
    assert main(["--progress", "lines", "pose", "draw", "x.npz", "-o", "x.mp4"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "work: 2/5 items, 6.0 s, about 9.0 s left",
        "cospeech: error: broke at item 3",
    ]


# --- real commands: a log file and a pseudo-terminal -----------------------------------------


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> tuple[Path, Path]:
    """(8 s of the tiny corpus's speech, tiled; a reference pose) for ``cospeech motion``."""
    base = tmp_path_factory.getbasetemp()
    folder, _, reference_pose = clip_with_split(tiny_corpus(base), "test")
    audio, rate = soundfile.read(folder / "audio.wav", dtype="float32")
    out = tmp_path_factory.mktemp("speech") / "speech.wav"
    soundfile.write(out, np.resize(audio, SECONDS * rate), rate)
    return out, reference_pose


def _motion_argv(speech: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    audio, reference = speech
    return [*COSPEECH, "motion", "--audio", str(audio), "--reference-pose", str(reference),
            "-o", str(out / "pose.npz"), *extra]  # fmt: skip


def _run_logged(argv: list[str], log: Path, **env: str) -> tuple[str, float]:
    """Run with stderr redirected to ``log``; (its text, the wall time)."""
    import time

    started = time.perf_counter()
    with log.open("w") as handle:
        subprocess.run(argv, stderr=handle, stdout=subprocess.DEVNULL, check=True,
                       env={**ENV, **env}, timeout=600)  # fmt: skip
    return log.read_text(), time.perf_counter() - started


def test_streaming_motion_reports_each_pushed_piece(speech, tmp_path):
    """Interval 0: a line per update. The 8 s are pushed in 5 s pieces (a whole number of
    chunks) and the end: three updates, the counts rising to every frame."""
    err, _ = _run_logged(
        _motion_argv(speech, tmp_path, "--streaming"), tmp_path / "log.txt",
        COSPEECH_PROGRESS_INTERVAL="0",
    )  # fmt: skip
    found = [LINE.match(line) for line in err.splitlines()]
    assert all(found) and {m["desc"] for m in found} == {"motion (streaming)"}, err
    counts = [int(m["n"]) for m in found]
    assert len(counts) == 3 and counts == sorted(counts) and counts[-1] == FRAMES, err
    assert {int(m["total"]) for m in found} == {FRAMES}


def test_a_log_gets_at_most_one_line_per_interval_and_bar(speech, tmp_path):
    interval = 0.5
    err, seconds = _run_logged(
        _motion_argv(speech, tmp_path, "--streaming", "--draw", str(tmp_path / "d.mp4")),
        tmp_path / "log.txt", COSPEECH_PROGRESS_INTERVAL=str(interval),
    )  # fmt: skip
    assert "\r" not in err and "\x1b" not in err  # no bar, no terminal codes
    lines = err.splitlines()
    assert all(LINE.match(line) for line in lines), err
    # two bars (streaming, draw): each at most one line per interval, plus its final line
    assert len(lines) <= 2 * (seconds / interval + 1), (seconds, err)
    assert len(err) <= 80 * len(lines)


def test_a_quick_run_in_a_log_writes_no_progress_at_all(speech, tmp_path):
    """The default interval (5 s) is longer than the drawing and the offline motion take
    here: the log holds nothing (it used to get kilobytes of bar redraws)."""
    argv = _motion_argv(speech, tmp_path, "--draw", str(tmp_path / "d.mp4"))
    env = {"COSPEECH_PROGRESS_INTERVAL": "60"}  # a slow shared machine must not matter
    err, _ = _run_logged(argv, tmp_path / "log.txt", **env)
    assert err == ""


def test_on_a_terminal_the_streaming_motion_draws_a_bar(speech, tmp_path):
    leader, follower = pty.openpty()
    # a terminal 100 columns wide (a fresh pseudo-terminal has 0: tqdm would draw nothing)
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        process = subprocess.Popen(
            _motion_argv(speech, tmp_path, "--streaming"), stderr=follower,
            stdout=subprocess.DEVNULL, env=ENV,
        )  # fmt: skip
        os.close(follower)
        chunks = []
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:  # EIO: the terminal's other end closed
                break
            if not data:
                break
            chunks.append(data)
        assert process.wait(timeout=600) == 0
    finally:
        os.close(leader)
    err = b"".join(chunks).decode(errors="replace")
    assert "motion (streaming):" in err and "\r" in err and f"{FRAMES}/{FRAMES}" in err
