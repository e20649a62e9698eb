"""Kill-and-resume checks and torchrun helpers shared by the trainer and stage tests.

Run as a script, this file is the launcher of :func:`kill_after_first_checkpoint`:
``python tests/resume_fixture.py SCRIPT ARGS...`` or ``... -m MODULE ARGS...`` runs that
training program with a kill switch in the trainer (see :func:`_install_kill_switch`).
"""

from __future__ import annotations

import json
import os
import runpy
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from cospeech.train.checkpoint import list_checkpoints


def kill_after_first_checkpoint(command: list[str], run_dir: Path, env: dict, steps: int) -> None:
    """Run ``command`` (``[python, SCRIPT | -m MODULE, args...]``, a training run of ``steps``
    updates into ``run_dir``) until it SIGKILLs itself at a fixed point: in the middle of the
    run, after its first checkpoint and one more logged update that no checkpoint holds.

    The kill point is decided by the training process itself, not by timing, so it is the
    same on a fast or a slow machine; the resumed run must restore the checkpoint and drop
    the log line of the lost update.
    """
    python, *program = command
    # stderr goes to a file, not a pipe: data-loader workers of the killed run may outlive
    # it by a few seconds, and a pipe would wait for them.
    with tempfile.TemporaryFile("w+") as stderr:
        code = subprocess.run([python, __file__, *program], env=env, stdout=subprocess.DEVNULL,
                              stderr=stderr, timeout=300).returncode  # fmt: skip
        stderr.seek(0)
        assert code == -signal.SIGKILL, f"the run was not killed (exit {code}):\n{stderr.read()}"
    done = list_checkpoints(run_dir / "checkpoints")
    assert len(done) == 1, "the kill switch must fire after the first checkpoint"
    saved = int(done[0].name.split("-")[1])
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert saved < json.loads(lines[-1])["step"] < steps, "the kill must lose a logged update"


def assert_identical_runs(reference: Path, resumed: Path, steps: int) -> None:
    """Both exports (``final``, ``final-ema``) equal bit for bit, and the resumed run's metrics
    log every step exactly once.

    Bit-exact on purpose: both runs are the same program on the same machine, launched with
    ``OMP_NUM_THREADS=1`` (one work split), and CPU kernels are deterministic run to run;
    the resume restores every state bit for bit, so any difference is a resume bug.
    """
    for name in ("final", "final-ema"):
        want = load_file(str(reference / name / "model.safetensors"))
        got = load_file(str(resumed / name / "model.safetensors"))
        assert want.keys() == got.keys()
        for key in want:
            assert torch.equal(want[key], got[key]), f"{name}/{key} differs after resume"
    lines = (resumed / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(1, steps + 1))


def assert_close_exports(got: Path, want: Path) -> None:
    """Both runs' exports (``final``, ``final-ema``) hold the same tensors to float
    tolerance: two ways of averaging the same gradients (processes, sharding) sum them in
    another order."""
    for name in ("final", "final-ema"):
        expected = load_file(str(want / name / "model.safetensors"))
        actual = load_file(str(got / name / "model.safetensors"))
        assert actual.keys() == expected.keys()
        for key in expected:
            torch.testing.assert_close(actual[key], expected[key], rtol=1e-4, atol=1e-5)


def cut_back(run: Path, copy: Path, step: int) -> None:
    """``copy``: finished ``run`` as a kill right after its step-``step`` checkpoint leaves
    it (later checkpoints, the exports and the later log lines gone), to be run again."""
    shutil.copytree(run, copy)
    for checkpoint in list_checkpoints(copy / "checkpoints"):
        if int(checkpoint.name.split("-")[1]) > step:
            shutil.rmtree(checkpoint)
    for name in ("final", "final-ema"):
        shutil.rmtree(copy / name, ignore_errors=True)
    log = copy / "metrics.jsonl"
    kept = [x for x in log.read_text().splitlines() if json.loads(x)["step"] <= step]
    log.write_text("".join(line + "\n" for line in kept))


PORT_TAKEN = ("address already in use", "eaddrinuse", "failed to listen", "errno: 98")


def run_torchrun(args: list[str], env: dict, timeout: float = 300) -> None:
    """``torchrun --nproc_per_node 2 --master_port <free port> ARGS``; a failure raises with
    the end of its output (torchrun's workers print their traceback there). A port taken
    between :func:`free_port`'s probe and torchrun's bind (another process on the machine
    may grab it) is retried once on a new port: that is the machine, not the code."""
    import sys

    torchrun = Path(sys.executable).with_name("torchrun")
    for attempt in range(2):
        command = [str(torchrun), "--nproc_per_node", "2", "--master_port", str(free_port())]
        proc = subprocess.run(
            [*command, *args], env=env, capture_output=True, text=True, timeout=timeout
        )
        if proc.returncode == 0:
            return
        output = proc.stdout + proc.stderr
        if attempt == 0 and any(word in output.lower() for word in PORT_TAKEN):
            continue
        raise AssertionError(f"torchrun exited {proc.returncode}:\n{output[-4000:]}")


def free_port() -> int:
    """A TCP port on localhost that nothing listens on now (for torchrun's rendezvous), so
    that concurrent or lingering runs cannot collide on a fixed port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _install_kill_switch() -> None:
    """Make the trainer SIGKILL its own process (no clean-up, like a crash or ``kill -9``) when
    it is about to start an update while its step is past its first checkpoint step; with a
    log line per step, that update's predecessor is logged but held by no checkpoint."""
    from cospeech.train.loop import Trainer

    update = Trainer._update

    def update_or_die(self, batches):
        if self.step > self.config.checkpoint_every:
            os.kill(os.getpid(), signal.SIGKILL)
        return update(self, batches)

    Trainer._update = update_or_die


def _run_program(program: list[str]) -> None:
    """Run ``SCRIPT args...`` or ``-m MODULE args...`` as ``python`` would, in this process."""
    if program[0] == "-m":
        sys.argv = program[1:]
        runpy.run_module(program[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = program
        sys.path[0] = str(Path(program[0]).resolve().parent)
        runpy.run_path(program[0], run_name="__main__")


if __name__ == "__main__":
    _install_kill_switch()
    _run_program(sys.argv[1:])
