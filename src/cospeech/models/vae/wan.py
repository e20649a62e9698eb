"""The Wan2.1 video VAE (diffusers' ``AutoencoderKLWan``) behind the :class:`VideoVAE` interface.

Weights are the user's: a diffusers-layout folder (``config.json`` +
``diffusion_pytorch_model.safetensors``), e.g. the ``vae/`` folder of
``Wan-AI/Wan2.1-T2V-1.3B-Diffusers``. Latents are the posterior mode, normalised with
the config's ``latents_mean``/``latents_std`` exactly as Wan's pipelines do:
``z = (mu - mean) / std`` to encode, ``mu = z * std + mean`` to decode.

Streaming runs the diffusers encoder/decoder on one latent frame's worth of input at a time
with its causal feature cache carried between pushes, the same loop as
``AutoencoderKLWan._encode``/``_decode`` but spread over calls.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from torch import Tensor

from cospeech.errors import CheckpointError, InputError
from cospeech.models.checkpoint_checks import mismatch_report, refuse_pickles_in
from cospeech.models.vae.base import (
    DecodeStream,
    EncodeStream,
    VideoVAE,
    check_encode_chunk,
    check_frames,
    check_latents,
)

try:
    from diffusers import AutoencoderKLWan
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d
except ImportError:  # diffusers is the optional 'wan' extra
    AutoencoderKLWan = None
    WanCausalConv3d = None


def _require_diffusers() -> None:
    if AutoencoderKLWan is None:
        raise InputError("the Wan VAE needs diffusers: pip install 'cospeech[wan]'")


class WanVAE(VideoVAE):
    """A loaded ``AutoencoderKLWan`` with Wan's latent normalisation, strides 4 x 8 x 8."""

    def __init__(self, vae: AutoencoderKLWan) -> None:
        _require_diffusers()
        config = vae.config
        if config.patch_size is not None or config.scale_factor_spatial != self.space_stride:
            raise CheckpointError(
                "not a Wan2.1 VAE: patchified / x16 VAEs (Wan2.2) are not supported"
            )
        if config.scale_factor_temporal != self.time_stride:
            raise CheckpointError(f"Wan VAE with time stride {config.scale_factor_temporal} != 4")
        if not len(config.latents_mean) == len(config.latents_std) == config.z_dim:
            raise CheckpointError("Wan VAE config: latents_mean/latents_std need z_dim entries")
        self.vae = vae.eval()
        self._mean = torch.tensor(config.latents_mean, dtype=torch.float32).view(1, -1, 1, 1, 1)
        self._std = torch.tensor(config.latents_std, dtype=torch.float32).view(1, -1, 1, 1, 1)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> WanVAE:
        """Load a diffusers-layout folder (or a pipeline folder with a ``vae/`` subfolder).

        Only safetensors weights are read; nothing is downloaded.
        """
        _require_diffusers()
        folder = Path(path)
        if (folder / "vae" / "config.json").is_file():
            folder = folder / "vae"
        if not (folder / "config.json").is_file():
            raise CheckpointError(f"{path}: no config.json of a diffusers AutoencoderKLWan")
        if not any(folder.glob("*.safetensors")):
            refuse_pickles_in(folder)
            raise CheckpointError(f"{folder}: no .safetensors weights (other formats are refused)")
        try:
            vae = AutoencoderKLWan.from_pretrained(
                folder, torch_dtype=dtype, use_safetensors=True, local_files_only=True
            )
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise CheckpointError(f"{folder}: cannot load the Wan VAE ({exc})") from None
        _check_keys(folder, set(vae.state_dict()))
        return cls(vae.to(device))

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.z_dim)

    @property
    def device(self) -> torch.device:
        return self.vae.post_quant_conv.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.vae.post_quant_conv.weight.dtype

    def normalize(self, mean: Tensor) -> Tensor:
        """Posterior means -> normalised latents (float32)."""
        return (mean.float() - self._mean.to(mean.device)) / self._std.to(mean.device)

    def denormalize(self, latents: Tensor) -> Tensor:
        """Normalised latents -> posterior-mean scale, in the VAE's dtype."""
        raw = latents.float() * self._std.to(latents.device) + self._mean.to(latents.device)
        return raw.to(self.dtype)

    def encode(self, frames: Tensor) -> Tensor:
        """Frames ``[B, 3, F, H, W]`` in [-1, 1] -> normalised latents (diffusers' encode)."""
        check_frames(frames)
        posterior = self.vae.encode(frames.to(device=self.device, dtype=self.dtype)).latent_dist
        return self.normalize(posterior.mode())

    def decode(self, latents: Tensor) -> Tensor:
        """Normalised latents -> frames in [-1, 1], float32 (diffusers' decode, clamped)."""
        check_latents(latents, self.latent_channels)
        return self.vae.decode(self.denormalize(latents.to(self.device))).sample.float()

    def encode_stream(self) -> EncodeStream:
        return _WanEncodeStream(self)

    def decode_stream(self) -> DecodeStream:
        return _WanDecodeStream(self)


def _check_keys(folder: Path, expected: set[str]) -> None:
    """CheckpointError listing keys the model lacks or the files lack (diffusers only warns)."""
    found: set[str] = set()
    for file in folder.glob("*.safetensors"):
        with safe_open(str(file), framework="pt") as handle:
            found.update(handle.keys())
    problems = mismatch_report(missing=expected - found, unexpected=found - expected)
    if problems:
        raise CheckpointError(f"{folder}: Wan VAE weights do not match its config: {problems}")


def _causal_conv_count(module: torch.nn.Module) -> int:
    return sum(isinstance(m, WanCausalConv3d) for m in module.modules())


class _WanEncodeStream(EncodeStream):
    def __init__(self, wan: WanVAE) -> None:
        self.wan = wan
        self.cache: list = [None] * _causal_conv_count(wan.vae.encoder)
        self.started = False

    def push(self, frames: Tensor) -> Tensor:
        check_encode_chunk(frames, not self.started, self.wan.space_stride, self.wan.time_stride)
        x = frames.to(device=self.wan.device, dtype=self.wan.dtype)
        pieces = []
        if not self.started:
            pieces.append(x[:, :, :1])
            x = x[:, :, 1:]
            self.started = True
        if x.shape[2]:
            pieces.extend(x.split(self.wan.time_stride, dim=2))
        outs = []
        for piece in pieces:
            outs.append(self.wan.vae.encoder(piece, feat_cache=self.cache, feat_idx=[0]))
        params = self.wan.vae.quant_conv(torch.cat(outs, dim=2))
        return self.wan.normalize(params[:, : self.wan.latent_channels])


class _WanDecodeStream(DecodeStream):
    def __init__(self, wan: WanVAE) -> None:
        self.wan = wan
        self.cache: list = [None] * _causal_conv_count(wan.vae.decoder)
        self.started = False

    def push(self, latents: Tensor) -> Tensor:
        check_latents(latents, self.wan.latent_channels)
        x = self.wan.vae.post_quant_conv(self.wan.denormalize(latents.to(self.wan.device)))
        outs = []
        for piece in x.split(1, dim=2):
            outs.append(
                self.wan.vae.decoder(
                    piece, feat_cache=self.cache, feat_idx=[0], first_chunk=not self.started
                )
            )
            self.started = True
        return torch.cat(outs, dim=2).clamp(-1.0, 1.0).float()
