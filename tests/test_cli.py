"""The command-line front: every documented command is reachable, errors stay one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cospeech.cli import main

COMMANDS = [
    ["generate"], ["motion"], ["pose", "extract"], ["pose", "draw"], ["data", "synth"],
    ["data", "prepare"], ["train", "motion"], ["train", "vae"], ["train", "teacher"],
    ["eval", "motion"], ["bench", "attention"], ["bench", "model"], ["bench", "motion"],
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: cospeech " + " ".join(command) in capsys.readouterr().out


def test_unknown_stage_is_a_usage_error_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cospeech.cli", "train", "no-such", "--out", str(tmp_path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "invalid choice" in result.stderr
