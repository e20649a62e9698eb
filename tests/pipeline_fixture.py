"""Tiny corpus and tiny random models shared by the pipeline, stage and eval tests.

Both are built once per test session under pytest's base temporary folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile
import torch

CORPUS_SIZE = 64
TINY_VAE_WIDTHS = (8, 8, 16)
LATENT_CHANNELS = 16  # the tiny DiT preset works on 16 latent channels
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
COSPEECH = [sys.executable, "-m", "cospeech.cli"]
EXAMPLE_SPEECH = Path(__file__).resolve().parent.parent / "examples" / "speech.wav"


def tiny_corpus(base: Path) -> Path:
    """A 4-clip synthetic corpus at 64x64 (2 train, 1 val, 1 test clip)."""
    root = base / "tiny-corpus"
    if not (root / "manifest.jsonl").is_file():
        subprocess.run(
            [*COSPEECH, "data", "synth", "--out", str(root), "--clips", "4", "--seed", "3",
             "--size", str(CORPUS_SIZE)],
            env=ENV, check=True, capture_output=True, timeout=300,
        )  # fmt: skip
    return root


def save_tiny_vae(path: Path) -> Path:
    from cospeech.models.vae import TinyVAEConfig, TinyVideoVAE

    torch.manual_seed(0)
    config = TinyVAEConfig(latent_channels=LATENT_CHANNELS, widths=TINY_VAE_WIDTHS)
    TinyVideoVAE(config).save_pretrained(path)
    return path


def tiny_models(base: Path) -> Path:
    """A model folder (teacher/ + vae/) with random tiny weights: windows of 3 latent
    frames, 2 Euler steps, 64x64 frames."""
    from cospeech.models import VideoDiT, load_video_dit_config
    from cospeech.pipeline.bundle import SamplingSettings

    root = base / "tiny-models"
    if not (root / "teacher" / "sampling.json").is_file():
        save_tiny_vae(root / "vae")
        torch.manual_seed(0)
        teacher = VideoDiT(load_video_dit_config("tiny"))
        with torch.no_grad():  # a non-zero head, so the flow depends on the input
            teacher.head.head.weight.normal_(0, 0.02)
        teacher.save_pretrained(root / "teacher")
        SamplingSettings(window=3, overlap=1, size=CORPUS_SIZE, steps=2).save(root / "teacher")
    return root


def clip_with_split(corpus: Path, split: str) -> tuple[Path, Path, Path]:
    """``(clip folder, identity reference.png, reference_pose.npz)`` of the first clip of
    ``split``."""
    import json

    for line in (corpus / "manifest.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if entry["split"] == split:
            folder = corpus / entry["path"]
            meta = json.loads((folder / "meta.json").read_text())
            return folder, corpus / meta["reference"]["image"], corpus / meta["reference"]["pose"]
    raise LookupError(split)


def write_speech_excerpt(wav: Path, out: Path, seconds: float) -> Path:
    """The first ``seconds`` of the speech in ``wav`` (a clip's ``audio.wav``, or
    :data:`EXAMPLE_SPEECH`) as a wav at its own rate."""
    audio, rate = soundfile.read(wav, dtype="float32")
    soundfile.write(out, audio[: round(seconds * rate)], rate)
    return out


def silent_wav(out: Path, seconds: float, rate: int = 16000) -> Path:
    soundfile.write(out, np.zeros(round(seconds * rate), np.float32), rate)
    return out
