"""Offline generation: speech + one photo -> a talking, gesturing mp4 with the speech.

The building blocks; the API that runs them is :class:`.generator.Generator` (``generate``
below is one call of it). audio -> keypoints (:mod:`.motion`) -> pose maps -> teacher
sampling (Euler, guidance, overlapping windows fused at every step, :mod:`.windows`) or the
distilled student's chunks (:mod:`.student`) -> VAE decode -> H.264 + AAC.

Frame count = ``round(audio seconds * fps)``. The latent sequence has
``T = 1 + ceil((N - 1) / 4)`` frames (the VAE's time stride); decoding gives
``1 + 4 (T - 1) >= N`` frames, of which the first ``N`` are written and the pose is held
on its last frame past the end of the speech. Decoding streams latent frame by latent
frame into the writer, so memory is bounded by the latents, not by the video.
"""

from __future__ import annotations

import functools
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
    WARP_CONDITION,
    ConditionedFlow,
    StudentSampling,
    condition_names,
    pose_maps,
    reference_pose_map,
    reference_slot,
    window_frame_indices,
)
from cospeech.models.vae import VideoVAE
from cospeech.models.warp_condition import check_warp_input, warp_window
from cospeech.motion.generate import FPS_RANGE, MAX_SEED
from cospeech.pipeline.bundle import (
    ModelBundle,
    ModelSettings,
    load_bundle,
    load_settings,
)
from cospeech.pipeline.photo_layer import MAX_OUTPUT_SIZE, PHOTO_SCALE
from cospeech.pipeline.plans import PlanOptions, WindowPlans, check_attention
from cospeech.pipeline.reference import Reference
from cospeech.pipeline.windows import FusedWindows, WindowFlow, WindowPlan

POSE_SIDE_MULTIPLE = 16  # pose encoder: VAE stride 8 x patch 2


@dataclass(frozen=True)
class GenerateOptions:
    """User settings; ``None`` takes the model's own (``sampling.json``).

    ``steps``: the teacher's Euler steps, or the number of levels of the student's step
    list (1 .. all); ``guidance`` and ``overlap``: the teacher's only; ``attention``:
    ``dense``, ``global`` or ``sparse`` (:mod:`.plans`; the teacher's default is dense,
    the student's its ``sampling.json`` ``attention``). ``size``: the model's frame side;
    ``photo_layer``: output frames are the photo warped to each pose with the model's
    frames painting what it cannot show (:mod:`.photo_layer`), at ``output_size`` (default
    :data:`~.photo_layer.PHOTO_SCALE` x ``size``; without the photo layer the output is
    the model's frames, ``output_size`` = ``size``)."""

    steps: int | None = None
    guidance: float | None = None
    shift: float | None = None
    overlap: int | None = None
    seed: int = 0
    fps: float | None = None
    size: int | None = None
    learned_motion: bool = True
    attention: str | None = None
    photo_layer: bool = True
    output_size: int | None = None


@dataclass(frozen=True)
class GenerateResult:
    """What one run produced, the driving ``keypoints`` ``[frames, 133, 3]`` (pixels of the
    output frame) and how long it took (seconds of wall time: ``seconds`` end to end, and
    per phase in ``phases``: ``prepare`` (models, audio, reference, motion), ``sampling``
    (the teacher or student), ``decode`` (the VAE), ``write`` (H.264 + AAC encoding and
    muxing, the pose file)). *Compute* is sampling + VAE decode, what the paper's FPS
    measures.

    ``path`` is the mp4 written (None when the frames were kept in memory instead: then
    ``video`` holds them, uint8 ``[frames, H, W, 3]``). ``first_frame_seconds``: for a
    streamed run, the wall time until the first frames were ready (None offline).

    ``model``: ``teacher`` or ``student``; ``steps`` x ``windows``: the teacher's Euler
    steps and windows, or the student's levels and chunks; ``attention``: ``dense``,
    ``global`` or ``sparse``; ``attention_density``: the mean token density of the sparse
    plans used (kept query-key pairs over dense's, 1 = dense; None for dense); ``photo_note``:
    what was found in the photo and how it was framed (for the contact sheet);
    ``model_size``: the side of the model's frames when the photo layer made the output
    (``size``) from them, None when the output is the model's frames; ``precision``: the
    number format the models ran in (``float32`` or ``bfloat16``)."""

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
    model: str = "teacher"
    attention: str = "dense"
    attention_density: float | None = None
    photo_note: str = ""
    model_size: int | None = None
    precision: str = "float32"

    @property
    def video_seconds(self) -> float:
        return self.frames / self.fps

    @property
    def compute_seconds(self) -> float:
        """Sampling (teacher or student) + VAE decode + the photo layer (+ the warp condition
        of a warp-conditioned model); no model loading, motion or writing."""
        extra = self.phases.get("warp", 0.0) + self.phases.get("photo", 0.0)
        return self.phases["sampling"] + self.phases["decode"] + extra

    @property
    def compute_fps(self) -> float:
        """Frames per second of compute (sampling + VAE decode + photo layer), as the paper
        measures."""
        return self.frames / self.compute_seconds

    @property
    def end_to_end_fps(self) -> float:
        """Frames per second of the whole run (loading, motion and writing included)."""
        return self.frames / self.seconds

    def _through_photo_layer(self) -> str:
        if self.model_size is None:
            return ""
        return f" (photo layer over the model's {self.model_size}x{self.model_size})"

    def summary(self) -> str:
        phases = self.phases
        done = f"wrote {self.path}" if self.path is not None else "generated"
        first = self.first_frame_seconds
        unit = "chunk" if self.model == "student" else "window"
        density = self.attention_density
        attention = f", {self.attention} attention" + (
            f" (density {density:.2f})" if density is not None else ""
        )
        precision = f", in {self.precision}" if self.precision != "float32" else ""
        return (
            f"{done}: {count(self.frames, 'frame')} ({self.video_seconds:.2f} s) "
            f"at {self.size}x{self.size}{self._through_photo_layer()} by the {self.model}, "
            f"{count(self.steps, 'step')} x "
            f"{count(self.windows, unit)}{attention}{precision}, motion from {self.motion}; "
            f"compute {self.compute_seconds:.1f} s = {self.compute_fps:.2f} FPS (sampling "
            f"{phases['sampling']:.1f} s + VAE decode {phases['decode']:.1f} s"
            + (f" + photo layer {phases['photo']:.1f} s" if "photo" in phases else "")
            + (f" + warp condition {phases['warp']:.1f} s" if "warp" in phases else "")
            + f"); end to end "
            f"{self.seconds:.1f} s = {self.end_to_end_fps:.2f} FPS, "
            f"{self.seconds / self.video_seconds:.1f} s per second of video (prepare "
            f"{phases['prepare']:.1f} s, write {phases['write']:.1f} s)"
            + (f"; first frames after {first:.1f} s" if first is not None else "")
        )


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 ``[H, W, 3]`` -> ``[1, 3, 1, H, W]`` in [-1, 1] (a one-frame video)."""
    return pixels_to_tensor(image)[None, :, None]


def reference_conditions(
    bundle: ModelBundle, reference: Reference
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's conditions on the model's device: its latent in the frame-0 slot
    ``[1, 4 + C, 1, h, w]`` and its pose map ``[1, 3, size, size]``."""
    vae, device = bundle.vae, bundle.device
    slot = reference_slot(vae.encode(image_to_tensor(reference.image))).to(device)
    return slot, reference_pose_map(reference.keypoints, reference.size).to(device)


def plan_options(bundle: ModelBundle, attention: str) -> PlanOptions:
    """How the plans of ``attention`` (``global`` / ``sparse``) are built for this model."""
    settings = bundle.settings
    return PlanOptions(attention, settings.k, settings.block_size,
                       tuple(bundle.model.config.patch_size), bundle.vae.space_stride)  # fmt: skip


def window_flow_for(
    bundle: ModelBundle,
    reference: Reference,
    keypoints: np.ndarray,
    guidance: float,
    plans: WindowPlans | None = None,
    warped: torch.Tensor | None = None,
) -> WindowFlow:
    """The guided teacher on one window (``flow(x, t, start)``, :data:`.windows.WindowFlow`)
    for ``keypoints`` ``[N, 133, 3]`` (pixels of the ``reference.size`` square frame), every
    window conditioned on the same reference; pose maps are drawn per window. ``plans``:
    the windows' sparse plans (None: dense attention). ``warped``: for a warp-conditioned
    teacher (and only then), the warp condition of the whole video ``[1, C + 1, T, h, w]``
    (:func:`cospeech.models.warp_condition.warp_condition`); each window gets its latent
    frames (:func:`sample_latents` checks its shape)."""
    size, num_frames = reference.size, len(keypoints)
    slot, ref_pose = reference_conditions(bundle, reference)
    device = bundle.device
    dense = ConditionedFlow(bundle.teacher)
    check_warp_input(bundle.teacher.config.warp_dim, warped)
    guide = Guidance(guidance, drop=condition_names(warped is not None))

    def window_flow(x: torch.Tensor, t: torch.Tensor, start: int) -> torch.Tensor:
        frames = window_frame_indices(start, x.shape[2], num_frames)
        conditions = {
            "pose": pose_maps(keypoints[frames], size).to(device),
            "reference": slot,
            "ref_pose": ref_pose,
        }
        if warped is not None:
            conditions[WARP_CONDITION] = warp_window(warped, start, start + x.shape[2]).to(device)
        flow = dense
        if plans is not None:
            flow = ConditionedFlow(functools.partial(bundle.teacher, plan=plans(start, x.shape[2])))
        return guide(flow, x, t, conditions)

    return window_flow


def window_plans(
    bundle: ModelBundle,
    keypoints: np.ndarray,
    size: int,
    attention: str,
    keep: int | None = None,
) -> WindowPlans | None:
    """The teacher's window plans for ``attention`` (None for dense)."""
    if attention == "dense":
        return None
    return WindowPlans(keypoints, size, plan_options(bundle, attention), keep)


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
    plans: WindowPlans | None = None,
    warped: torch.Tensor | None = None,
) -> torch.Tensor:
    """Teacher latents ``[1, C, T, h, w]`` for ``keypoints`` ``[N, 133, 3]`` (pixels of the
    ``reference.size`` square frame), windows fused at every step (:class:`FusedWindows`);
    ``plans``: the windows' sparse plans (:func:`window_plans`; None: dense). ``warped``
    ``[1, C + 1, T, h, w]``: the warp condition of the ``N`` frames
    (:func:`cospeech.models.warp_condition.warp_condition` of the reference warped to each
    of ``keypoints``), required by a warp-conditioned teacher and refused by any other
    (InputError)."""
    total = latent_frames(len(keypoints), partial=True)
    vae, device = bundle.vae, bundle.device
    side = reference.size // vae.space_stride
    shape = (1, vae.latent_channels, total, side, side)
    check_warp_input(bundle.teacher.config.warp_dim, warped, shape)
    window_flow = window_flow_for(bundle, reference, keypoints, guidance, plans, warped)
    plan = WindowPlan(total, bundle.settings.window, overlap)
    fused = FusedWindows(window_flow, plan, progress=on_window)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(shape, generator=generator)
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
    precision: str = "auto",
) -> GenerateResult:
    """Make ``out_path`` (mp4, H.264 + AAC) from speech and a photo with the model
    ``model`` (:func:`.bundle.model_source`: None = the bundled student if there is one,
    else the teacher; ``"teacher"``, ``"student"``, a model folder or a trained DiT
    folder) in ``precision`` (:mod:`cospeech.precision`); the options are checked before
    any weights are loaded. One call of :class:`cospeech.pipeline.generator.Generator`
    (see the module doc)."""
    from cospeech.pipeline.generator import Generator

    started = time.perf_counter()
    check_output(out_path, ".mp4")
    if save_pose is not None:
        check_output(save_pose, ".npz")
    options = resolve_options(options or GenerateOptions(), load_settings(model=model))
    generator = Generator(load_bundle(model=model, precision=precision))
    result = generator(
        audio_path, image_path, reference_pose=reference_pose, options=options,
        progress=progress, output=out_path, save_pose=save_pose,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    phases = {**result.phases, "prepare": result.phases["prepare"] + seconds - result.seconds}
    return replace(result, seconds=seconds, phases=phases)


def check_size(size: int, trained: int, model: str = "teacher") -> None:
    """InputError unless ``size`` is a frame side the model serves: a multiple of
    :data:`POSE_SIDE_MULTIPLE` up to ``trained``, the side it was trained at (larger frames
    are outside what it learned, and attention cost grows with the square of the tokens)."""
    if size % POSE_SIDE_MULTIPLE or not POSE_SIDE_MULTIPLE <= size <= trained:
        raise InputError(
            f"--size {size}: this {model} was trained at {trained}x{trained} and serves sizes "
            f"{POSE_SIDE_MULTIPLE}-{trained} in steps of {POSE_SIDE_MULTIPLE}"
        )


def resolve_options(options: GenerateOptions, settings: ModelSettings) -> GenerateOptions:
    """Fill unset options from the model's sampling settings (a teacher's or a student's);
    check ranges (the errors name the command's flags)."""
    if isinstance(settings, StudentSampling):
        return resolve_student_options(options, settings)
    resolved = replace(
        options,
        steps=options.steps if options.steps is not None else settings.steps,
        guidance=options.guidance if options.guidance is not None else settings.guidance,
        shift=options.shift if options.shift is not None else settings.shift,
        overlap=options.overlap if options.overlap is not None else settings.overlap,
        fps=options.fps if options.fps is not None else settings.fps,
        size=options.size if options.size is not None else settings.size,
        attention=check_attention(options.attention or "dense"),
    )
    check_range("--steps", resolved.steps, 1, NUM_TRAIN_TIMESTEPS)
    check_range("--guidance", resolved.guidance, 1.0)
    _check_common(resolved, settings.size, "teacher")
    if not 0 <= resolved.overlap < settings.window:
        raise InputError(f"overlap must lie in [0, {settings.window}), got {resolved.overlap}")
    return resolve_output_size(resolved)


def resolve_student_options(options: GenerateOptions, settings: StudentSampling) -> GenerateOptions:
    """:func:`resolve_options` for a distilled student: ``steps`` = levels of its step list
    used (default all); no guidance and no window overlap (InputError when given; they stay
    None, so that resolving again gives the same)."""
    if options.guidance is not None:
        raise InputError("--guidance applies to the teacher: the distilled student runs "
                         "without guidance (it learned the guided teacher's output)")  # fmt: skip
    if options.overlap is not None:
        raise InputError("overlap applies to the teacher's windows; the student runs in chunks")
    levels = len(settings.steps)
    resolved = replace(
        options,
        steps=options.steps if options.steps is not None else levels,
        shift=options.shift if options.shift is not None else settings.shift,
        fps=options.fps if options.fps is not None else settings.fps,
        size=options.size if options.size is not None else settings.size,
        attention=check_attention(options.attention or settings.attention),
    )
    check_range("--steps", resolved.steps, 1, levels)
    _check_common(resolved, settings.size, "student")
    return resolve_output_size(resolved)


def _check_common(options: GenerateOptions, trained_size: int, model: str) -> None:
    check_range("--seed", options.seed, 0, MAX_SEED)
    check_range("--fps", options.fps, *FPS_RANGE)
    check_size(options.size, trained_size, model)


def resolve_output_size(options: GenerateOptions) -> GenerateOptions:
    """``options`` (``size`` resolved) with ``output_size`` filled and checked: a multiple
    of :data:`POSE_SIDE_MULTIPLE` from ``size`` to :data:`~.photo_layer.MAX_OUTPUT_SIZE`
    with the photo layer, ``size`` itself without."""
    assert options.size is not None
    if not options.photo_layer:
        if options.output_size not in (None, options.size):
            raise InputError(
                f"--output-size {options.output_size}: without the photo layer the output is "
                f"the model's {options.size}x{options.size} frames"
            )
        return replace(options, output_size=options.size)
    size = options.output_size or PHOTO_SCALE * options.size
    if size % POSE_SIDE_MULTIPLE or not options.size <= size <= MAX_OUTPUT_SIZE:
        raise InputError(
            f"--output-size {size}: must be a multiple of {POSE_SIDE_MULTIPLE} from the "
            f"model's size {options.size} to {MAX_OUTPUT_SIZE}"
        )
    return replace(options, output_size=size)


def fit_length(keypoints: np.ndarray, num_frames: int) -> np.ndarray:
    """``[M, 133, 3]`` -> ``[num_frames, 133, 3]``: cut, or hold the last frame."""
    if len(keypoints) >= num_frames:
        return keypoints[:num_frames]
    tail = np.repeat(keypoints[-1:], num_frames - len(keypoints), axis=0)
    return np.concatenate([keypoints, tail])
