"""The command-line front: help, unknown commands, one-line errors."""

from __future__ import annotations

import subprocess
import sys

from cospeech.cli import main


def test_help_lists_commands(capsys):
    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out
    assert "train" in out


def test_error_is_one_line_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cospeech.cli", "train", "no-such", "--out", str(tmp_path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
