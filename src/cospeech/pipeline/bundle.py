"""The models behind ``cospeech generate``: teacher DiT, video VAE and their settings.

A model folder holds ``teacher/`` (VideoDiT ``save_pretrained`` + ``sampling.json``) and
``vae/`` (TinyVideoVAE ``save_pretrained``). The default is the demo pair shipped in
``cospeech/assets`` (docs/demo-models.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from cospeech.config import from_dict, to_dict
from cospeech.errors import CheckpointError, InputError
from cospeech.jsonfile import read_json, write_json
from cospeech.models import VideoDiT
from cospeech.models.vae import TinyVideoVAE
from cospeech.shipped import ASSETS, TEACHER_DIR, VAE_DIR

SAMPLING_FILE = "sampling.json"


@dataclass(frozen=True)
class SamplingSettings:
    """How a teacher was trained and is best sampled.

    ``window``: latent frames per window (the training window); ``overlap``: latent frames
    shared by neighbouring windows; ``size``: frame side in pixels; ``steps``, ``guidance``,
    ``shift``: Euler steps, guidance scale and timestep shift of sampling.
    """

    window: int = 5
    overlap: int = 2
    size: int = 128
    fps: float = 25.0
    steps: int = 20
    guidance: float = 1.0
    shift: float = 3.0

    def save(self, folder: str | Path) -> None:
        write_json(Path(folder) / SAMPLING_FILE, to_dict(self))

    @classmethod
    def load(cls, folder: str | Path) -> SamplingSettings:
        path = Path(folder) / SAMPLING_FILE
        if not path.is_file():
            return cls()
        try:
            return from_dict(cls, read_json(path, error=CheckpointError))
        except InputError as exc:
            raise CheckpointError(f"{path}: {exc}") from None


@dataclass
class ModelBundle:
    """Teacher, VAE and sampling settings, ready for inference (eval mode)."""

    teacher: VideoDiT
    vae: TinyVideoVAE
    settings: SamplingSettings


def model_folder(folder: str | Path | None = None) -> Path:
    """``folder`` (default: the shipped demo models), checked to hold ``teacher/`` and
    ``vae/`` (InputError otherwise)."""
    root = Path(folder) if folder is not None else ASSETS
    for sub in (TEACHER_DIR, VAE_DIR):
        if not (root / sub).is_dir():
            raise InputError(f"model folder {root}: no {sub}/ inside (see docs/generate.md)")
    return root


def load_settings(folder: str | Path | None = None) -> SamplingSettings:
    """The sampling settings of a model folder, read without loading any weights (so that
    options can be checked against them first)."""
    return SamplingSettings.load(model_folder(folder) / TEACHER_DIR)


def load_bundle(
    folder: str | Path | None = None, device: torch.device | str = "cpu"
) -> ModelBundle:
    """Load ``folder`` (default: the shipped demo models); weights are cast to float32."""
    root = model_folder(folder)
    teacher = VideoDiT.from_pretrained(root / TEACHER_DIR, dtype=torch.float32, device=device)
    vae = TinyVideoVAE.from_pretrained(root / VAE_DIR, dtype=torch.float32, device=device)
    config = teacher.config
    if config.out_dim != vae.latent_channels:
        raise CheckpointError(
            f"model folder {root}: teacher works on {config.out_dim} latent channels, "
            f"the VAE has {vae.latent_channels}"
        )
    return ModelBundle(teacher.eval(), vae.eval(), load_settings(root))


def save_bundle(
    teacher_dir: str | Path,
    vae_dir: str | Path,
    settings: SamplingSettings,
    folder: str | Path,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Write a model folder (``teacher/``, ``vae/``, ``teacher/sampling.json``) from a trained
    teacher and VAE (``save_pretrained`` folders), weights cast to ``dtype`` (half the size
    in float16; :func:`load_bundle` casts back to float32)."""
    root = Path(folder)
    teacher = VideoDiT.from_pretrained(teacher_dir, dtype=dtype)
    teacher.save_pretrained(root / TEACHER_DIR)
    settings.save(root / TEACHER_DIR)
    TinyVideoVAE.from_pretrained(vae_dir).save_pretrained(root / VAE_DIR, dtype=dtype)
    return root
