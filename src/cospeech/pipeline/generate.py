"""Offline generation: speech + one photo -> a talking, gesturing mp4 with the speech.

audio -> keypoints (:mod:`.motion`) -> pose maps -> teacher sampling (Euler, guidance,
overlapping windows fused at every step, :mod:`.windows`) -> VAE decode -> H.264 + AAC.

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
from tqdm import tqdm

from cospeech.atomic import check_writable
from cospeech.diffusion import Guidance, sample_euler
from cospeech.diffusion.schedule import sampling_sigmas
from cospeech.errors import InputError
from cospeech.models.i2v import (
    CONDITION_NAMES,
    TIME_STRIDE,
    ConditionedFlow,
    pose_maps,
    reference_pose_map,
    reference_slot,
    window_frame_indices,
)
from cospeech.models.vae import VideoVAE
from cospeech.pipeline.bundle import ModelBundle, load_bundle
from cospeech.pipeline.reference import Reference, frame_reference
from cospeech.pipeline.windows import FusedWindows, WindowPlan
from cospeech.pose.raster import num_latent_frames
from cospeech.pose.sequence import PoseSequence

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
    output frame) and how long it took (seconds of wall time: ``seconds`` in all, and per
    phase in ``phases``: ``prepare`` (models, audio, reference, motion), ``sampling``,
    ``decode`` (VAE decode and mp4 writing))."""

    path: Path
    frames: int
    fps: float
    size: int
    steps: int
    windows: int
    motion: str
    seconds: float
    keypoints: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.zeros(0))
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def video_seconds(self) -> float:
        return self.frames / self.fps

    @property
    def frames_per_second(self) -> float:
        """Frames produced per second of wall time."""
        return self.frames / self.seconds

    def summary(self) -> str:
        return (
            f"wrote {self.path}: {self.frames} frames ({self.video_seconds:.2f} s) at "
            f"{self.size}x{self.size}, {self.steps} steps x {self.windows} window(s), motion "
            f"from {self.motion}; {self.seconds:.1f} s ({self.frames_per_second:.2f} FPS, "
            f"{self.seconds / self.video_seconds:.1f} s per second of video; "
            + ", ".join(f"{name} {value:.1f} s" for name, value in self.phases.items())
            + ")"
        )


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 ``[H, W, 3]`` -> ``[1, 3, 1, H, W]`` in [-1, 1] (a one-frame video)."""
    return torch.from_numpy(image).float().div(127.5).sub(1).permute(2, 0, 1)[None, :, None]


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
    ``reference.size`` square frame), all windows conditioned on the same reference."""
    size = reference.size
    num_frames = len(keypoints)
    total = num_latent_frames(num_frames, TIME_STRIDE)
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

    plan = WindowPlan(total, bundle.settings.window, overlap)
    fused = FusedWindows(window_flow, plan, progress=on_window)
    side = size // vae.space_stride
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((1, vae.latent_channels, total, side, side), generator=generator)
    return sample_euler(fused, noise.to(device), sigmas=sampling_sigmas(steps, shift))


@torch.no_grad()
def decode_frames(vae: VideoVAE, latents: torch.Tensor, num_frames: int) -> Iterator[np.ndarray]:
    """The first ``num_frames`` decoded frames, one ``[H, W, 3]`` uint8 at a time."""
    stream = vae.decode_stream()
    emitted = 0
    for chunk in latents.cpu().split(1, dim=2):
        frames = stream.push(chunk)[0]
        pixels = ((frames + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        for frame in pixels.permute(1, 2, 3, 0).numpy():
            if emitted == num_frames:
                return
            yield frame
            emitted += 1


def check_output_path(path: Path, suffix: str = ".mp4") -> None:
    """InputError unless ``path`` has ``suffix`` and can be written (see ``check_writable``)."""
    if path.suffix.lower() != suffix:
        raise InputError(f"output {path}: must end in {suffix}")
    check_writable(path)


def load_reference(
    image_path: Path, size: int, reference_pose: Path | None
) -> tuple[Reference, PoseSequence]:
    """The framed reference and its pose (given as ``.npz`` or extracted with mediapipe)."""
    from cospeech.pose.extract import extract_image, read_image

    image = read_image(image_path)
    if reference_pose is not None:
        pose = PoseSequence.load(reference_pose)
    else:
        pose = extract_image(image_path)
    framed = frame_reference(image, pose, size)
    return framed, PoseSequence(framed.keypoints[None], 1.0, size, size)


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
    """Make ``out_path`` (mp4, H.264 + AAC) from speech and a photo; see the module doc."""
    from cospeech.audio.load import SAMPLE_RATE, load_audio
    from cospeech.media.video import VideoWriter
    from cospeech.pipeline.motion import speech_motion

    started = time.perf_counter()
    out_path = Path(out_path)
    check_output_path(out_path)
    if save_pose is not None:
        check_output_path(Path(save_pose), ".npz")
    bundle = load_bundle(model)
    settings = bundle.settings
    options = _resolve(options or GenerateOptions(), settings)
    if options.size % POSE_SIDE_MULTIPLE:
        raise InputError(f"--size must be a multiple of {POSE_SIDE_MULTIPLE}, got {options.size}")

    audio = load_audio(audio_path)
    num_frames = round(len(audio) / SAMPLE_RATE * options.fps)
    if num_frames < 1:
        raise InputError(f"audio {audio_path}: shorter than one video frame")
    reference, reference_sequence = load_reference(
        Path(image_path), options.size, Path(reference_pose) if reference_pose else None
    )
    motion, source = speech_motion(
        audio, reference_sequence, options.fps, options.seed, options.learned_motion
    )
    keypoints = _fit_length(motion.keypoints, num_frames)

    phases = {"prepare": time.perf_counter() - started}
    total = num_latent_frames(num_frames, TIME_STRIDE)
    plan = WindowPlan(total, settings.window, options.overlap)
    calls = options.steps * len(plan.starts)
    with tqdm(total=calls, desc="generate", unit="window", disable=not progress) as bar:
        latents = sample_latents(
            bundle, reference, keypoints, steps=options.steps, guidance=options.guidance,
            shift=options.shift, overlap=options.overlap, seed=options.seed,
            on_window=lambda: bar.update(1),
        )  # fmt: skip
    phases["sampling"] = time.perf_counter() - started - phases["prepare"]
    with VideoWriter(out_path, options.fps, audio=audio, sample_rate=SAMPLE_RATE) as writer:
        frames = decode_frames(bundle.vae, latents, num_frames)
        for frame in tqdm(frames, total=num_frames, desc="decode", unit="frame",
                          disable=not progress):  # fmt: skip
            writer.add(frame)
    if save_pose is not None:
        PoseSequence(keypoints, options.fps, options.size, options.size).save(save_pose)
    seconds = time.perf_counter() - started
    phases["decode"] = seconds - phases["prepare"] - phases["sampling"]
    return GenerateResult(
        out_path, num_frames, options.fps, options.size, options.steps, len(plan.starts), source,
        seconds, keypoints, phases,
    )  # fmt: skip


def _resolve(options: GenerateOptions, settings) -> GenerateOptions:
    """Fill unset options from the model's sampling settings; check ranges."""
    resolved = replace(
        options,
        steps=options.steps if options.steps is not None else settings.steps,
        guidance=options.guidance if options.guidance is not None else settings.guidance,
        shift=options.shift if options.shift is not None else settings.shift,
        overlap=options.overlap if options.overlap is not None else settings.overlap,
        fps=options.fps if options.fps is not None else settings.fps,
        size=options.size if options.size is not None else settings.size,
    )
    if resolved.steps < 1:
        raise InputError(f"--steps must be >= 1, got {resolved.steps}")
    if not resolved.fps > 0:
        raise InputError(f"--fps must be positive, got {resolved.fps}")
    if resolved.size < POSE_SIDE_MULTIPLE:
        raise InputError(f"--size must be at least {POSE_SIDE_MULTIPLE}, got {resolved.size}")
    if not 0 <= resolved.overlap < settings.window:
        raise InputError(f"overlap must lie in [0, {settings.window}), got {resolved.overlap}")
    return resolved


def _fit_length(keypoints: np.ndarray, num_frames: int) -> np.ndarray:
    """``[M, 133, 3]`` -> ``[num_frames, 133, 3]``: cut, or hold the last frame."""
    if len(keypoints) >= num_frames:
        return keypoints[:num_frames]
    tail = np.repeat(keypoints[-1:], num_frames - len(keypoints), axis=0)
    return np.concatenate([keypoints, tail])
