"""Training stage ``teacher``: the bidirectional pose-conditioned video DiT (flow matching).

The teacher learns the flow ``noise - x0`` of VAE latents of speaker videos, given the
pose maps of the window, the identity's reference photo (its latent in the Wan I2V
conditioning slot, :mod:`cospeech.models.i2v`) and the reference's pose map.
All conditions are dropped together with probability ``cond_dropout`` so that guidance
has an unconditional branch.

**Latents as the generator sees them.** Each training clip is encoded once, whole, by the
causal VAE: latent ``0`` is frame 0, latent ``k`` frames ``4k-3..4k``. Training windows
are slices of ``W`` consecutive latents starting at any ``s``, the windows that long-video
generation (:mod:`cospeech.pipeline.windows`) cuts from one long latent sequence. Their
pose maps are frames ``4s .. 4(s+W-1)``: latent ``s + i`` (i >= 1) covers frames
``4(s+i)-3 .. 4(s+i)``, exactly the pose encoder's clip-start convention, and the first
latent of the window gets the last frame of its group. The cache (``latents`` folder)
holds those slices in :class:`cospeech.data.dataset.ClipDataset`'s format (``starts`` =
``4s``) plus ``references.safetensors`` (each clip's reference latent); it is built on the
first run (by rank 0 under torchrun) and reused after.

    cospeech train teacher --out runs/teacher --set stage.data=corpus/ \
        --set stage.vae=runs/vae/final-ema --set stage.latents=cache/teacher
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import Dataset

from cospeech.atomic import atomic_path
from cospeech.data.clip_reader import read_frames
from cospeech.data.dataset import ClipDataset, ClipInfo, read_clips, spread_over_identities
from cospeech.data.manifest import MANIFEST_NAME, VIDEO_NAME
from cospeech.diffusion import FlowModel, Guidance, add_noise, sample_euler, sample_training_sigmas
from cospeech.diffusion.schedule import sampling_sigmas, sigma_to_timestep
from cospeech.errors import InputError, check_range
from cospeech.latent_geometry import SPACE_STRIDE, TIME_STRIDE, latent_frames, video_frames
from cospeech.media.pixels import pixels_to_tensor, tensor_to_pixels
from cospeech.models import VideoDiT, load_video_dit_config
from cospeech.models.i2v import (
    CONDITION_NAMES,
    MASK_CHANNELS,
    ConditionedFlow,
    drop_conditions,
    reference_slot,
)
from cospeech.models.vae import TinyVideoVAE
from cospeech.models.vae.tiny import CONFIG_FILE as VAE_CONFIG
from cospeech.pose.extract import read_image
from cospeech.progress import track
from cospeech.shipped import ASSETS, VAE_DIR
from cospeech.train.config import OptimConfig, TrainConfig, check_fraction, check_positive
from cospeech.train.lora import without_lora
from cospeech.train.region_weights import check_region_weights, region_weight_maps, weighted_mse

REFERENCES_FILE = "references.safetensors"
BUNDLED_VAE = ASSETS / VAE_DIR  # the demo VAE the shipped teacher was trained with
SAMPLE_SEED = 4242


@dataclass
class Config:
    """The ``stage:`` section of a teacher run.

    ``model``: a VideoDiT preset name or YAML file; ``vae``: a TinyVideoVAE folder
    (``save_pretrained``); ``latents``: the latent cache folder (built when missing);
    ``frames``: video frames per window (1 + 4(W - 1) for W latent frames);
    ``window_stride``: latent frames between cached window starts; ``cache_clips`` /
    ``cache_frames``: cache at most that many training clips (spread over identities) and
    leading frames of each (0 = all; encoding is the costly part on a CPU); ``shift``: the
    timestep shift of training noise levels; ``region_weights``: extra loss weight of the
    latents inside body regions or around the lips (``{"face": 4.0}``: face latents count
    5x, the rest 1x; ``"mouth"`` for the lips; :mod:`cospeech.train.region_weights`);
    ``sample_*``: the periodic sample videos.
    """

    data: str = "corpus"
    vae: str = "vae"
    latents: str = "latents"
    model: str = "demo"
    frames: int = 9
    size: int = 128
    window_stride: int = 1
    cache_clips: int = 0
    cache_frames: int = 0
    shift: float = 1.0
    cond_dropout: float = 0.1
    region_weights: dict[str, float] = field(default_factory=dict)
    cache_bytes: int = 2_000_000_000
    sample_clips: int = 1
    sample_steps: int = 20
    sample_shift: float = 3.0
    sample_guidance: float = 1.0


def default_train_config() -> TrainConfig:
    return TrainConfig(
        steps=3200,
        batch_size=4,
        ema_decay=0.99,
        checkpoint_every=50,
        log_every=10,
        sample_every=300,
        optim=OptimConfig(lr=5e-4, warmup_steps=50, grad_clip=1.0),
    )


# --------------------------------------------------------------------------- latent cache
def _read_clip(clip: ClipInfo, size: int, max_frames: int) -> torch.Tensor:
    """The clip's ``1 + 4k`` leading frames (at most ``max_frames``, 0 = all) as
    ``[1, 3, F, size, size]`` in [-1, 1]."""
    frames = min(clip.frames, max_frames) if max_frames > 0 else clip.frames
    usable = 1 + TIME_STRIDE * ((frames - 1) // TIME_STRIDE)
    frames = read_frames(clip.folder / VIDEO_NAME, 0, usable)
    return pixels_to_tensor(np.stack([_resize(f, size) for f in frames]))[None]


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[:2] == (size, size):
        return image
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


@torch.no_grad()
def build_latent_cache(
    data: str | Path,
    split: str,
    vae: TinyVideoVAE,
    out_dir: str | Path,
    window_latents: int,
    size: int,
    stride: int = 1,
    max_clips: int = 0,
    max_frames: int = 0,
    progress: bool = True,
) -> Path:
    """Encode clips of ``split`` whole and store their ``window_latents``-frame slices.

    ``max_clips`` / ``max_frames`` (0 = all) limit the clips (spread over identities) and the
    leading frames encoded per clip.

    Writes ``<out_dir>/<clip>.safetensors`` (``latents`` float16 ``[N, C, W, h, w]``,
    ``starts`` int64 ``[N]`` = 4 x the first latent index) for each clip not yet cached, and
    ``references.safetensors`` (clip id -> reference latent ``[C, 1, h, w]``). Clips too
    short for one window are skipped. Returns ``out_dir``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clips = spread_over_identities(read_clips(data, split), max_clips)
    references: dict[str, torch.Tensor] = {}
    encoded_refs: dict[Path, torch.Tensor] = {}
    for clip in track(clips, "latent cache", unit="clip", enabled=progress):
        if clip.reference_image is None:
            raise InputError(f"clip {clip.clip_id}: the teacher needs an identity reference photo")
        if clip.reference_image not in encoded_refs:
            image = _resize(read_image(clip.reference_image), size)
            reference = pixels_to_tensor(image[None])[None]  # [1, 3, 1, size, size]
            encoded_refs[clip.reference_image] = vae.encode(reference)[0].half()
        references[clip.clip_id] = encoded_refs[clip.reference_image]
        path = out_dir / f"{clip.clip_id}.safetensors"
        if path.is_file() or clip.frames < video_frames(window_latents):
            continue
        latents = vae.encode(_read_clip(clip, size, max_frames))[0]
        starts = list(range(0, latents.shape[1] - window_latents + 1, stride))
        windows = torch.stack([latents[:, s : s + window_latents] for s in starts])
        with atomic_path(path) as tmp:
            save_file(
                {"latents": windows.half().contiguous(),
                 "starts": torch.tensor(starts, dtype=torch.int64) * TIME_STRIDE},
                str(tmp),
            )  # fmt: skip
    with atomic_path(out_dir / REFERENCES_FILE) as tmp:
        save_file({k: v.clone() for k, v in references.items()}, str(tmp))
    return out_dir


class TeacherDataset(Dataset):
    """Cached latent windows with their conditions.

    Item: ``latents`` ``[C, W, h, w]`` float32, ``reference_latent`` ``[C, 1, h, w]``,
    ``pose_maps`` ``[3, 1 + 4(W-1), H, W]`` and ``reference_pose_map`` ``[3, H, W]`` in [-1, 1],
    ``keypoints`` ``[1 + 4(W-1), 133, 3]`` in pixels of the pose maps.
    """

    KEYS = ("latents", "pose_maps", "reference_pose_map", "keypoints")

    def __init__(self, clips: ClipDataset, references: dict[str, torch.Tensor]) -> None:
        self.clips = clips
        self.references = references

    def __len__(self) -> int:
        return len(self.clips)

    def set_epoch(self, epoch: int) -> None:
        self.clips.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.clips[index]
        if "latents" not in item:
            raise InputError(f"clip {item['clip']}: not in the latent cache")
        out = {key: item[key].float() for key in self.KEYS}
        out["reference_latent"] = self.references[item["clip"]].float()
        return out


# --------------------------------------------------------------------------- the stage
def check_config(config: Config) -> None:
    """:class:`InputError` naming the option (``stage.frames``) when a value is out of range,
    or when ``stage.vae`` is not a VAE folder (saying how to set it)."""
    if config.frames < 1 or (config.frames - 1) % TIME_STRIDE:
        raise InputError(f"stage.frames must be 1 + {TIME_STRIDE}k, got {config.frames}")
    if config.size < SPACE_STRIDE or config.size % SPACE_STRIDE:
        raise InputError(f"stage.size must be a multiple of {SPACE_STRIDE}, got {config.size}")
    for name, low in (("window_stride", 1), ("cache_clips", 0), ("cache_frames", 0),
                      ("cache_bytes", 0), ("sample_clips", 0), ("sample_steps", 1),
                      ("sample_guidance", 0)):  # fmt: skip
        check_range(f"stage.{name}", getattr(config, name), low)
    check_positive("stage.shift", config.shift)
    check_positive("stage.sample_shift", config.sample_shift)
    check_fraction("stage.cond_dropout", config.cond_dropout)
    if not (Path(config.vae) / VAE_CONFIG).is_file():
        raise InputError(
            f"stage teacher: {config.vae!r} is not a VAE folder (no {VAE_CONFIG}); set the VAE "
            f"the latents are made with: --vae DIR (or --set stage.vae=DIR), e.g. a vae run's "
            f"final-ema or the bundled demo VAE {BUNDLED_VAE}"
        )


class TeacherStage:
    """The ``teacher`` stage (see the module docstring)."""

    name = "teacher"

    def __init__(self, config: Config) -> None:
        check_config(config)
        config.region_weights = check_region_weights(
            config.region_weights, "stage teacher: region_weights"
        )
        self.config = config
        self._vae: TinyVideoVAE | None = None

    @property
    def window_latents(self) -> int:
        return latent_frames(self.config.frames)

    @property
    def vae(self) -> TinyVideoVAE:
        if self._vae is None:
            self._vae = TinyVideoVAE.from_pretrained(self.config.vae)
        return self._vae

    def build_model(self) -> nn.Module:
        model_config = load_video_dit_config(self.config.model)
        channels = self.vae.latent_channels
        if model_config.out_dim != channels or model_config.cond_dim != MASK_CHANNELS + channels:
            raise InputError(
                f"stage teacher: the VAE has {channels} latent channels; the model needs "
                f"out_dim {channels} and in_dim {2 * channels + MASK_CHANNELS}, has "
                f"{model_config.out_dim}/{model_config.in_dim}"
            )
        return VideoDiT(model_config)

    def _clips(self, split: str, latents: Path | None, seed: int = 0) -> ClipDataset:
        cfg = self.config
        if not (Path(cfg.data) / MANIFEST_NAME).is_file():
            raise InputError(f"stage teacher: {cfg.data} is not a dataset (no {MANIFEST_NAME})")
        return ClipDataset(
            cfg.data, split, frames=cfg.frames, size=cfg.size, with_pose_maps=True,
            with_audio=False, latents_dir=latents, seed=seed, cache_bytes=cfg.cache_bytes,
        )  # fmt: skip

    def build_dataset(self) -> Dataset:
        cfg = self.config
        latents = Path(cfg.latents)
        main = not dist.is_initialized() or dist.get_rank() == 0
        if main:
            build_latent_cache(
                cfg.data, "train", self.vae, latents, self.window_latents, cfg.size,
                cfg.window_stride, cfg.cache_clips, cfg.cache_frames,
            )  # fmt: skip
        if dist.is_initialized():
            dist.barrier()
        references = load_file(str(latents / REFERENCES_FILE))
        clips = self._clips("train", latents)
        cached = {p.stem for p in latents.glob("*.safetensors")}
        clips.clips = [c for c in clips.clips if c.clip_id in cached]
        if not clips.clips:
            raise InputError("stage teacher: no training clip has a cached latent window")
        return TeacherDataset(clips, references)

    def loss(
        self, model: nn.Module, batch: dict, step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        x0 = batch["latents"]
        conditions = drop_conditions(
            {
                "pose": batch["pose_maps"],
                "reference": reference_slot(batch["reference_latent"]),
                "ref_pose": batch["reference_pose_map"],
            },
            self.config.cond_dropout,
        )
        noise = torch.randn_like(x0)
        sigma = sample_training_sigmas(x0.shape[0], self.config.shift, device=x0.device)
        flow = ConditionedFlow(model)(
            add_noise(x0, noise, sigma), sigma_to_timestep(sigma), **conditions
        )
        if self.config.region_weights:
            weights = region_weight_maps(
                batch["keypoints"], tuple(batch["pose_maps"].shape[-2:]),
                self.config.region_weights, TIME_STRIDE, self.vae.space_stride,
            )  # fmt: skip
            loss = weighted_mse(flow, noise - x0, weights)
        else:
            loss = F.mse_loss(flow, noise - x0)
        return loss, {"sigma_mean": float(sigma.mean())}

    @torch.no_grad()
    def sample(self, model: nn.Module, step: int) -> dict[str, np.ndarray]:
        """Ground truth (left) beside a teacher sample (right) for fixed validation windows,
        from ground-truth pose."""
        cfg = self.config
        device = next(model.parameters()).device
        clips = self._clips("val", None, seed=SAMPLE_SEED)
        generator = torch.Generator().manual_seed(SAMPLE_SEED)
        guidance = Guidance(cfg.sample_guidance, drop=CONDITION_NAMES)
        videos = {}
        for index in range(min(cfg.sample_clips, len(clips))):
            item = clips[index]
            reference = self.vae.encode(item["reference"][None, :, None])
            conditions = {
                "pose": item["pose_maps"][None].to(device),
                "reference": reference_slot(reference).to(device),
                "ref_pose": item["reference_pose_map"][None].to(device),
            }
            shape = (1, self.vae.latent_channels, self.window_latents, *reference.shape[-2:])
            noise = torch.randn(shape, generator=generator).to(device)
            latents = sample_euler(
                ConditionedFlow(self.sample_model(model, item)), noise, conditions,
                sigmas=sampling_sigmas(cfg.sample_steps, cfg.sample_shift), guidance=guidance,
            )  # fmt: skip
            video = self.vae.decode(latents.cpu())[0]
            videos[str(item["clip"])] = tensor_to_pixels(torch.cat([item["video"], video], -1))
        return videos

    def sample_model(self, model: nn.Module, item: dict) -> FlowModel:
        """The model as :meth:`sample` runs it on validation ``item`` (a hook for stages
        that run it with options, e.g. a sparse plan from the item's pose)."""
        return model

    def export(self, model: nn.Module, out_dir: Path) -> None:
        """``save_pretrained`` (LoRA adapters merged into the weights)."""
        without_lora(model).save_pretrained(out_dir)


def build_stage(config: Config) -> TeacherStage:
    return TeacherStage(config)
