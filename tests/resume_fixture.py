"""Kill-and-resume checks and torchrun helpers shared by the trainer and stage tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from cospeech.train.checkpoint import list_checkpoints


def kill_after_first_checkpoint(command: list[str], run_dir: Path, env: dict, steps: int) -> None:
    """Start ``command`` (a training run into ``run_dir``), SIGKILL it as soon as its first
    checkpoint exists, and check the kill came before the end of training."""
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list_checkpoints(run_dir / "checkpoints"):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = list_checkpoints(run_dir / "checkpoints")
    assert done and int(done[-1].name.split("-")[1]) < steps, "kill came too late to test resume"


def assert_identical_runs(reference: Path, resumed: Path, steps: int) -> None:
    """Both exports (``final``, ``final-ema``) equal bit for bit, and the resumed run's metrics
    log every step exactly once."""
    for name in ("final", "final-ema"):
        want = load_file(str(reference / name / "model.safetensors"))
        got = load_file(str(resumed / name / "model.safetensors"))
        assert want.keys() == got.keys()
        for key in want:
            assert torch.equal(want[key], got[key]), f"{name}/{key} differs after resume"
    lines = (resumed / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(1, steps + 1))


def free_port() -> int:
    """A TCP port on localhost that nothing listens on now (for torchrun's rendezvous), so
    that concurrent or lingering runs cannot collide on a fixed port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
