"""TinyVideoVAE: a small causal video autoencoder with the strides of the Wan2.1 VAE.

Space: x2 pixel-to-channel stem, two x2 down levels (x8 in all). Time: one x4 grouping
at the lowest resolution, frame 0 alone, so latents have ``1 + (F - 1) / 4`` frames like
Wan's. Every residual block mixes time only causally (a temporal kernel over the current
and past frames), so chunked encoding and decoding carry a small per-layer state and equal
the one-piece result. Latents are returned normalised by per-channel statistics stored with
the weights (:meth:`TinyVideoVAE.set_latent_statistics`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from cospeech.atomic import atomic_path
from cospeech.config import from_dict, load_config, to_dict
from cospeech.errors import CheckpointError, InputError
from cospeech.jsonfile import read_json, write_json
from cospeech.models.checkpoint_checks import mismatch_report, refuse_pickles_in
from cospeech.models.vae.base import (
    DecodeStream,
    EncodeStream,
    VideoVAE,
    check_encode_chunk,
    check_frames,
    check_latents,
)
from cospeech.models.vae.layers import (
    CausalState,
    ChannelNorm,
    FrameConv,
    ResBlock,
    SpaceDown,
    SpaceUp,
    TimeDown,
    TimeUp,
    depth_to_space,
    space_to_depth,
)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
LOGVAR_RANGE = (-30.0, 20.0)


@dataclass
class TinyVAEConfig:
    """Shape of a TinyVideoVAE.

    ``widths`` are the channel counts at 1/2, 1/4 and 1/8 of the frame size; ``blocks`` the
    residual blocks per level that run at the frame rate (both in encoder and decoder);
    ``latent_blocks`` those that run at the latent frame rate, at 1/8 size.
    """

    latent_channels: int = 16
    widths: tuple[int, int, int] = (32, 64, 128)
    blocks: tuple[int, int, int] = (0, 1, 1)
    latent_blocks: int = 2
    temporal_kernel: int = 3

    def __post_init__(self) -> None:
        if len(self.widths) != 3 or len(self.blocks) != 3:
            raise InputError("TinyVAEConfig: widths and blocks need one entry per level (3)")
        if min(self.widths) < 1 or self.latent_channels < 1 or self.temporal_kernel < 1:
            raise InputError("TinyVAEConfig: channel counts and kernel must be >= 1")


TINY_VAE_PRESETS: dict[str, TinyVAEConfig] = {
    "tiny": TinyVAEConfig(latent_channels=4, widths=(8, 16, 16), blocks=(1, 1, 1)),
    "demo": TinyVAEConfig(),
}


@dataclass
class VAEOutput:
    """A training forward pass: raw reconstruction and the posterior, unnormalised.

    ``recon`` ``[B, 3, F, H, W]`` (not clamped); ``mean``, ``logvar`` ``[B, C, T, h, w]``.
    """

    recon: Tensor
    mean: Tensor
    logvar: Tensor


class TinyEncoder(nn.Module):
    """Frames ``[B * F, H, W, 3]`` -> posterior parameters ``[B * T, H/8, W/8, 2C]``."""

    def __init__(self, config: TinyVAEConfig) -> None:
        super().__init__()
        w0, w1, w2 = config.widths
        k = config.temporal_kernel
        self.stem = FrameConv(12, w0)
        self.level0 = nn.ModuleList(ResBlock(w0, k) for _ in range(config.blocks[0]))
        self.down0 = SpaceDown(w0, w1)
        self.level1 = nn.ModuleList(ResBlock(w1, k) for _ in range(config.blocks[1]))
        self.down1 = SpaceDown(w1, w2)
        self.level2 = nn.ModuleList(ResBlock(w2, k) for _ in range(config.blocks[2]))
        self.time_down = TimeDown(w2, w2, VideoVAE.time_stride)
        self.latent = nn.ModuleList(ResBlock(w2, k) for _ in range(config.latent_blocks))
        self.norm_out = ChannelNorm(w2)
        self.head = FrameConv(w2, 2 * config.latent_channels)

    def forward(self, x: Tensor, state: CausalState) -> Tensor:
        x = self.stem(space_to_depth(x))
        x = self.down0(_run(self.level0, x, state))
        x = self.down1(_run(self.level1, x, state))
        x = self.time_down(_run(self.level2, x, state), state)
        x = _run(self.latent, x, state)
        return self.head(F.silu(self.norm_out(x)))


class TinyDecoder(nn.Module):
    """Latents ``[B * T, h, w, C]`` -> frames ``[B * F, 8h, 8w, 3]`` (unclamped)."""

    def __init__(self, config: TinyVAEConfig) -> None:
        super().__init__()
        w0, w1, w2 = config.widths
        k = config.temporal_kernel
        self.conv_in = FrameConv(config.latent_channels, w2)
        self.latent = nn.ModuleList(ResBlock(w2, k) for _ in range(config.latent_blocks))
        self.time_up = TimeUp(w2, w2, VideoVAE.time_stride)
        self.level2 = nn.ModuleList(ResBlock(w2, k) for _ in range(config.blocks[2]))
        self.up1 = SpaceUp(w2, w1)
        self.level1 = nn.ModuleList(ResBlock(w1, k) for _ in range(config.blocks[1]))
        self.up0 = SpaceUp(w1, w0)
        self.level0 = nn.ModuleList(ResBlock(w0, k) for _ in range(config.blocks[0]))
        self.norm_out = ChannelNorm(w0)
        self.head = FrameConv(w0, 12)

    def forward(self, z: Tensor, state: CausalState) -> Tensor:
        x = _run(self.latent, self.conv_in(z), state)
        x = _run(self.level2, self.time_up(x, state), state)
        x = _run(self.level1, self.up1(x), state)
        x = _run(self.level0, self.up0(x), state)
        return depth_to_space(self.head(F.silu(self.norm_out(x))))


def _run(blocks: nn.ModuleList, x: Tensor, state: CausalState) -> Tensor:
    for block in blocks:
        x = block(x, state)
    return x


class TinyVideoVAE(nn.Module, VideoVAE):
    """Our causal video VAE (strides 4 x 8 x 8, frame 0 alone), behind :class:`VideoVAE`.

    ``encode``/``decode`` work on normalised latents (``(mean - mu_c) / sigma_c`` per
    channel, statistics in the buffers ``latents_mean``/``latents_std``); ``forward`` is the
    training pass on raw latents. Outputs are float32; inputs are cast to the weights' dtype.
    """

    def __init__(self, config: TinyVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = TinyEncoder(config)
        self.decoder = TinyDecoder(config)
        self.register_buffer("latents_mean", torch.zeros(config.latent_channels))
        self.register_buffer("latents_std", torch.ones(config.latent_channels))

    @classmethod
    def from_preset(
        cls, preset: str | Path | Mapping[str, Any] = "demo", overrides: list[str] | None = None
    ) -> TinyVideoVAE:
        """A randomly initialised model from a preset name, a YAML file or a dict."""
        return cls(load_config(TinyVAEConfig, preset, TINY_VAE_PRESETS, overrides))

    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    @property
    def _weight(self) -> Tensor:
        return self.decoder.head.conv.weight

    # --- raw (unnormalised) passes -----------------------------------------------------

    def encode_posterior(
        self, frames: Tensor, state: CausalState | None = None
    ) -> tuple[Tensor, Tensor]:
        """Frames ``[B, 3, F, H, W]`` -> raw posterior ``(mean, logvar)``, ``[B, C, T, h, w]``."""
        state = state or CausalState(frames.shape[0])
        params = self.encoder(_to_stack(frames.to(self._weight)), state)
        params = _from_stack(params, frames.shape[0])
        mean, logvar = params.chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def decode_raw(self, z: Tensor, state: CausalState | None = None) -> Tensor:
        """Raw latents ``[B, C, T, h, w]`` -> unclamped frames ``[B, 3, F, 8h, 8w]``."""
        state = state or CausalState(z.shape[0])
        return _from_stack(self.decoder(_to_stack(z.to(self._weight)), state), z.shape[0])

    def forward(
        self, frames: Tensor, sample: bool = True, generator: torch.Generator | None = None
    ) -> VAEOutput:
        """Training pass: encode, draw ``z`` from the posterior (or take its mean), decode."""
        check_frames(frames)
        mean, logvar = self.encode_posterior(frames)
        z = mean
        if sample:
            eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            z = mean + torch.exp(0.5 * logvar) * eps
        return VAEOutput(self.decode_raw(z), mean, logvar)

    # --- normalised latents -------------------------------------------------------------

    def normalize(self, mean: Tensor) -> Tensor:
        """Raw latents -> normalised latents ``(z - mu_c) / sigma_c``."""
        return (mean - _per_channel(self.latents_mean)) / _per_channel(self.latents_std)

    def denormalize(self, latents: Tensor) -> Tensor:
        """Normalised latents -> raw latents."""
        return latents * _per_channel(self.latents_std) + _per_channel(self.latents_mean)

    def set_latent_statistics(self, mean: Tensor, std: Tensor) -> None:
        """Store per-channel statistics ``[C]`` of raw latents (posterior means) on data."""
        c = self.latent_channels
        if mean.shape != (c,) or std.shape != (c,) or not bool((std > 0).all()):
            raise InputError(f"latent statistics must be [{c}] with std > 0")
        self.latents_mean.copy_(mean)
        self.latents_std.copy_(std)

    @torch.no_grad()
    def fit_latent_statistics(self, videos: Iterable[Tensor]) -> tuple[Tensor, Tensor]:
        """Measure and store per-channel mean/std of posterior means over ``videos``.

        ``videos`` yields frame batches ``[B, 3, F, H, W]``; afterwards ``encode`` of that
        data has zero mean and unit variance per channel. Returns ``(mean, std)``, ``[C]``.
        """
        count, total, total_sq = 0, 0.0, 0.0
        for frames in videos:
            check_frames(frames)
            mean = self.encode_posterior(frames)[0].double()
            count += mean.numel() // mean.shape[1]
            total = total + mean.sum(dim=(0, 2, 3, 4))
            total_sq = total_sq + (mean**2).sum(dim=(0, 2, 3, 4))
        if count == 0:
            raise InputError("no videos to measure latent statistics on")
        channel_mean = total / count
        channel_std = (total_sq / count - channel_mean**2).clamp_min(1e-12).sqrt()
        self.set_latent_statistics(channel_mean.float(), channel_std.float())
        return self.latents_mean.clone(), self.latents_std.clone()

    def encode(self, frames: Tensor) -> Tensor:
        """Frames ``[B, 3, F, H, W]`` in [-1, 1] -> normalised latents ``[B, C, T, h, w]``.

        Runs one latent frame's worth of frames at a time through the causal stream (the
        same result as one piece, with a small working set: several times faster on CPU).
        """
        check_frames(frames)
        stream, stride = self.encode_stream(), self.time_stride
        chunks = [frames[:, :, :1], *frames[:, :, 1:].split(stride, dim=2)]
        return torch.cat([stream.push(chunk) for chunk in chunks if chunk.shape[2]], dim=2)

    def decode(self, latents: Tensor) -> Tensor:
        """Normalised latents ``[B, C, T, h, w]`` -> frames ``[B, 3, 1 + 4(T-1), 8h, 8w]``.

        Decodes latent frame by latent frame through the causal stream (see ``encode``).
        """
        check_latents(latents, self.latent_channels)
        stream = self.decode_stream()
        return torch.cat([stream.push(chunk) for chunk in latents.split(1, dim=2)], dim=2)

    def encode_stream(self) -> EncodeStream:
        return _TinyEncodeStream(self)

    def decode_stream(self) -> DecodeStream:
        return _TinyDecodeStream(self)

    # --- checkpoints -----------------------------------------------------------------------

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> None:
        """Write ``config.json`` and ``model.safetensors`` (cast to ``dtype`` if given)."""
        folder = Path(path)
        tensors = {
            k: (v.to(dtype) if dtype is not None else v).detach().cpu().contiguous()
            for k, v in self.state_dict().items()
        }
        with atomic_path(folder / WEIGHTS_FILE) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt"})
        write_json(folder / CONFIG_FILE, to_dict(self.config))

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> TinyVideoVAE:
        """Load a folder written by :meth:`save_pretrained` (safetensors only)."""
        folder = Path(path)
        config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
        if not weights_path.is_file() and folder.is_dir():
            refuse_pickles_in(folder)
        for needed in (config_path, weights_path):
            if not needed.is_file():
                raise CheckpointError(f"{folder}: no {needed.name} (not a TinyVideoVAE folder)")
        config_data = read_json(config_path, CheckpointError)
        try:
            config = from_dict(TinyVAEConfig, config_data)
        except InputError as exc:
            raise CheckpointError(f"{config_path}: {exc}") from None
        model = cls(config)
        try:
            tensors = load_file(str(weights_path))
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(
                f"{weights_path}: not a readable safetensors file ({exc})"
            ) from None
        _check_state(model.state_dict(), tensors, weights_path)
        model.load_state_dict(tensors)
        return model.to(device=device, dtype=dtype).eval()


class _TinyEncodeStream(EncodeStream):
    def __init__(self, vae: TinyVideoVAE) -> None:
        self.vae = vae
        self.state: CausalState | None = None

    def push(self, frames: Tensor) -> Tensor:
        first = self.state is None
        check_encode_chunk(frames, first, self.vae.space_stride, self.vae.time_stride)
        if first:
            self.state = CausalState(frames.shape[0])
        mean, _ = self.vae.encode_posterior(frames, self.state)
        return self.vae.normalize(mean).float()


class _TinyDecodeStream(DecodeStream):
    def __init__(self, vae: TinyVideoVAE) -> None:
        self.vae = vae
        self.state: CausalState | None = None

    def push(self, latents: Tensor) -> Tensor:
        check_latents(latents, self.vae.latent_channels)
        if self.state is None:
            self.state = CausalState(latents.shape[0])
        frames = self.vae.decode_raw(self.vae.denormalize(latents), self.state)
        return frames.clamp(-1.0, 1.0).float()


def _to_stack(video: Tensor) -> Tensor:
    """``[B, C, F, H, W]`` -> channels-last frame stack ``[B * F, H, W, C]``."""
    return video.permute(0, 2, 3, 4, 1).flatten(0, 1).contiguous()


def _from_stack(stack: Tensor, batch: int) -> Tensor:
    """``[B * F, H, W, C]`` -> ``[B, C, F, H, W]``."""
    return stack.view(batch, -1, *stack.shape[1:]).permute(0, 4, 1, 2, 3).contiguous()


def _per_channel(values: Tensor) -> Tensor:
    return values.view(1, -1, 1, 1, 1)


def _check_state(expected: Mapping[str, Tensor], found: Mapping[str, Tensor], where: Path) -> None:
    """CheckpointError listing missing/unexpected keys and shape mismatches."""
    problems = mismatch_report(
        missing=set(expected) - set(found),
        unexpected=set(found) - set(expected),
        wrong=[
            f"{k} {list(found[k].shape)} != {list(expected[k].shape)}"
            for k in set(expected) & set(found)
            if found[k].shape != expected[k].shape
        ],
    )
    if problems:
        raise CheckpointError(f"{where}: {problems}")
