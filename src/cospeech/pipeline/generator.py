"""The Python API of generation: load the models once, then render or stream.

```python
from cospeech import Generator

gen = Generator.from_pretrained()                  # the bundled demo models
result = gen("speech.wav", "me.png", output="out.mp4")
for chunk in gen.stream("speech.wav", "me.png"):   # frames as they are ready
    show(chunk.frames, chunk.audio)
```

The model is the folder's distilled causal student when it has one (:mod:`.student`), else
its many-step teacher (``model=`` picks one, :func:`.bundle.model_source`).

With the teacher, ``gen(...)`` is the offline sampler of ``cospeech generate`` (windows
fused at every denoising step, :class:`.windows.FusedWindows`): nothing is ready before the
end. ``gen.stream(...)`` samples the windows one after the other
(:class:`.windows.WindowChain`) and yields each window's new frames, decoded by the causal
VAE, with the speech that goes with them; memory holds one window however long the speech.
The student is causal: both yield its chunks one after the other, ``gen(...)`` collecting
what ``gen.stream(...)`` hands out. In all cases the speech -> keypoints motion runs first
over the whole audio (a few seconds for minutes of speech), so the first frames wait for it.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from cospeech.atomic import check_output
from cospeech.audio.load import SAMPLE_RATE
from cospeech.diffusion.schedule import sampling_sigmas
from cospeech.errors import InputError
from cospeech.latent_geometry import latent_frames
from cospeech.media.pixels import tensor_to_pixels
from cospeech.models.vae.base import DecodeStream
from cospeech.models.warp_condition import warp_condition, warp_video
from cospeech.pipeline.bundle import ModelBundle, ModelSettings, load_bundle, load_settings
from cospeech.pipeline.generate import (
    GenerateOptions,
    GenerateResult,
    decode_frames,
    fit_length,
    plan_options,
    reference_conditions,
    resolve_options,
    sample_latents,
    window_flow_for,
    window_plans,
)
from cospeech.pipeline.photo_layer import PhotoLayer, photo_layer_for
from cospeech.pipeline.plans import ChunkPlans, Density, check_attention
from cospeech.pipeline.reference import Reference, describe_framing, frame_reference
from cospeech.pipeline.student import ChunkConditions, StudentNoise, StudentSampler
from cospeech.pipeline.windows import SequentialNoise, WindowChain, WindowPlan
from cospeech.pose.sequence import PoseSequence
from cospeech.pose.warp import BATCH
from cospeech.precision import autocast_for
from cospeech.progress import Progress

AudioInput = str | Path | np.ndarray
"""A speech file (any format ffmpeg or libsndfile reads), or float32 mono samples at
:data:`SAMPLE_RATE` (loudness-normalised like a file)."""
ImageInput = str | Path | np.ndarray
"""A photo file, or uint8 RGB ``[H, W, 3]``."""
PoseInput = str | Path | PoseSequence | None
"""The photo's keypoints (a ``.npz`` PoseSequence of the photo's frame size, or one), or
None to detect them with mediapipe."""
ProgressCallback = Callable[[str, int, int], None]
"""``progress(phase, done, total)``, phase ``"sampling"`` (window steps, or the student's
chunk levels) or ``"decode"`` (frames)."""
ProgressArg = bool | ProgressCallback | None
"""True: progress bars on stderr (:mod:`cospeech.progress`); a callable: called instead;
None or False: silent."""


@dataclass(frozen=True)
class Chunk:
    """The next frames of a stream.

    ``frames`` uint8 ``[n, H, W, 3]``; ``audio`` float32 ``[samples]``, the speech (mono,
    :data:`SAMPLE_RATE`) that plays with them: samples ``round(start / fps * rate)`` to
    ``round((start + n) / fps * rate)``, the last chunk to the end of the speech, so the
    chunks' audio concatenates to the whole speech. ``start``: index of the first frame;
    ``total``: frames of the whole video; ``seconds``: wall time from the ``stream`` call
    to this chunk being ready.
    """

    frames: np.ndarray
    audio: np.ndarray
    start: int
    total: int
    fps: float
    seconds: float

    @property
    def stop(self) -> int:
        """Index one past the last frame of this chunk."""
        return self.start + len(self.frames)

    @property
    def last(self) -> bool:
        return self.stop == self.total


@dataclass(frozen=True)
class Job:
    """One request, prepared: resolved options, the speech ``audio`` ``[samples]`` (as muxed),
    ``frames`` to make, the ``reference`` framed at the model's side, the driving
    ``keypoints`` ``[frames, 133, 3]`` (model pixels) from the ``motion`` source, the
    ``photo`` layer that makes the output frames (None: the model's frames are the output)
    and ``photo_note``, what was found in the photo (:func:`.reference.describe_framing`).
    """

    options: GenerateOptions
    audio: np.ndarray = field(repr=False)
    frames: int
    reference: Reference = field(repr=False)
    keypoints: np.ndarray = field(repr=False)
    motion: str
    started: float  # time.perf_counter() when the request came in
    prepare_seconds: float
    photo: PhotoLayer | None = field(default=None, repr=False)
    photo_note: str = ""

    def output_frames(self, frames: np.ndarray, start: int) -> np.ndarray:
        """The model's frames ``[n, s, s, 3]`` uint8 for video frames ``start ..`` -> the
        output frames ``[n, S, S, 3]`` (through the photo layer, if any)."""
        if self.photo is None:
            return frames
        return self.photo.compose_frames(frames, self.keypoints[start : start + len(frames)])

    def warp_condition(self, bundle: ModelBundle) -> torch.Tensor | None:
        """The warp condition ``[1, C + 1, T, h, w]`` of a warp-conditioned model
        (:mod:`cospeech.models.warp_condition`: the reference warped to every driving pose
        at the model's size, VAE-encoded, with its validity), None for any other model."""
        if not bundle.model.config.warp_dim:
            return None
        frames, valid = warp_video(self.reference.image, self.reference.keypoints,
                                   self.keypoints)  # fmt: skip
        return warp_condition(bundle.vae, frames, valid).to(bundle.device)

    @property
    def model_size(self) -> int | None:
        """The model's frame side when the photo layer makes the output, else None."""
        return self.options.size if self.photo is not None else None

    def output_keypoints(self) -> np.ndarray:
        """The driving keypoints ``[frames, 133, 3]`` in pixels of the output frames."""
        keypoints = self.keypoints.copy()
        keypoints[..., :2] *= self.options.output_size / self.options.size
        return keypoints


class Generator:
    """The DiT (teacher or student) + VAE + settings, loaded once (see the module
    docstring). ``attention``: the default of :attr:`GenerateOptions.attention` (None:
    the model's own)."""

    sample_rate: int = SAMPLE_RATE

    def __init__(self, bundle: ModelBundle, attention: str | None = None) -> None:
        self.bundle = bundle
        self.attention = check_attention(attention) if attention is not None else None

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path | None = None,
        *,
        model: str | Path | None = None,
        attention: str | None = None,
        device: torch.device | str = "cpu",
        precision: str = "auto",
    ) -> Generator:
        """Load a model folder (``teacher/`` + ``vae/`` [+ ``student/``]; None = the bundled
        demo models) and the model ``model`` picks (:func:`.bundle.model_source`: None = its
        student if it has one, else its teacher; ``"teacher"``, ``"student"``, or a trained
        DiT folder). ``attention``: ``dense``, ``global`` or ``sparse`` (None: the
        model's own: dense for the teacher, ``sampling.json``'s for the student).
        ``precision``: ``auto``, ``float32`` or ``bfloat16`` (:mod:`cospeech.precision`)."""
        if attention is not None:
            check_attention(attention)  # before the weights are loaded
        bundle = load_bundle(folder, model=model, device=device, precision=precision)
        return cls(bundle, attention)

    @property
    def kind(self) -> str:
        """``"teacher"`` or ``"student"``: the model that runs."""
        return self.bundle.kind

    @property
    def settings(self) -> ModelSettings:
        """The model's ``sampling.json``: ``SamplingSettings`` for a teacher,
        ``StudentSampling`` for a student."""
        return self.bundle.settings

    @property
    def precision(self) -> str:
        """``"float32"`` or ``"bfloat16"``: the number format the models run in."""
        return self.bundle.precision

    @property
    def size(self) -> int:
        """The native frame side in pixels (the model's training size)."""
        return self.settings.size

    @property
    def device(self) -> torch.device:
        return self.bundle.device

    def resolve(self, options: GenerateOptions | None = None) -> GenerateOptions:
        """``options`` with unset fields filled from :attr:`settings` (and ``attention``
        from this generator's default), ranges checked."""
        options = options or GenerateOptions()
        if options.attention is None and self.attention is not None:
            options = replace(options, attention=self.attention)
        return resolve_options(options, self.settings)

    def prepare(
        self,
        audio: AudioInput,
        image: ImageInput,
        *,
        reference_pose: PoseInput = None,
        options: GenerateOptions | None = None,
        progress: bool = False,
    ) -> Job:
        """Check and load the inputs, frame the photo and run the motion model."""
        from cospeech.pipeline.speech_motion import speech_motion

        started = time.perf_counter()
        options = self.resolve(options)
        speech, name = load_speech(audio)
        num_frames = round(len(speech) / SAMPLE_RATE * options.fps)
        if num_frames < 1:
            raise InputError(f"{name}: shorter than one video frame")
        photo, pose = load_photo_pose(image, reference_pose)
        reference = frame_reference(photo, pose, options.size)
        layer = None
        if options.photo_layer:
            layer = photo_layer_for(self.bundle, frame_reference(photo, pose, options.output_size),
                                    options.size)  # fmt: skip
        sequence = PoseSequence(reference.keypoints[None], 1.0, options.size, options.size)
        motion, source = speech_motion(
            speech, sequence, options.fps, options.seed, options.learned_motion, progress
        )
        keypoints = fit_length(motion.keypoints, num_frames)
        seconds = time.perf_counter() - started
        note = describe_framing(photo.shape[1], photo.shape[0], pose)
        return Job(options, speech, num_frames, reference, keypoints, source, started, seconds,
                   layer, note)  # fmt: skip

    def __call__(
        self,
        audio: AudioInput,
        image: ImageInput,
        *,
        reference_pose: PoseInput = None,
        options: GenerateOptions | None = None,
        progress: ProgressArg = None,
        output: str | Path | None = None,
        save_pose: str | Path | None = None,
    ) -> GenerateResult:
        """Render the whole video offline. With ``output`` (an ``.mp4``) the frames are
        decoded straight into it with the speech (H.264 + AAC, atomic) and
        ``result.video`` is None; without, ``result.video`` holds them, uint8
        ``[frames, H, W, 3]``. ``save_pose``: also write the driving keypoints (``.npz``)."""
        started = time.perf_counter()
        if output is not None:
            check_output(output, ".mp4")
        if save_pose is not None:
            check_output(save_pose, ".npz")
        job = self.prepare(
            audio, image, reference_pose=reference_pose, options=options, progress=progress is True
        )
        result = self.render(job, progress=progress, output=output)
        if save_pose is not None:
            size = job.options.output_size
            PoseSequence(job.output_keypoints(), job.options.fps, size, size).save(save_pose)
        seconds = time.perf_counter() - started
        phases = {**result.phases, "prepare": result.phases["prepare"] + job.started - started}
        phases["write"] = seconds - sum(v for k, v in phases.items() if k != "write")
        return replace(result, seconds=seconds, phases=phases)

    @torch.no_grad()
    def render(
        self, job: Job, *, progress: ProgressArg = None, output: str | Path | None = None
    ) -> GenerateResult:
        """Sample and decode a prepared :class:`Job` (see ``__call__``): the teacher's
        fused windows, or the student's chunks. ``job.options`` must be resolved
        (:meth:`resolve`) for this generator's model."""
        if self.kind == "student":
            return self._render_student(job, progress, output)
        options, phases = job.options, {"prepare": job.prepare_seconds}
        plan = WindowPlan(latent_frames(job.frames, partial=True), self.settings.window,
                          options.overlap)  # fmt: skip
        plans = window_plans(self.bundle, job.keypoints, options.size, options.attention)
        tick = time.perf_counter()
        warped = job.warp_condition(self.bundle)
        if warped is not None:
            phases["warp"] = time.perf_counter() - tick
        tick = time.perf_counter()
        with _phase(progress, "generate", "sampling", options.steps * len(plan.starts),
                    "window step") as update:  # fmt: skip
            latents = sample_latents(
                self.bundle, job.reference, job.keypoints, steps=options.steps,
                guidance=options.guidance, shift=options.shift, overlap=options.overlap,
                seed=options.seed, on_window=lambda: update(1), plans=plans, warped=warped,
            )  # fmt: skip
        phases["sampling"] = time.perf_counter() - tick
        frames = decode_frames(self.bundle.vae, latents, job.frames)
        with _video_sink(output, job) as (sink, kept), autocast_for(self.precision, self.device):
            phases["decode"], phases["photo"] = _decode_into(frames, job, sink, progress)
        seconds = time.perf_counter() - job.started
        phases["write"] = seconds - sum(phases.values())
        return GenerateResult(
            Path(output) if output is not None else None, job.frames, options.fps,
            options.output_size, options.steps, len(plan.starts), job.motion, seconds,
            job.output_keypoints(), phases,
            video=np.stack(kept) if output is None else None, model="teacher",
            attention=options.attention,
            attention_density=plans.density.mean if plans is not None else None,
            photo_note=job.photo_note, model_size=job.model_size, precision=self.precision,
        )  # fmt: skip

    def _render_student(
        self, job: Job, progress: ProgressArg, output: str | Path | None
    ) -> GenerateResult:
        """The student offline: its stream's chunks collected (the very computation
        :meth:`stream` runs, so the frames are the streamed ones bit for bit)."""
        stream = FrameStream(self.bundle, job, None, progress)
        with _video_sink(output, job) as (sink, kept), contextlib.closing(stream):
            for chunk in stream:
                for frame in chunk.frames:
                    sink(frame)
        seconds = time.perf_counter() - job.started
        phases = dict(stream.phases)
        phases["write"] = seconds - sum(phases.values())
        options = job.options
        return GenerateResult(
            Path(output) if output is not None else None, job.frames, options.fps,
            options.output_size, options.steps, stream.windows, job.motion, seconds,
            job.output_keypoints(), phases,
            video=np.stack(kept) if output is None else None, model="student",
            attention=options.attention, attention_density=stream.attention_density,
            photo_note=job.photo_note, model_size=job.model_size, precision=self.precision,
        )  # fmt: skip

    def stream(
        self,
        audio: AudioInput,
        image: ImageInput,
        *,
        reference_pose: PoseInput = None,
        options: GenerateOptions | None = None,
        cancel: threading.Event | None = None,
        progress: ProgressArg = None,
    ) -> FrameStream:
        """Generate window after window and yield :class:`Chunk` s in frame order (see
        :class:`FrameStream`). The inputs are checked and the motion computed before this
        returns (so bad input raises InputError here); ``cancel``, when set, stops the
        stream at the next denoising step or chunk."""
        job = self.prepare(
            audio, image, reference_pose=reference_pose, options=options, progress=progress is True
        )
        return FrameStream(self.bundle, job, cancel, progress)


class _Cancelled(Exception):
    """Raised inside sampling when the stream's cancel event is set."""


class FrameStream:
    """An iterator of :class:`Chunk` s: one per window of :class:`WindowChain` (teacher),
    or per chunk of the :class:`~.student.StudentSampler` (student).

    Attributes while it runs: ``total`` frames, ``fps``, ``size`` (of the output frames),
    ``audio`` (the whole speech, as muxed), ``keypoints`` ``[total, 133, 3]`` (model
    pixels), ``motion``, ``model`` (``teacher`` / ``student``), ``windows`` (the teacher's
    windows or the student's chunks), ``first_chunk_seconds`` (wall time from the request
    (``job.started``) to the first chunk decoded, None before it), ``phases`` (seconds:
    ``prepare``, ``sampling``, ``decode``, ``photo`` (the photo layer), and ``warp`` (the
    warp condition) for a warp-conditioned model), ``peak_latent_frames`` (the most latent
    frames held at once by the sampler: window state and shared frames, or KV cache and
    chunk state), ``attention_density`` (mean token density of the sparse plans so far; None
    for dense), ``cancelled``. :meth:`close` (or leaving the iteration) frees the window state.
    """

    def __init__(
        self,
        bundle: ModelBundle,
        job: Job,
        cancel: threading.Event | None,
        progress: ProgressArg,
    ) -> None:
        self.bundle, self.job, self.cancel, self.progress = bundle, job, cancel, progress
        self.total, self.fps, self.size = job.frames, job.options.fps, job.options.output_size
        self.audio, self.keypoints, self.motion = job.audio, job.keypoints, job.motion
        self.model = bundle.kind
        self.total_latents = latent_frames(job.frames, partial=True)
        self.plan: WindowPlan | None = None
        if self.model == "teacher":
            self.plan = WindowPlan(self.total_latents, bundle.settings.window,
                                   job.options.overlap)  # fmt: skip
            self.windows = len(self.plan.starts)
        else:
            self.windows = -(-self.total_latents // bundle.settings.chunk_frames)
        self._density: Density | None = None
        self.first_chunk_seconds: float | None = None
        self.phases = {"prepare": job.prepare_seconds, "sampling": 0.0, "decode": 0.0,
                       "photo": 0.0}  # fmt: skip
        self.peak_latent_frames = 0
        self.cancelled = False
        self._chunks = self._run()

    def __iter__(self) -> FrameStream:
        return self

    def __next__(self) -> Chunk:
        return next(self._chunks)

    def close(self) -> None:
        """Stop early and free the window state (also done when iteration ends)."""
        self._chunks.close()

    @property
    def attention_density(self) -> float | None:
        return self._density.mean if self._density is not None else None

    def _warp_condition(self) -> torch.Tensor | None:
        """:meth:`Job.warp_condition`, its time counted in the ``warp`` phase."""
        tick = time.perf_counter()
        warped = self.job.warp_condition(self.bundle)
        if warped is not None:
            self.phases["warp"] = self.phases.get("warp", 0.0) + time.perf_counter() - tick
        return warped

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise _Cancelled

    def _audio_between(self, start: int, stop: int) -> np.ndarray:
        """The speech that plays with frames ``[start, stop)`` (to the end for the last)."""
        first = round(start / self.fps * SAMPLE_RATE)
        last = len(self.audio) if stop == self.total else round(stop / self.fps * SAMPLE_RATE)
        return self.audio[first:last]

    def _teacher_latents(self) -> Iterator[tuple[torch.Tensor, int]]:
        """Each window's new latent frames and the latent frames held while it ran."""
        options, vae, device = self.job.options, self.bundle.vae, self.bundle.device
        size = options.size
        plans = window_plans(self.bundle, self.keypoints, size, options.attention, keep=1)
        self._density = plans.density if plans is not None else None
        window_flow = window_flow_for(self.bundle, self.job.reference, self.keypoints,
                                      options.guidance, plans, self._warp_condition())  # fmt: skip
        side = size // vae.space_stride
        draw = SequentialNoise((1, vae.latent_channels, side, side), options.seed)
        assert self.plan is not None
        chain = WindowChain(
            window_flow, self.plan, lambda start, stop: draw(start, stop).to(device),
            sampling_sigmas(options.steps, options.shift), on_step=self._on_step,
        )  # fmt: skip
        for window in chain:
            yield window.latents, window.held

    def _student_latents(self) -> Iterator[tuple[torch.Tensor, int]]:
        """Each chunk's latent frames and the latent frames held while it ran."""
        options, vae, bundle = self.job.options, self.bundle.vae, self.bundle
        slot, ref_pose = reference_conditions(bundle, self.job.reference)
        plans = None
        if options.attention != "dense":
            plans = ChunkPlans(self.keypoints, options.size,
                               plan_options(bundle, options.attention), bundle.device)  # fmt: skip
            self._density = plans.density
        side = options.size // vae.space_stride
        conditions = ChunkConditions(self.keypoints, options.size, slot, ref_pose,
                                     self._warp_condition())  # fmt: skip
        sampler = StudentSampler(
            bundle.model, bundle.settings, conditions, self.total_latents, levels=options.steps,
            shift=options.shift, plans=plans, on_level=lambda: self._on_step(0, 0),
            noise=StudentNoise((1, vae.latent_channels, side, side), options.seed),
        )  # fmt: skip
        for chunk in sampler:
            yield chunk.latents, chunk.held

    @torch.no_grad()
    def _run(self) -> Iterator[Chunk]:
        student = self.model == "student"
        pieces = self._student_latents() if student else self._teacher_latents()
        decoder, emitted = self.bundle.vae.decode_stream(), 0
        unit = "chunk step" if student else "window step"
        # the decoder's calls only: the caller's code between chunks runs outside autocast
        autocast = functools.partial(autocast_for, self.bundle.precision, self.bundle.device)
        with _phase(self.progress, "generate", "sampling", self.job.options.steps * self.windows,
                    unit) as self._update:  # fmt: skip
            while emitted < self.total:
                tick = time.perf_counter()
                try:
                    self._check_cancel()
                    latents, held = next(pieces)
                except _Cancelled:
                    self.cancelled = True
                    return
                self.peak_latent_frames = max(self.peak_latent_frames, held)
                decoded = time.perf_counter()
                self.phases["sampling"] += decoded - tick
                with autocast():
                    frames = _decode_latents(decoder, latents)[: self.total - emitted]
                composed = time.perf_counter()
                self.phases["decode"] += composed - decoded
                frames = self.job.output_frames(frames, emitted)
                self.phases["photo"] += time.perf_counter() - composed
                chunk = Chunk(
                    frames, self._audio_between(emitted, emitted + len(frames)), emitted,
                    self.total, self.fps, time.perf_counter() - self.job.started,
                )  # fmt: skip
                if self.first_chunk_seconds is None:
                    self.first_chunk_seconds = chunk.seconds
                emitted = chunk.stop
                yield chunk
                if self.cancel is not None and self.cancel.is_set():
                    self.cancelled = emitted < self.total
                    return

    def _on_step(self, _window: int, _step: int) -> None:
        self._update(1)
        self._check_cancel()


def _decode_latents(decoder: DecodeStream, latents: torch.Tensor) -> np.ndarray:
    """Latent frames ``[1, C, n, h, w]`` pushed one by one into a causal VAE decode stream
    -> the frames they complete, uint8 ``[f, H, W, 3]``."""
    pieces = [tensor_to_pixels(decoder.push(latent.cpu())[0]) for latent in latents.split(1, 2)]
    return np.concatenate(pieces)


def load_speech(audio: AudioInput) -> tuple[np.ndarray, str]:
    """Speech as 16 kHz mono float32 ``[samples]``, loudness-normalised, and its name for
    messages (InputError for a bad file or array)."""
    from cospeech.audio.load import load_audio, prepare_samples

    if isinstance(audio, np.ndarray):
        return prepare_samples(audio, SAMPLE_RATE), "audio"
    return load_audio(audio), f"audio {audio}"


def load_reference(image: ImageInput, size: int, reference_pose: PoseInput) -> Reference:
    """The photo framed at ``size`` (:func:`.reference.frame_reference`) with its keypoints:
    ``reference_pose`` (checked to be of the photo's frame size) or detected."""
    return frame_reference(*load_photo_pose(image, reference_pose), size)


def load_photo_pose(
    image: ImageInput, reference_pose: PoseInput
) -> tuple[np.ndarray, PoseSequence]:
    """The photo, uint8 ``[H, W, 3]`` (a file's size checked before it is decoded,
    :func:`cospeech.pose.person.load_photo`), and its keypoints (:func:`_photo_pose`)."""
    from cospeech.pose.person import MAX_PHOTO_PIXELS, load_photo

    if isinstance(image, np.ndarray):
        photo, name = image, "image"
        if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8 or not photo.size:
            raise InputError(f"image: expected uint8 [H, W, 3], got {photo.dtype} "
                             f"{list(photo.shape)}")  # fmt: skip
        if photo.shape[0] * photo.shape[1] > MAX_PHOTO_PIXELS:
            raise InputError(f"image: {photo.shape[1]}x{photo.shape[0]} is over the "
                             f"{MAX_PHOTO_PIXELS // 1_000_000}-megapixel limit")  # fmt: skip
    else:
        photo, name = load_photo(image), f"image {image}"
    return photo, _photo_pose(photo, name, reference_pose)


def _photo_pose(photo: np.ndarray, name: str, reference_pose: PoseInput) -> PoseSequence:
    """The photo's keypoints: given (of the photo's frame size), or those of the one person
    mediapipe finds (:func:`cospeech.pose.person.person_keypoints`: InputError for no
    person or several)."""
    height, width = photo.shape[:2]
    if reference_pose is None:
        from cospeech.pose.extract import IMAGE_FPS
        from cospeech.pose.person import person_keypoints

        keypoints = person_keypoints(photo, name=name)
        return PoseSequence(keypoints[None], IMAGE_FPS, width, height)
    pose = reference_pose
    if not isinstance(pose, PoseSequence):
        pose = PoseSequence.load(reference_pose)
    if (pose.width, pose.height) != (width, height):
        given = "reference pose" if isinstance(reference_pose, PoseSequence) else reference_pose
        raise InputError(
            f"reference pose {given} is for a {pose.width}x{pose.height} frame, the photo "
            f"{name} is {width}x{height}: extract the pose from this photo (cospeech pose "
            f"extract {name} -o pose.npz)"
        )
    return pose


@contextlib.contextmanager
def _phase(
    progress: ProgressArg, label: str, phase: str, total: int, unit: str
) -> Iterator[Callable[[int], None]]:
    """``update(n)`` for a phase of ``total`` units: a bar named ``label`` when ``progress``
    is True, ``progress(phase, done, total)`` when it is callable, nothing otherwise."""
    if callable(progress):
        done = 0

        def update(n: int) -> None:
            nonlocal done
            done += n
            progress(phase, done, total)

        yield update
        return
    with Progress(label, total, unit, enabled=progress is True) as bar:
        yield bar.update


@contextlib.contextmanager
def _video_sink(
    output: str | Path | None, job: Job
) -> Iterator[tuple[Callable[[np.ndarray], None], list[np.ndarray]]]:
    """``(sink, kept)``: frames go into an mp4 at ``output`` with the job's speech (H.264 +
    AAC, atomic), or into the list ``kept`` when ``output`` is None."""
    from cospeech.media.video import VideoWriter

    kept: list[np.ndarray] = []
    if output is None:
        yield kept.append, kept
        return
    options = job.options
    with VideoWriter(output, options.fps, audio=job.audio, sample_rate=SAMPLE_RATE) as writer:
        yield writer.add, kept


def _decode_into(
    frames: Iterator[np.ndarray], job: Job, sink: Callable[[np.ndarray], None],
    progress: ProgressArg,
) -> tuple[float, float]:  # fmt: skip
    """Feed the job's lazily decoded model ``frames`` through its photo layer to ``sink``,
    :data:`~cospeech.pose.warp.BATCH` at a time (their warps' regions rasterised together);
    returns the seconds spent decoding and in the photo layer (the sink's own time, e.g.
    H.264 encoding, left out)."""
    started, sinking, composing, index = time.perf_counter(), 0.0, 0.0, 0
    with _phase(progress, "decode", "decode", job.frames, "frame") as update:
        while batch := list(itertools.islice(frames, BATCH)):
            tick = time.perf_counter()
            outputs = job.output_frames(np.stack(batch), index)
            composed = time.perf_counter()
            for output in outputs:
                sink(output)
            sinking += time.perf_counter() - composed
            composing += composed - tick
            index += len(batch)
            update(len(batch))
    return time.perf_counter() - started - sinking - composing, composing


def generate_stream(
    audio_path: str | Path,
    image_path: str | Path,
    out: str | Path,
    options: GenerateOptions | None = None,
    *,
    reference_pose: str | Path | None = None,
    save_pose: str | Path | None = None,
    model: str | Path | None = None,
    progress: bool = True,
    precision: str = "auto",
) -> GenerateResult:
    """``cospeech generate --stream``: :meth:`Generator.stream` into a fragmented mp4
    (:class:`cospeech.media.fragmented.FragmentedMp4Writer`) at ``out``, or on standard
    output when ``out`` is ``"-"`` (then ``result.path`` is None). The file grows while the
    video is made (playable as it grows) and is removed if the run fails. The result's
    ``first_frame_seconds`` counts from this call (models loaded in it). ``model`` and
    ``precision``: as :func:`.generate.generate`'s."""
    from cospeech.media.fragmented import FragmentedMp4Writer

    started = time.perf_counter()
    to_stdout = str(out) == "-"
    if not to_stdout:
        check_output(out, ".mp4")
    if save_pose is not None:
        check_output(save_pose, ".npz")
    options = resolve_options(options or GenerateOptions(), load_settings(model=model))
    generator = Generator(load_bundle(model=model, precision=precision))
    stream = generator.stream(
        audio_path, image_path, reference_pose=reference_pose, options=options, progress=progress
    )
    prepared = time.perf_counter()
    first = None
    sink_path = None if to_stdout else Path(out)
    with (
        contextlib.closing(stream),
        _open_sink(sink_path) as sink,
        FragmentedMp4Writer(sink, stream.size, stream.fps, SAMPLE_RATE) as writer,
    ):
        for chunk in stream:
            first = first if first is not None else time.perf_counter() - started
            writer.write(chunk.frames, chunk.audio)
    if save_pose is not None:
        keypoints = stream.job.output_keypoints()
        PoseSequence(keypoints, stream.fps, stream.size, stream.size).save(save_pose)
    seconds = time.perf_counter() - started
    phases = {
        "prepare": prepared - started,
        **{k: v for k, v in stream.phases.items() if k != "prepare"},
    }
    phases["write"] = seconds - sum(phases.values())
    return GenerateResult(
        None if to_stdout else Path(out), stream.total, stream.fps, stream.size, options.steps,
        stream.windows, stream.motion, seconds, stream.job.output_keypoints(), phases,
        first_frame_seconds=first, model=stream.model, attention=options.attention,
        attention_density=stream.attention_density, photo_note=stream.job.photo_note,
        model_size=stream.job.model_size, precision=generator.precision,
    )  # fmt: skip


@contextlib.contextmanager
def _open_sink(path: Path | None) -> Iterator[BinaryIO]:
    """Standard output's bytes (``path`` None), or ``path`` opened for writing and removed
    again if the block fails (InputError when it cannot be written)."""
    import sys

    if path is None:
        yield sys.stdout.buffer
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("wb")
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with handle:
            yield handle
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
