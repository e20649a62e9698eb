"""Offline generation: speech + one photo -> a talking, gesturing mp4 with the speech.

The building blocks; the API that runs them is :class:`.generator.Generator` (``generate``
below is one call of it). audio -> keypoints (:mod:`.motion`) -> pose maps -> teacher
sampling (Euler, guidance, overlapping windows fused at every step, :mod:`.windows`) -> VAE
decode -> H.264 + AAC.

Frame count = ``round(audio seconds * fps)``. The latent sequence has
``T = 1 + ceil((N - 1) / 4)`` frames (the VAE's time stride); decoding gives
``1 + 4 (T - 1) >= N`` frames, of which the first ``N`` are written and the pose is held
on its last frame past the end of the speech. Decoding streams latent frame by latent
frame into the writer, so memory is bounded by the latents, not by the video.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from cospeech.atomic import check_output
from cospeech.diffusion import Guidance, sample_euler
from cospeech.diffusion.schedule import NUM_TRAIN_TIMESTEPS, sampling_sigmas
from cospeech.errors import InputError, check_range, count
from cospeech.latent_geometry import latent_frames
from cospeech.media.pixels import pixels_to_tensor, tensor_to_pixels
from cospeech.models.i2v import (
    CONDITION_NAMES,
    ConditionedFlow,
    pose_maps,
    reference_pose_map,
    reference_slot,
    window_frame_indices,
)
from cospeech.models.vae import VideoVAE
from cospeech.motion.generate import FPS_RANGE, MAX_SEED
from cospeech.pipeline.bundle import ModelBundle, SamplingSettings, load_bundle, load_settings
from cospeech.pipeline.reference import Reference
from cospeech.pipeline.windows import FusedWindows, WindowFlow, WindowPlan

POSE_SIDE_MULTIPLE = 16  # pose encoder: VAE stride 8 x patch 2


@dataclass(frozen=True)
class GenerateOptions:
    """User settings; ``None`` takes the model's own (``sampling.json``)."""

    steps: int | None = None
    guidance: float | None = None
    shift: float | None = None
    overlap: int | None = None
    seed: int = 0
    fps: float | None = None
    size: int | None = None
    learned_motion: bool = True


@dataclass(frozen=True)
class GenerateResult:
    """What one run produced, the driving ``keypoints`` ``[frames, 133, 3]`` (pixels of the
    output frame) and how long it took (seconds of wall time: ``seconds`` end to end, and
    per phase in ``phases``: ``prepare`` (models, audio, reference, motion), ``sampling``
    (the teacher), ``decode`` (the VAE), ``write`` (H.264 + AAC encoding and muxing, the
    pose file)). *Compute* is sampling + VAE decode, what the paper's FPS measures.

    ``path`` is the mp4 written (None when the frames were kept in memory instead: then
    ``video`` holds them, uint8 ``[frames, H, W, 3]``). ``first_frame_seconds``: for a
    streamed run, the wall time until the first frames were ready (None offline)."""

    path: Path | None
    frames: int
    fps: float
    size: int
    steps: int
    windows: int
    motion: str
    seconds: float
    keypoints: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.zeros(0))
    phases: dict[str, float] = field(default_factory=dict)
    video: np.ndarray | None = field(repr=False, compare=False, default=None)
    first_frame_seconds: float | None = None

    @property
    def video_seconds(self) -> float:
        return self.frames / self.fps

    @property
    def compute_seconds(self) -> float:
        """Teacher sampling + VAE decode (no model loading, motion or file writing)."""
        return self.phases["sampling"] + self.phases["decode"]

    @property
    def compute_fps(self) -> float:
        """Frames per second of compute (sampling + VAE decode), as the paper measures."""
        return self.frames / self.compute_seconds

    @property
    def end_to_end_fps(self) -> float:
        """Frames per second of the whole run (loading, motion and writing included)."""
        return self.frames / self.seconds

    def summary(self) -> str:
        phases = self.phases
        done = f"wrote {self.path}" if self.path is not None else "generated"
        first = self.first_frame_seconds
        return (
            f"{done}: {count(self.frames, 'frame')} ({self.video_seconds:.2f} s) "
            f"at {self.size}x{self.size}, {count(self.steps, 'step')} x "
            f"{count(self.windows, 'window')}, motion from {self.motion}; "
            f"compute {self.compute_seconds:.1f} s = {self.compute_fps:.2f} FPS (sampling "
            f"{phases['sampling']:.1f} s + VAE decode {phases['decode']:.1f} s); end to end "
            f"{self.seconds:.1f} s = {self.end_to_end_fps:.2f} FPS, "
            f"{self.seconds / self.video_seconds:.1f} s per second of video (prepare "
            f"{phases['prepare']:.1f} s, write {phases['write']:.1f} s)"
            + (f"; first frames after {first:.1f} s" if first is not None else "")
        )


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 ``[H, W, 3]`` -> ``[1, 3, 1, H, W]`` in [-1, 1] (a one-frame video)."""
    return pixels_to_tensor(image)[None, :, None]


def window_flow_for(
    bundle: ModelBundle, reference: Reference, keypoints: np.ndarray, guidance: float
) -> WindowFlow:
    """The guided teacher on one window (``flow(x, t, start)``, :data:`.windows.WindowFlow`)
    for ``keypoints`` ``[N, 133, 3]`` (pixels of the ``reference.size`` square frame), every
    window conditioned on the same reference; pose maps are drawn per window."""
    size, num_frames = reference.size, len(keypoints)
    vae, device = bundle.vae, next(bundle.teacher.parameters()).device
    slot = reference_slot(vae.encode(image_to_tensor(reference.image))).to(device)
    ref_pose = reference_pose_map(reference.keypoints, size).to(device)
    flow = ConditionedFlow(bundle.teacher)
    guide = Guidance(guidance, drop=CONDITION_NAMES)

    def window_flow(x: torch.Tensor, t: torch.Tensor, start: int) -> torch.Tensor:
        frames = window_frame_indices(start, x.shape[2], num_frames)
        conditions = {
            "pose": pose_maps(keypoints[frames], size).to(device),
            "reference": slot,
            "ref_pose": ref_pose,
        }
        return guide(flow, x, t, conditions)

    return window_flow


@torch.no_grad()
def sample_latents(
    bundle: ModelBundle,
    reference: Reference,
    keypoints: np.ndarray,
    *,
    steps: int,
    guidance: float,
    shift: float,
    overlap: int,
    seed: int,
    on_window: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Teacher latents ``[1, C, T, h, w]`` for ``keypoints`` ``[N, 133, 3]`` (pixels of the
    ``reference.size`` square frame), windows fused at every step (:class:`FusedWindows`)."""
    window_flow = window_flow_for(bundle, reference, keypoints, guidance)
    total = latent_frames(len(keypoints), partial=True)
    plan = WindowPlan(total, bundle.settings.window, overlap)
    fused = FusedWindows(window_flow, plan, progress=on_window)
    vae, device = bundle.vae, next(bundle.teacher.parameters()).device
    side = reference.size // vae.space_stride
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((1, vae.latent_channels, total, side, side), generator=generator)
    return sample_euler(fused, noise.to(device), sigmas=sampling_sigmas(steps, shift))


@torch.no_grad()
def decode_frames(vae: VideoVAE, latents: torch.Tensor, num_frames: int) -> Iterator[np.ndarray]:
    """The first ``num_frames`` decoded frames, one ``[H, W, 3]`` uint8 at a time."""
    stream = vae.decode_stream()
    emitted = 0
    for chunk in latents.cpu().split(1, dim=2):
        for frame in tensor_to_pixels(stream.push(chunk)[0]):
            if emitted == num_frames:
                return
            yield frame
            emitted += 1


def generate(
    audio_path: str | Path,
    image_path: str | Path,
    out_path: str | Path,
    options: GenerateOptions | None = None,
    *,
    reference_pose: str | Path | None = None,
    save_pose: str | Path | None = None,
    model: str | Path | None = None,
    progress: bool = True,
) -> GenerateResult:
    """Make ``out_path`` (mp4, H.264 + AAC) from speech and a photo with the models of
    ``model``; the options are checked before any weights are loaded. One call of
    :class:`cospeech.pipeline.generator.Generator` (see the module doc)."""
    from cospeech.pipeline.generator import Generator

    started = time.perf_counter()
    check_output(out_path, ".mp4")
    if save_pose is not None:
        check_output(save_pose, ".npz")
    options = resolve_options(options or GenerateOptions(), load_settings(model))
    generator = Generator(load_bundle(model))
    result = generator(
        audio_path, image_path, reference_pose=reference_pose, options=options,
        progress=progress, output=out_path, save_pose=save_pose,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    phases = {**result.phases, "prepare": result.phases["prepare"] + seconds - result.seconds}
    return replace(result, seconds=seconds, phases=phases)


def check_size(size: int, trained: int) -> None:
    """InputError unless ``size`` is a frame side the teacher serves: a multiple of
    :data:`POSE_SIDE_MULTIPLE` up to ``trained``, the side it was trained at (larger frames
    are outside what it learned, and attention cost grows with the square of the tokens)."""
    if size % POSE_SIDE_MULTIPLE or not POSE_SIDE_MULTIPLE <= size <= trained:
        raise InputError(
            f"--size {size}: this teacher was trained at {trained}x{trained} and serves sizes "
            f"{POSE_SIDE_MULTIPLE}-{trained} in steps of {POSE_SIDE_MULTIPLE}"
        )


def resolve_options(options: GenerateOptions, settings: SamplingSettings) -> GenerateOptions:
    """Fill unset options from the model's sampling settings; check ranges (the errors
    name the command's flags)."""
    resolved = replace(
        options,
        steps=options.steps if options.steps is not None else settings.steps,
        guidance=options.guidance if options.guidance is not None else settings.guidance,
        shift=options.shift if options.shift is not None else settings.shift,
        overlap=options.overlap if options.overlap is not None else settings.overlap,
        fps=options.fps if options.fps is not None else settings.fps,
        size=options.size if options.size is not None else settings.size,
    )
    check_range("--steps", resolved.steps, 1, NUM_TRAIN_TIMESTEPS)
    check_range("--guidance", resolved.guidance, 1.0)
    check_range("--seed", resolved.seed, 0, MAX_SEED)
    check_range("--fps", resolved.fps, *FPS_RANGE)
    check_size(resolved.size, settings.size)
    if not 0 <= resolved.overlap < settings.window:
        raise InputError(f"overlap must lie in [0, {settings.window}), got {resolved.overlap}")
    return resolved


def fit_length(keypoints: np.ndarray, num_frames: int) -> np.ndarray:
    """``[M, 133, 3]`` -> ``[num_frames, 133, 3]``: cut, or hold the last frame."""
    if len(keypoints) >= num_frames:
        return keypoints[:num_frames]
    tail = np.repeat(keypoints[-1:], num_frames - len(keypoints), axis=0)
    return np.concatenate([keypoints, tail])
