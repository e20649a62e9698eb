"""Training logs: metrics as JSON lines and TensorBoard scalars/videos (main process only)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cospeech.jsonfile import dumps


class MetricsLog:
    """Appends ``{"step": s, **metrics}`` lines to ``metrics.jsonl`` and TensorBoard.

    On resume from step ``s`` the lines of steps after ``s`` (written after the last
    checkpoint by the killed run) are dropped, so the log matches the restored state.
    """

    def __init__(self, run_dir: Path, resume_step: int = 0, tensorboard: bool = True) -> None:
        self.path = run_dir / "metrics.jsonl"
        if self.path.exists():
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= resume_step
            ]
            self.path.write_text("".join(f"{line}\n" for line in kept))
        self._file = self.path.open("a")
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step + 1)

    def scalars(self, step: int, metrics: dict[str, float]) -> None:
        self._file.write(dumps({"step": step, **metrics}, indent=None) + "\n")
        self._file.flush()
        if self._tb is not None:
            for name, value in metrics.items():
                self._tb.add_scalar(name, value, step)

    def still(self, step: int, name: str, frames: np.ndarray) -> None:
        """The middle frame of a sample video ``[T, H, W, 3]`` uint8 (TensorBoard videos need
        moviepy; the full mp4 is written beside the log)."""
        if self._tb is not None:
            self._tb.add_image(name, frames[len(frames) // 2], step, dataformats="HWC")

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
