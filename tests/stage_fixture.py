"""Fixtures shared by the teacher-family stage tests (teacher, sparse, distill): the tiny
synthetic corpus, a tiny random VAE, and the ``cospeech train`` command line on them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipeline_fixture import COSPEECH, ENV, save_tiny_vae, tiny_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return tiny_corpus(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    return save_tiny_vae(tmp_path_factory.getbasetemp() / "teacher-test-vae")


def stage_args(
    stage: str, corpus: Path, vae: Path, latents: Path, run: Path, steps: int, batch: int = 2
) -> list[str]:
    """``cospeech train STAGE`` arguments for a short tiny-preset run on 9-frame 64x64
    windows, a checkpoint every 2 steps and a log line every step."""
    return [
        "train", stage, "--out", str(run),
        "--set", f"stage.data={corpus}", "--set", f"stage.vae={vae}",
        "--set", f"stage.latents={latents}", "--set", "stage.model=tiny",
        "--set", "stage.frames=9", "--set", "stage.size=64",
        "--set", f"train.steps={steps}", "--set", f"train.batch_size={batch}",
        "--set", "train.checkpoint_every=2", "--set", "train.log_every=1",
        "--set", "train.sample_every=0", "--set", "train.optim.warmup_steps=2",
    ]  # fmt: skip


def train(*args: str) -> None:
    """Run ``cospeech ARGS`` to completion (raises with its output when it fails)."""
    subprocess.run([*COSPEECH, *args], env=ENV, check=True, capture_output=True, timeout=300)


def save_random_teacher(path: Path, vae: Path, seed: int = 0, scale: float = 0.02) -> Path:
    """A tiny teacher (``stage.model=tiny`` for ``vae``) with every weight perturbed by
    ``scale`` x N(0, 1) (a fresh model's zero output head would make every score equal),
    saved with ``save_pretrained``."""
    import torch

    from cospeech.models import VideoDiT, load_video_dit_config
    from cospeech.models.i2v import MASK_CHANNELS
    from cospeech.models.vae import TinyVideoVAE

    channels = TinyVideoVAE.from_pretrained(vae).latent_channels
    config = load_video_dit_config("tiny")
    assert config.out_dim == channels and config.cond_dim == MASK_CHANNELS + channels
    generator = torch.Generator().manual_seed(seed)
    model = VideoDiT(config)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * scale)
    model.save_pretrained(path)
    return path
