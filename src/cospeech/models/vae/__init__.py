"""Video VAEs behind one interface: the Wan2.1 VAE (diffusers) and our TinyVideoVAE."""

from cospeech.models.vae.base import (
    DecodeStream,
    EncodeStream,
    VideoVAE,
    check_frames,
)
from cospeech.models.vae.loss import VAELossTerms, VAELossWeights, vae_loss
from cospeech.models.vae.tiny import TINY_VAE_PRESETS, TinyVAEConfig, TinyVideoVAE, VAEOutput


def __getattr__(name: str):
    """``WanVAE`` is imported on first use: diffusers takes seconds to import."""
    if name == "WanVAE":
        from cospeech.models.vae.wan import WanVAE

        return WanVAE
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "TINY_VAE_PRESETS",
    "DecodeStream",
    "EncodeStream",
    "TinyVAEConfig",
    "TinyVideoVAE",
    "VAELossTerms",
    "VAELossWeights",
    "VAEOutput",
    "VideoVAE",
    "WanVAE",
    "check_frames",
    "vae_loss",
]
