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

**Warp-conditioned teacher** (``stage.warp``): the model also sees the identity's
reference photo warped to every frame's ground-truth pose
(:mod:`cospeech.models.warp_condition`), in ``warp_dim = C + 1`` input channels after the
conditioning channels (:func:`cospeech.models.i2v.expand_for_warp` widens ``stage.init``
or the fresh model, zero weights: it starts as the model it was). The cache then also
holds ``<clip>.warp.safetensors`` (the condition of each cached window, cut from the warp
of the whole clip, encoded whole like the clip), built beside an existing cache.

    cospeech train teacher --out runs/teacher --set stage.data=corpus/ \
        --set stage.vae=runs/vae/final-ema --set stage.latents=cache/teacher
"""

from __future__ import annotations

from collections.abc import Sequence
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
from cospeech.data.manifest import MANIFEST_NAME, POSE_NAME, VIDEO_NAME
from cospeech.diffusion import FlowModel, Guidance, add_noise, sample_euler, sample_training_sigmas
from cospeech.diffusion.schedule import sampling_sigmas, sigma_to_timestep
from cospeech.errors import InputError, check_range
from cospeech.latent_geometry import SPACE_STRIDE, TIME_STRIDE, latent_frames, video_frames
from cospeech.media.pixels import pixels_to_tensor, tensor_to_pixels
from cospeech.models import VideoDiT, load_video_dit_config
from cospeech.models.checkpoint import CONFIG_NAME
from cospeech.models.i2v import (
    MASK_CHANNELS,
    WARP_CONDITION,
    ConditionedFlow,
    condition_names,
    drop_conditions,
    expand_for_warp,
    reference_slot,
)
from cospeech.models.vae import TinyVideoVAE
from cospeech.models.vae.tiny import CONFIG_FILE as VAE_CONFIG
from cospeech.models.warp_condition import warp_channels, warp_condition, warp_video
from cospeech.pose.extract import read_image
from cospeech.pose.sequence import PoseSequence
from cospeech.progress import track
from cospeech.shipped import ASSETS, VAE_DIR
from cospeech.train.config import OptimConfig, TrainConfig, check_fraction, check_positive
from cospeech.train.lora import without_lora
from cospeech.train.region_weights import check_region_weights, region_weight_maps, weighted_mse

REFERENCES_FILE = "references.safetensors"
WARP_SUFFIX = ".warp.safetensors"  # <clip>.warp.safetensors: the warp condition's windows
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
    ``sample_*``: the periodic sample videos; ``init``: a trained DiT folder of the
    ``model`` architecture to start from (``save_pretrained``, e.g. the bundled teacher;
    empty = fresh weights); ``warp``: condition on the reference warped to every frame's
    pose (see the module docstring).
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
    init: str = ""
    warp: bool = False


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
def _usable_frames(clip: ClipInfo, max_frames: int) -> int:
    """The clip's leading ``1 + 4k`` frames that are encoded (at most ``max_frames``, 0 = all)."""
    frames = min(clip.frames, max_frames) if max_frames > 0 else clip.frames
    return 1 + TIME_STRIDE * ((frames - 1) // TIME_STRIDE)


def _read_clip(clip: ClipInfo, size: int, max_frames: int) -> torch.Tensor:
    """The clip's encoded frames (:func:`_usable_frames`) as ``[1, 3, F, size, size]`` in
    [-1, 1]."""
    frames = read_frames(clip.folder / VIDEO_NAME, 0, _usable_frames(clip, max_frames))
    return pixels_to_tensor(np.stack([_resize(f, size) for f in frames]))[None]


def _pose_at(path: Path, size: int) -> np.ndarray:
    """The keypoints ``[T, 133, 3]`` of pose file ``path`` in pixels of a ``size`` square."""
    pose = PoseSequence.load(path)
    return pose.keypoints * np.array([size / pose.width, size / pose.height, 1.0], np.float32)


def _clip_warp(clip: ClipInfo, vae: TinyVideoVAE, size: int, max_frames: int) -> torch.Tensor:
    """The warp condition ``[C + 1, T, h, w]`` of the clip's encoded frames: the identity's
    reference photo (``size`` square) warped to the clip's pose of each frame."""
    if clip.reference_image is None or clip.reference_pose is None:
        raise InputError(f"clip {clip.clip_id}: stage.warp needs the identity's reference "
                         "photo and its reference pose")  # fmt: skip
    image = _resize(read_image(clip.reference_image), size)
    keypoints = _pose_at(clip.folder / POSE_NAME, size)[: _usable_frames(clip, max_frames)]
    frames, valid = warp_video(image, _pose_at(clip.reference_pose, size)[0], keypoints)
    return warp_condition(vae, frames, valid)[0]


def _save_windows(path: Path, name: str, windows: torch.Tensor, starts: torch.Tensor) -> None:
    """Write ``{name: windows (float16), "starts": starts}`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        save_file({name: windows.half().contiguous(), "starts": starts}, str(tmp))


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
    warp: bool = False,
) -> Path:
    """Encode clips of ``split`` whole and store their ``window_latents``-frame slices.

    ``max_clips`` / ``max_frames`` (0 = all) limit the clips (spread over identities) and the
    leading frames encoded per clip.

    Writes ``<out_dir>/<clip>.safetensors`` (``latents`` float16 ``[N, C, W, h, w]``,
    ``starts`` int64 ``[N]`` = 4 x the first latent index) for each clip not yet cached, and
    ``references.safetensors`` (clip id -> reference latent ``[C, 1, h, w]``). Clips too
    short for one window are skipped. With ``warp``, also ``<clip>.warp.safetensors``
    (``warped`` float16 ``[N, C + 1, W, h, w]`` and the same ``starts``: the warp condition
    of the same windows) for each cached clip without one. Returns ``out_dir``.
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
        if clip.frames < video_frames(window_latents):
            continue
        if not path.is_file():
            latents = vae.encode(_read_clip(clip, size, max_frames))[0]
            starts = range(0, latents.shape[1] - window_latents + 1, stride)
            _save_windows(path, "latents", _windows(latents, starts, window_latents),
                          torch.tensor(starts, dtype=torch.int64) * TIME_STRIDE)  # fmt: skip
        warp_path = out_dir / f"{clip.clip_id}{WARP_SUFFIX}"
        if warp and not warp_path.is_file():
            starts = load_file(str(path))["starts"]
            warped = _clip_warp(clip, vae, size, max_frames)
            windows = _windows(warped, (starts // TIME_STRIDE).tolist(), window_latents)
            _save_windows(warp_path, WARP_CONDITION, windows, starts)
    with atomic_path(out_dir / REFERENCES_FILE) as tmp:
        save_file({k: v.clone() for k, v in references.items()}, str(tmp))
    return out_dir


def _windows(sequence: torch.Tensor, starts: Sequence[int], length: int) -> torch.Tensor:
    """``[C, T, h, w]`` -> its ``length``-frame slices from each of ``starts``
    ``[N, C, length, h, w]`` (InputError when one runs past ``T``: a cache built from
    other frames)."""
    if not starts or max(starts) + length > sequence.shape[1]:
        raise InputError(
            f"latent cache: windows of {length} latent frames up to start {max(starts, default=0)}"
            f" do not fit a clip of {sequence.shape[1]} (stage.cache_frames changed?)"
        )
    return torch.stack([sequence[:, s : s + length] for s in starts])


class TeacherDataset(Dataset):
    """Cached latent windows with their conditions.

    Item: ``latents`` ``[C, W, h, w]`` float32, ``reference_latent`` ``[C, 1, h, w]``,
    ``pose_maps`` ``[3, 1 + 4(W-1), H, W]`` and ``reference_pose_map`` ``[3, H, W]`` in [-1, 1],
    ``keypoints`` ``[1 + 4(W-1), 133, 3]`` in pixels of the pose maps; with ``warp``,
    ``warped`` ``[C + 1, W, h, w]`` (the window's warp condition, ``<clip>.warp.safetensors``
    in the cache folder).
    """

    KEYS = ("latents", "pose_maps", "reference_pose_map", "keypoints")

    def __init__(
        self, clips: ClipDataset, references: dict[str, torch.Tensor], warp: bool = False
    ) -> None:
        self.clips = clips
        self.references = references
        self.warp = warp

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
        if self.warp:
            out[WARP_CONDITION] = self._warped(item["clip"], item["start"])
        return out

    def _warped(self, clip: str, start: int) -> torch.Tensor:
        """The cached warp condition ``[C + 1, W, h, w]`` of the window at frame ``start``."""
        assert self.clips.latents_dir is not None
        path = self.clips.latents_dir / f"{clip}{WARP_SUFFIX}"
        if not path.is_file():
            raise InputError(f"clip {clip}: no warp condition in the latent cache ({path})")
        stored = load_file(str(path))
        match = torch.nonzero(stored["starts"] == start).flatten()
        if not len(match):
            raise InputError(f"{path}: no window at frame {start} (a cache of other windows)")
        return stored[WARP_CONDITION][int(match[0])].float()


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
    check_model_folder(config.init, "stage.init")
    check_positive("stage.shift", config.shift)
    check_positive("stage.sample_shift", config.sample_shift)
    check_fraction("stage.cond_dropout", config.cond_dropout)
    if not (Path(config.vae) / VAE_CONFIG).is_file():
        raise InputError(
            f"stage teacher: {config.vae!r} is not a VAE folder (no {VAE_CONFIG}); set the VAE "
            f"the latents are made with: --vae DIR (or --set stage.vae=DIR), e.g. a vae run's "
            f"final-ema or the bundled demo VAE {BUNDLED_VAE}"
        )


def check_model_folder(folder: str, option: str) -> None:
    """:class:`InputError` unless ``folder`` is empty or holds a saved model."""
    if folder and not (Path(folder) / CONFIG_NAME).is_file():
        raise InputError(
            f"{option}: {folder!r} is not a model folder (no {CONFIG_NAME}); give the "
            "teacher run's final-ema folder"
        )


def initial_model(fresh: VideoDiT, folder: str, option: str) -> VideoDiT:
    """The teacher in ``folder`` (``save_pretrained``), checked to be the same model as
    ``fresh`` (the one ``stage.model`` names); with ``folder`` empty, ``fresh`` itself."""
    if not folder:
        return fresh
    pretrained = VideoDiT.from_pretrained(folder)
    if pretrained.config != fresh.config:
        raise InputError(
            f"{option}: {folder} holds another model than stage.model; set stage.model to "
            "the teacher's preset (or its YAML file)"
        )
    return pretrained


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
        model = initial_model(VideoDiT(model_config), self.config.init, "stage.init")
        return self.with_warp_channels(model)

    @property
    def warp_dim(self) -> int:
        """The model's warp channels: ``C + 1`` with ``stage.warp``, else 0."""
        return warp_channels(self.vae) if self.config.warp else 0

    def with_warp_channels(self, model: VideoDiT) -> VideoDiT:
        """``model`` with :attr:`warp_dim` warp channels (widened with zero weights)."""
        have, need = model.config.warp_dim, self.warp_dim
        if have == need:
            return model
        if have == 0:
            return expand_for_warp(model, need)
        raise InputError(f"stage teacher: the model has {have} warp channels, stage.warp "
                         f"needs {need} (set stage.warp=true with this VAE)")  # fmt: skip

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
                cfg.window_stride, cfg.cache_clips, cfg.cache_frames, warp=cfg.warp,
            )  # fmt: skip
        if dist.is_initialized():
            dist.barrier()
        references = load_file(str(latents / REFERENCES_FILE))
        clips = self._clips("train", latents)
        cached = {p.stem for p in latents.glob("*.safetensors")}
        clips.clips = [c for c in clips.clips if c.clip_id in cached]
        if not clips.clips:
            raise InputError("stage teacher: no training clip has a cached latent window")
        return TeacherDataset(clips, references, warp=cfg.warp)

    def loss(
        self, model: nn.Module, batch: dict, step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        x0 = batch["latents"]
        conditions = {
            "pose": batch["pose_maps"],
            "reference": reference_slot(batch["reference_latent"]),
            "ref_pose": batch["reference_pose_map"],
        }
        if self.config.warp:
            conditions[WARP_CONDITION] = batch[WARP_CONDITION]
        conditions = drop_conditions(conditions, self.config.cond_dropout)
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
        guidance = Guidance(cfg.sample_guidance, drop=condition_names(cfg.warp))
        videos = {}
        for index in range(min(cfg.sample_clips, len(clips))):
            item = clips[index]
            reference = self.vae.encode(item["reference"][None, :, None])
            conditions = {
                "pose": item["pose_maps"][None].to(device),
                "reference": reference_slot(reference).to(device),
                "ref_pose": item["reference_pose_map"][None].to(device),
            }
            if cfg.warp:
                conditions[WARP_CONDITION] = self.item_warp(item).to(device)
            shape = (1, self.vae.latent_channels, self.window_latents, *reference.shape[-2:])
            noise = torch.randn(shape, generator=generator).to(device)
            latents = sample_euler(
                ConditionedFlow(self.sample_model(model, item)), noise, conditions,
                sigmas=sampling_sigmas(cfg.sample_steps, cfg.sample_shift), guidance=guidance,
            )  # fmt: skip
            video = self.vae.decode(latents.cpu())[0]
            videos[str(item["clip"])] = tensor_to_pixels(torch.cat([item["video"], video], -1))
        return videos

    def item_warp(self, item: dict) -> torch.Tensor:
        """The warp condition ``[1, C + 1, W, h, w]`` of a :class:`ClipDataset` item: its
        reference warped to its keypoints, the window encoded on its own."""
        reference = tensor_to_pixels(item["reference"])
        keypoints = item["keypoints"].numpy()
        frames, valid = warp_video(reference, item["reference_keypoints"].numpy(), keypoints)
        return warp_condition(self.vae, frames, valid)

    def sample_model(self, model: nn.Module, item: dict) -> FlowModel:
        """The model as :meth:`sample` runs it on validation ``item`` (a hook for stages
        that run it with options, e.g. a sparse plan from the item's pose)."""
        return model

    def export(self, model: nn.Module, out_dir: Path) -> None:
        """``save_pretrained`` (LoRA adapters merged into the weights)."""
        without_lora(model).save_pretrained(out_dir)


def build_stage(config: Config) -> TeacherStage:
    return TeacherStage(config)
