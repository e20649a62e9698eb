"""Speed of the VideoDiT with random weights: one forward, one streaming chunk, student FPS.

- **forward**: the whole clip (``video_frames`` -> latent frames) in the chosen attention
  mode: ``dense`` (full), ``causal`` (block-causal by chunks) or ``sparse`` (input-aware
  plan from a built-in moving upper body, see :mod:`cospeech.attention.bench`).
- **chunk**: the last ``chunk_frames`` latent frames attending a :class:`KVCache` that
  holds every earlier frame of the clip (what a streaming step costs at that context).
- **student FPS**: a causal K-step student runs K denoising forwards per chunk plus one
  forward of the clean chunk that commits its keys/values:
  ``fps = 4 * chunk_frames / ((K + 1) * chunk_seconds)`` (VAE decoding not included).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from cospeech.device import resolve_device
from cospeech.errors import InputError, check_range, count
from cospeech.models.config import VideoDiTConfig
from cospeech.models.dit import VideoDiT
from cospeech.models.kv_cache import KVCache

ATTENTION_CHOICES = ("dense", "causal", "sparse")


@dataclass(frozen=True)
class ModelBenchResult:
    """Median timings of :func:`benchmark_model`."""

    device: str
    dtype: str
    attention: str
    video_frames: int
    latent_frames: int
    height: int
    width: int
    tokens: int
    params: int
    pose_params: int
    forward_ms: float
    chunk_ms: float
    chunk_frames: int
    steps: int
    time_stride: int

    @property
    def chunk_video_frames(self) -> int:
        return self.time_stride * self.chunk_frames

    @property
    def student_fps(self) -> float:
        return self.chunk_video_frames / ((self.steps + 1) * self.chunk_ms / 1000.0)

    def format(self) -> str:
        lines = [
            f"model: {self.params / 1e6:.1f}M parameters (+{self.pose_params / 1e6:.2f}M pose "
            f"encoders), {self.dtype} on {self.device}",
            f"input: {self.video_frames} video frames {self.width}x{self.height} -> "
            f"{self.latent_frames} latent frames, {self.tokens} tokens",
            f"forward ({self.attention}, whole clip): {self.forward_ms:.1f} ms",
            f"chunk ({self.chunk_frames} latent = {self.chunk_video_frames} video frames, KV "
            f"cache of {self.latent_frames - self.chunk_frames} frames): {self.chunk_ms:.1f} ms",
            f"{self.steps}-step causal student ({self.steps} + 1 commit forwards per chunk, "
            f"no VAE): {self.student_fps:.1f} FPS",
        ]
        return "\n".join(lines)


def parse_size(text: str) -> tuple[int, int]:
    """``"HxW"`` -> ``(height, width)``."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise InputError(f"--size {text!r}: expected HxW in pixels, e.g. 128x128")
    return int(parts[0]), int(parts[1])


def _check_memory(config: VideoDiTConfig, dtype: torch.dtype, device: torch.device) -> None:
    with torch.device("meta"):
        params = sum(p.numel() for p in VideoDiT(config).parameters())
    needed = params * torch.finfo(dtype).bits // 8
    if device.type == "cuda":
        available = torch.cuda.mem_get_info(device)[0]
    else:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    if needed > 0.8 * available:
        raise InputError(
            f"{params / 1e9:.2f}B parameters need {needed / 2**30:.1f} GiB in {dtype}, "
            f"{available / 2**30:.1f} GiB free on {device}; run this preset on a GPU"
        )


def _sparse_plan(video_frames: int, height: int, width: int):
    """Input-aware plan of the attention benchmark's built-in moving upper body."""
    from cospeech.attention.bench import pose_plan, synthetic_pose

    return pose_plan(synthetic_pose(video_frames, width, height, seed=0))


def _median_ms(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def benchmark_model(
    config: VideoDiTConfig,
    video_frames: int,
    height: int,
    width: int,
    attention: str = "dense",
    steps: int = 2,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    chunk_frames: int = 3,
    repeats: int = 3,
    progress: Callable[[str], None] | None = None,
) -> ModelBenchResult:
    """Time a random-weight VideoDiT (see the module docstring). Errors name the flags of
    ``cospeech bench model`` (``--frames`` for ``video_frames``)."""
    if attention not in ATTENTION_CHOICES:
        raise InputError(f"--attention must be one of {ATTENTION_CHOICES}, got {attention!r}")
    time_stride, side = config.vae_stride[0], config.pose_spatial_factor
    if video_frames < 1 or (video_frames - 1) % time_stride:
        raise InputError(f"--frames must be 1 + {time_stride}k, got {video_frames}")
    if height % side or width % side:
        raise InputError(f"--size {height}x{width}: must be a multiple of {side} pixels")
    latent_frames = 1 + (video_frames - 1) // time_stride
    if chunk_frames < 1:
        raise InputError(f"--chunk-frames: latent chunk frames must be >= 1, got {chunk_frames}")
    if latent_frames <= chunk_frames:
        raise InputError(
            f"--frames {video_frames} gives {count(latent_frames, 'latent frame')}; the "
            f"timing of a --chunk-frames {chunk_frames} chunk needs more (use --frames "
            f"{1 + time_stride * chunk_frames} or more)"
        )
    check_range("--steps", steps, 1)
    check_range("--repeats", repeats, 1)
    target = resolve_device(device)
    _check_memory(config, dtype, target)

    say = progress or (lambda _msg: None)
    say("building the model")
    torch.manual_seed(0)
    model = VideoDiT(config).to(device=target, dtype=dtype).eval()
    lat_h, lat_w = height // config.vae_stride[1], width // config.vae_stride[2]
    make = dict(device=target, dtype=dtype)
    x = torch.randn(1, config.in_dim, latent_frames, lat_h, lat_w, **make)
    t = torch.full((1,), 500.0, device=target)
    extra = {}
    if config.has_text:
        extra["context"] = torch.randn(1, config.text_len, config.text_dim, **make)
    if config.has_image_tokens:
        extra["clip_context"] = torch.randn(1, config.image_tokens, config.image_dim, **make)
    pose = torch.rand(1, config.pose_in_channels, video_frames, height, width, **make)
    pose_kw = {"pose": pose} if config.has_pose_encoder else {}
    if config.has_ref_pose_encoder:
        pose_kw["ref_pose"] = torch.rand(1, config.pose_in_channels, height, width, **make)
    mode: dict[str, object] = {}
    if attention == "causal":
        mode = {"attention": "causal", "chunk_frames": chunk_frames}
    elif attention == "sparse":
        say("building the sparse plan")
        mode = {"plan": _sparse_plan(video_frames, height, width)}

    with torch.inference_mode():
        say("timing the whole-clip forward")
        forward_ms = _median_ms(lambda: model(x, t, **extra, **pose_kw, **mode), repeats, target)

        say("filling the KV cache")
        cache = KVCache(config.num_layers)
        split = latent_frames - chunk_frames
        video_split = 1 + time_stride * (split - 1)
        prefill_pose = dict(pose_kw)
        chunk_pose = {}
        if config.has_pose_encoder:
            prefill_pose["pose"] = pose[:, :, :video_split]
            chunk_pose["pose"] = pose[:, :, video_split:]
        model(x[:, :, :split], t, **extra, **prefill_pose, kv_cache=cache, cache_update=True)
        say("timing one chunk")
        chunk_ms = _median_ms(
            lambda: model(x[:, :, split:], t, **extra, **chunk_pose, kv_cache=cache),
            repeats,
            target,
        )
    counts = model.parameter_counts()
    pt, ph, pw = config.patch_size
    return ModelBenchResult(
        device=str(target),
        dtype=str(dtype).removeprefix("torch."),
        attention=attention,
        video_frames=video_frames,
        latent_frames=latent_frames,
        height=height,
        width=width,
        tokens=(latent_frames // pt) * (lat_h // ph) * (lat_w // pw),
        params=counts["wan"],
        pose_params=counts["pose"],
        forward_ms=forward_ms,
        chunk_ms=chunk_ms,
        chunk_frames=chunk_frames,
        steps=steps,
        time_stride=time_stride,
    )
