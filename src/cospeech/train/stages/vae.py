"""Training stage ``vae``: TinyVideoVAE reconstructing windows of a clip dataset.

Each update reconstructs random ``crop x crop`` patches (multiples of 8) of ``frames``-frame
windows; the VAE is fully convolutional, so patches train the same weights four to sixteen
times cheaper than whole frames. With ``mouth_crops`` a share of the updates cuts each
window's patch around its lips instead, so the few pixels that carry lip sync get trained
as often as the rest of the frame. The loss is :func:`cospeech.models.vae.loss.vae_loss`
(L1 + SSIM + edge + tiny KL; no downloaded networks). The export measures per-channel
latent statistics on training windows (so exported latents are normalised) and writes
``save_pretrained``.

    cospeech train vae --out runs/vae --set stage.data=corpus/
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from cospeech.data.dataset import ClipDataset
from cospeech.errors import InputError, check_range
from cospeech.latent_geometry import SPACE_STRIDE, TIME_STRIDE
from cospeech.media.pixels import tensor_to_pixels
from cospeech.models.vae import TinyVideoVAE
from cospeech.models.vae.loss import VAELossWeights, vae_loss
from cospeech.pose.schema import MOUTH
from cospeech.train.config import OptimConfig, TrainConfig
from cospeech.train.region_weights import check_region_weights, region_weight_maps

SAMPLE_SEED = 12345


@dataclass
class Config:
    """The ``stage:`` section of a VAE run.

    ``init``: a ``save_pretrained`` folder to start from instead of random weights (its
    preset then wins); ``train_encoder: false`` freezes the encoder, so latents already
    cached for a teacher stay valid while the decoder keeps improving. ``crop`` is the side
    of the random training patch (0 = whole frames); ``stats_windows`` windows of the
    training split measure the latent statistics at export; ``sample_clips`` validation
    clips make the periodic reconstruction videos. ``region_weights``
    (``{"face": 4.0, "mouth": 40.0}``) add that much weight to the L1 and gradient terms on
    the 8 x 8 cells of each frame that lie in the region or around the lips
    (:mod:`cospeech.train.region_weights`);
    ``mouth_crops``: the share of updates whose patches are cut around each window's lips
    (:func:`mouth_crop`) instead of at one random place.
    """

    data: str = "corpus"
    preset: str = "demo"
    init: str = ""
    train_encoder: bool = True
    frames: int = 9
    size: int = 128
    crop: int = 64
    cache_bytes: int = 2_000_000_000
    stats_windows: int = 64
    sample_clips: int = 2
    region_weights: dict[str, float] = field(default_factory=dict)
    mouth_crops: float = 0.0
    loss: VAELossWeights = field(default_factory=VAELossWeights)


def default_train_config() -> TrainConfig:
    return TrainConfig(
        steps=3000,
        batch_size=4,
        ema_decay=0.999,
        checkpoint_every=100,
        log_every=10,
        sample_every=500,
        optim=OptimConfig(lr=4e-4, warmup_steps=100, grad_clip=1.0),
    )


def random_crop(video: torch.Tensor, crop: int, *more: torch.Tensor) -> list[torch.Tensor]:
    """The same random ``crop x crop`` patch (corner on the 8-pixel grid) of ``video``
    ``[B, C, F, H, W]`` and of each of ``more`` (same ``H, W``), for the whole batch; draws
    from torch's global RNG. ``crop == 0`` (or a crop as large as the frame): whole."""
    height, width = video.shape[-2:]
    if crop <= 0 or crop >= min(height, width):
        return [video, *more]
    top = int(torch.randint(0, (height - crop) // SPACE_STRIDE + 1, ())) * SPACE_STRIDE
    left = int(torch.randint(0, (width - crop) // SPACE_STRIDE + 1, ())) * SPACE_STRIDE
    return [x[..., top : top + crop, left : left + crop] for x in (video, *more)]


def mouth_crop(
    video: torch.Tensor, crop: int, keypoints: torch.Tensor, *more: torch.Tensor
) -> list[torch.Tensor]:
    """Per window, a ``crop x crop`` patch of ``video`` ``[B, C, F, H, W]`` (and alike of
    each of ``more``) around the lips of ``keypoints`` ``[B, F, 133, 3]`` (pixels): centred
    on the middle frame's lip centre, shifted by up to a quarter of the crop at random
    (torch's global RNG), corner snapped to the 8-pixel grid and kept inside the frame.
    Windows without confident lips get a random patch."""
    height, width = video.shape[-2:]
    if crop <= 0 or crop >= min(height, width):
        return [video, *more]
    lips = keypoints[:, keypoints.shape[1] // 2, list(MOUTH)]  # [B, 20, 3]
    patches: list[list[torch.Tensor]] = [[] for _ in range(1 + len(more))]
    for index, window_lips in enumerate(lips):
        jitter = torch.randint(-(crop // 4), crop // 4 + 1, (2,))
        seen = window_lips[:, 2] > 0
        if seen.any():
            centre = window_lips[seen, :2].mean(dim=0)
            left, top = (float(c) - crop / 2 + int(j) for c, j in zip(centre, jitter, strict=True))
        else:
            left, top = (float(torch.randint(0, side - crop + 1, ())) for side in (width, height))
        top = _snap(top, height - crop)
        left = _snap(left, width - crop)
        for out, x in zip(patches, (video, *more), strict=True):
            out.append(x[index, ..., top : top + crop, left : left + crop])
    return [torch.stack(out) for out in patches]


def _snap(corner: float, highest: int) -> int:
    """``corner`` rounded to the 8-pixel grid and clamped to ``[0, highest]``."""
    grid_max = highest // SPACE_STRIDE * SPACE_STRIDE
    return min(max(round(corner / SPACE_STRIDE) * SPACE_STRIDE, 0), grid_max)


def check_config(config: Config) -> None:
    """:class:`InputError` naming the option (``stage.crop``) when a value is out of range,
    or when ``mouth_crops`` is set without patches (it would do nothing)."""
    if config.frames < 1 or (config.frames - 1) % TIME_STRIDE:
        raise InputError(f"stage.frames must be 1 + {TIME_STRIDE}k, got {config.frames}")
    if config.size < SPACE_STRIDE or config.size % SPACE_STRIDE:
        raise InputError(f"stage.size must be a multiple of {SPACE_STRIDE}, got {config.size}")
    if config.crop < 0 or config.crop % SPACE_STRIDE:
        raise InputError(
            f"stage.crop must be 0 (whole frames) or a multiple of {SPACE_STRIDE}, "
            f"got {config.crop}"
        )
    for name, low in (("cache_bytes", 0), ("stats_windows", 1), ("sample_clips", 0)):
        check_range(f"stage.{name}", getattr(config, name), low)
    check_range("stage.mouth_crops", config.mouth_crops, 0, 1)
    if config.mouth_crops > 0 and not 0 < config.crop < config.size:
        raise InputError(
            "stage.mouth_crops does nothing without patches: set stage.crop between 0 and "
            f"stage.size ({config.size})"
        )


class VAEStage:
    """The ``vae`` stage (see the module docstring)."""

    name = "vae"

    def __init__(self, config: Config) -> None:
        check_config(config)
        config.region_weights = check_region_weights(
            config.region_weights, "stage vae: region_weights"
        )
        self.config = config

    def _dataset(self, split: str, seed: int = 0) -> ClipDataset:
        cfg = self.config
        if not (Path(cfg.data) / "manifest.jsonl").is_file():
            raise InputError(f"stage vae: {cfg.data} is not a dataset (no manifest.jsonl)")
        return ClipDataset(
            cfg.data, split, frames=cfg.frames, size=cfg.size, with_pose_maps=False,
            with_audio=False, seed=seed, cache_bytes=cfg.cache_bytes,
        )  # fmt: skip

    def build_model(self) -> nn.Module:
        cfg = self.config
        model = (
            TinyVideoVAE.from_pretrained(cfg.init).train()
            if cfg.init
            else TinyVideoVAE.from_preset(cfg.preset)
        )
        model.encoder.requires_grad_(cfg.train_encoder)
        return model

    def build_dataset(self) -> Dataset:
        return self._dataset("train")

    def loss(
        self, model: nn.Module, batch: dict, step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        video, keypoints = batch["video"], batch["keypoints"]
        more = []
        if cfg.region_weights:
            cells = region_weight_maps(
                keypoints, tuple(video.shape[-2:]), cfg.region_weights, 1, SPACE_STRIDE
            )  # [B, 1, F, H / 8, W / 8]
            more = [cells.repeat_interleave(SPACE_STRIDE, -2).repeat_interleave(SPACE_STRIDE, -1)]
        if cfg.mouth_crops > 0 and float(torch.rand(())) < cfg.mouth_crops:
            video, *more = mouth_crop(video, cfg.crop, keypoints, *more)
        else:
            video, *more = random_crop(video, cfg.crop, *more)
        pixel_weights = more[0] if more else None
        out = model(video)
        terms = vae_loss(video, out.recon, out.mean, out.logvar, cfg.loss, pixel_weights)
        metrics = terms.as_dict()
        metrics.pop("total")
        return terms.total, metrics

    def sample(self, model: nn.Module, step: int) -> dict[str, np.ndarray]:
        """Ground truth (left) beside the reconstruction (right), per validation clip."""
        dataset = self._dataset("val", seed=SAMPLE_SEED)
        device = next(model.parameters()).device
        videos = {}
        for index in range(min(self.config.sample_clips, len(dataset))):
            item = dataset[index]
            video = item["video"][None].to(device)
            recon = model.decode(model.encode(video))[0]
            both = torch.cat([video[0], recon.to(video.dtype)], dim=-1)
            videos[str(item["clip"])] = tensor_to_pixels(both)
        return videos

    @torch.no_grad()
    def latent_statistics(self, model: TinyVideoVAE) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std ``[C]`` of raw posterior means on training windows."""
        dataset = self._dataset("train", seed=SAMPLE_SEED)
        device = next(model.parameters()).device
        count = min(self.config.stats_windows, len(dataset))
        means = []
        for index in np.linspace(0, len(dataset) - 1, count).round().astype(int):
            mean, _ = model.encode_posterior(dataset[int(index)]["video"][None].to(device))
            means.append(mean.transpose(0, 1).flatten(1))
        values = torch.cat(means, dim=1).double()
        return values.mean(dim=1).float(), values.std(dim=1).clamp_min(1e-6).float()

    def export(self, model: nn.Module, out_dir: Path) -> None:
        was_training = model.training
        model.eval()
        mean, std = self.latent_statistics(model)
        model.set_latent_statistics(mean, std)
        model.save_pretrained(out_dir)
        model.train(was_training)


def build_stage(config: Config) -> VAEStage:
    return VAEStage(config)
