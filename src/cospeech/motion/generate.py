"""Speech + reference pose -> PoseSequence in the reference image's pixels.

:class:`MotionGenerator` wraps a trained :class:`~cospeech.motion.model.MotionModel`:

* **offline** (:meth:`MotionGenerator.generate`): bidirectional encoder over windows of
  ``window_frames`` frames that overlap by ``overlap_frames``; each window's body is
  generated after the previous window's last ``context_frames`` frames (clean context) and
  both face and body are cross-faded over the rest of the overlap. Memory is bounded by the
  window, so a 10-minute file runs like a 10-second one.
* **streaming** (:meth:`MotionGenerator.stream` -> :class:`MotionStream`): audio is pushed
  in pieces of any size; frames come out in chunks of ``chunk_frames``, each as soon as the
  audio ``lookahead_frames`` frames past the chunk has arrived. The causal encoder's window
  is recomputed over its receptive field, so the face output equals a whole-sequence
  streaming-mode run exactly; the body flow takes the previous chunk's last frames as
  context. State is bounded: a few seconds of samples and mel frames.

Both paths then scale the head's rigid motion by the model's fitted gains of that mode
(:mod:`cospeech.motion.head_calibration`; ``head_gain`` in the model's ``config.json``),
about a moving centre smoothed both ways offline and forwards only when streaming (no
future frames; the state is a few numbers per rigid parameter).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cospeech.audio.features import (
    MelConfig,
    frame_stacked_mel,
    log_mel_frames,
    num_mel_frames,
    num_video_frames,
)
from cospeech.audio.load import SAMPLE_RATE, load_audio, prepare_samples
from cospeech.errors import InputError, check_range
from cospeech.motion.checkpoint import load_head_calibration, load_motion_model
from cospeech.motion.config import MEL_PER_FRAME
from cospeech.motion.flow import sample_continuation
from cospeech.motion.head_calibration import (
    HEAD_POINTS,
    MAX_GAIN,
    Band,
    HeadCalibration,
    HeadGains,
    StreamBand,
    calibrate_points,
    head_fit_mask,
    offline_band,
)
from cospeech.motion.model import MotionModel
from cospeech.motion.normalize import BODY_POINTS, FACE_POINTS, from_offsets, normalize_reference
from cospeech.motion.style_vector import STYLE_DIM
from cospeech.pose.schema import NUM_KEYPOINTS
from cospeech.pose.sequence import PoseSequence
from cospeech.progress import Progress, track

DEFAULT_FPS = 25.0
FPS_RANGE = (1.0, 120.0)  # frame rates the motion and video commands accept (as data synth)
MAX_SEED = 2**32 - 1  # seeds are 32-bit: numpy's and torch's generators take them all
STREAM_PIECE_S = 5.0  # generate(streaming=True) pushes this much audio at a time (progress);
# smaller pieces cost more per-push overhead (0.4 s pieces: 1.7x the compute of one push)


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run with ``count`` intra-op threads, then restore the previous setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass(frozen=True)
class MotionOptions:
    """Inference settings. ``flow_steps`` 0 = the model's own setting; ``temperature``: scale
    of the body flow's initial noise. ``threads``: torch
    intra-op threads while generating (at most the machine's CPU count); the model is
    small, so one thread is fastest (a second one only adds synchronisation, ruinous on a
    busy machine: see docs/benchmarks/motion.md). ``chunk_frames``: frames per streaming
    chunk, at most one offline window (``window_frames``). ``head_gain``: one gain on
    every rigid head-motion parameter in place of the model's calibrated gains, in the
    model's bands (None: the model's gains; 1: the model's raw motion). Range errors name
    the command's flags (``--chunk-frames``)."""

    fps: float = DEFAULT_FPS
    seed: int = 0
    window_frames: int = 200
    overlap_frames: int = 25
    chunk_frames: int = 10
    flow_steps: int = 0
    threads: int = 1
    temperature: float = 1.0
    head_gain: float | None = None

    def __post_init__(self) -> None:
        check_range("--fps", self.fps, *FPS_RANGE)
        check_range("--seed", self.seed, 0, MAX_SEED)
        if not 0 < self.overlap_frames < self.window_frames:
            raise InputError("motion: needs 0 < overlap_frames < window_frames")
        check_range("--chunk-frames", self.chunk_frames, 1, self.window_frames)
        check_range("--threads", self.threads, 1, os.cpu_count() or 1)
        if not self.temperature > 0:
            raise InputError(f"motion: temperature must be positive, got {self.temperature}")
        if self.head_gain is not None:
            check_range("--head-gain", self.head_gain, 0.0, MAX_GAIN)


@dataclass
class FrameOutputs:
    """Model outputs for a run of frames: standardised ``face [T, F]``, ``body [T, Y]``
    and visibility logits ``logits [T, 133]``."""

    face: torch.Tensor
    body: torch.Tensor
    logits: torch.Tensor


def _crossfade(previous: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """Blend ``[N, C]`` from ``previous`` (weight 1 -> 0) into ``new`` along the frames."""
    n = previous.shape[0]
    w = (torch.arange(n, dtype=previous.dtype) + 1) / (n + 1)
    return previous * (1 - w[:, None]) + new * w[:, None]


class MotionGenerator:
    """A trained motion model with its reference pose handling (see module docstring)."""

    def __init__(
        self,
        model: MotionModel,
        info: dict | None = None,
        head_calibration: HeadCalibration | None = None,
    ) -> None:
        self.model = model.eval()
        self.info = dict(info or {})
        self.config = model.config
        self.head_calibration = head_calibration or HeadCalibration()

    @classmethod
    def load(cls, folder: str | Path | None = None) -> MotionGenerator:
        """From a model folder (default: the shipped ``cospeech/assets/motion``)."""
        model, info = load_motion_model(folder)
        return cls(model, info, load_head_calibration(folder))

    # -- inputs ------------------------------------------------------------------------------
    def _reference(self, reference: PoseSequence) -> tuple[np.ndarray, torch.Tensor]:
        if not isinstance(reference, PoseSequence):
            raise InputError("motion: the reference must be a PoseSequence")
        keypoints = reference.keypoints[0]
        normalized = torch.from_numpy(normalize_reference(keypoints))[None]
        return keypoints, normalized

    def _style(self, style: np.ndarray | None) -> torch.Tensor | None:
        if style is None:
            return None
        style = np.asarray(style, dtype=np.float32)
        if style.shape != (STYLE_DIM,) or not np.isfinite(style).all():
            raise InputError(f"motion: style must be {STYLE_DIM} finite numbers")
        return torch.from_numpy(style)[None]

    def _steps(self, options: MotionOptions) -> int:
        return options.flow_steps or self.config.flow_steps

    def gains(self, options: MotionOptions, streaming: bool) -> HeadGains:
        """The model's calibrated head gains for the mode, with ``options.head_gain`` on
        every parameter when it is set."""
        gains = self.head_calibration.mode(streaming)
        return gains if options.head_gain is None else gains.with_gain(options.head_gain)

    def rest_points(self, reference: np.ndarray) -> np.ndarray:
        """The model's rest pose ``[133, 2]`` (pixels): ``reference [133, 3]`` plus the
        training set's mean offsets."""
        m = self.model
        offsets = np.zeros((1, reference.shape[0], 2), np.float32)
        offsets[0, list(FACE_POINTS)] = m.face_mean.numpy().reshape(-1, 2)
        offsets[0, list(BODY_POINTS)] = m.body_mean.numpy().reshape(-1, 2)
        return from_offsets(offsets, reference)[0]

    def calibrate_head(
        self,
        pose: PoseSequence,
        reference: np.ndarray,
        gains: HeadGains,
        band: Band = offline_band,
    ) -> PoseSequence:
        """``pose`` with its head's rigid motion, fitted onto the rest pose's head
        (``reference [133, 3]``), scaled by ``gains`` in ``band`` (default: offline's)."""
        if gains.identity:
            return pose
        head = list(HEAD_POINTS)
        keypoints = pose.keypoints.copy()
        keypoints[:, head, :2] = calibrate_points(
            keypoints[:, head, :2], self.rest_points(reference)[head],
            head_fit_mask(reference[head, 2]), gains, pose.fps, band,
        )  # fmt: skip
        return PoseSequence(keypoints, pose.fps, pose.width, pose.height)

    # -- model runs ----------------------------------------------------------------------------
    @torch.no_grad()
    def run_frames(
        self,
        mel: np.ndarray,
        reference: torch.Tensor,
        style: torch.Tensor | None,
        streaming: bool,
        context: torch.Tensor | None,
        steps: int,
        generator: torch.Generator,
        keep: slice = slice(None),
        temperature: float = 1.0,
    ) -> FrameOutputs:
        """Run the model on stacked mel ``[T, M]``; outputs for frames ``keep`` only.
        ``context [P, Y]``: standardised body values of the first ``P`` kept frames."""
        mel_tensor = torch.from_numpy(mel)[None]
        condition = self.model.condition(mel_tensor, reference, style, streaming)[:, keep]
        if context is None:
            context = torch.zeros(0, self.model.flow.output.out_features)
        known = context[None, : condition.shape[1]]
        body = sample_continuation(self.model.flow, condition, known, steps, generator, temperature)
        return FrameOutputs(
            face=self.model.face(condition)[0],
            body=body[0],
            logits=self.model.confidence_logits(condition)[0],
        )

    def to_pose(
        self, outputs: FrameOutputs, reference: np.ndarray, fps: float, width: int, height: int
    ) -> PoseSequence:
        """Standardised outputs -> keypoints in the reference image's pixels."""
        m = self.model
        frames = outputs.face.shape[0]
        offsets = np.zeros((frames, NUM_KEYPOINTS, 2), np.float32)
        face = (outputs.face * m.face_std + m.face_mean).numpy().reshape(frames, -1, 2)
        body = (outputs.body * m.body_std + m.body_mean).numpy().reshape(frames, -1, 2)
        offsets[:, list(FACE_POINTS)] = face
        offsets[:, list(BODY_POINTS)] = body
        keypoints = np.zeros((frames, NUM_KEYPOINTS, 3), np.float32)
        keypoints[..., :2] = from_offsets(offsets, reference)
        visible = torch.sigmoid(outputs.logits).numpy() * (reference[None, :, 2] > 0)
        keypoints[..., 2] = np.clip(visible, 0.0, 1.0)
        return PoseSequence(keypoints, fps, width, height)

    # -- offline -------------------------------------------------------------------------------
    def generate(
        self,
        audio: np.ndarray | str | Path,
        reference: PoseSequence,
        style: np.ndarray | None = None,
        options: MotionOptions | None = None,
        streaming: bool = False,
        progress: bool = False,
    ) -> PoseSequence:
        """Speech (a file path, or 16 kHz mono samples ``[N]``) -> ``[T, 133, 3]`` keypoints
        at ``options.fps`` in the reference's pixels, ``T = round(N / 16000 * fps)``.
        ``streaming`` runs the chunked streaming path over the whole signal instead."""
        options = options or MotionOptions()
        if isinstance(audio, (str, Path)):
            samples = load_audio(audio)
        else:
            samples = prepare_samples(audio, SAMPLE_RATE)
        if streaming:
            return self._streamed(samples, reference, style, options, progress)
        with torch_threads(options.threads):
            return self._offline(samples, reference, style, options, progress)

    def _streamed(
        self,
        samples: np.ndarray,
        reference: PoseSequence,
        style: np.ndarray | None,
        options: MotionOptions,
        progress: bool,
    ) -> PoseSequence:
        """The streaming path over a whole signal, pushed a whole number of chunks (about
        ``STREAM_PIECE_S`` seconds) at a time for progress; the chunks, and so the output,
        are the same as for one push of everything."""
        stream = self.stream(reference, style, options)
        chunks = max(1, round(STREAM_PIECE_S * options.fps / options.chunk_frames))
        step = max(1, round(chunks * options.chunk_frames / options.fps * SAMPLE_RATE))
        total = num_video_frames(samples.size, SAMPLE_RATE, options.fps)
        pieces = []
        with Progress("motion (streaming)", total, "frame", enabled=progress) as bar:
            for start in range(0, samples.size, step):
                pieces.append(stream.push(samples[start : start + step]))
                bar.update(len(pieces[-1]) if pieces[-1] is not None else 0)
            pieces.append(stream.finish())
            bar.update(len(pieces[-1]) if pieces[-1] is not None else 0)
        return PoseSequence(
            np.concatenate([p.keypoints for p in pieces if p is not None]),
            options.fps, reference.width, reference.height,
        )  # fmt: skip

    def _offline(
        self,
        samples: np.ndarray,
        reference: PoseSequence,
        style: np.ndarray | None,
        options: MotionOptions,
        progress: bool,
    ) -> PoseSequence:
        ref_keypoints, ref_tensor = self._reference(reference)
        style_tensor = self._style(style)
        frames = num_video_frames(samples.size, SAMPLE_RATE, options.fps)
        mel = frame_stacked_mel(samples, options.fps, frames, MEL_PER_FRAME)
        generator = torch.Generator().manual_seed(options.seed)
        steps = self._steps(options)
        window, overlap = options.window_frames, options.overlap_frames
        context_frames = min(self.config.context_frames, overlap)
        starts = list(range(0, max(1, frames - overlap), window - overlap))
        face = torch.zeros(frames, self.model.face_head[-1].out_features)
        body = torch.zeros(frames, self.model.flow.output.out_features)
        logits = torch.zeros(frames, NUM_KEYPOINTS)
        for i, start in enumerate(track(starts, "motion", unit="window", enabled=progress)):
            stop = min(frames, start + window)
            context = body[start : start + context_frames] if i > 0 else None
            out = self.run_frames(
                mel[start:stop], ref_tensor, style_tensor, False, context, steps, generator,
                temperature=options.temperature,
            )  # fmt: skip
            if i == 0:
                face[start:stop] = out.face
                body[start:stop] = out.body
                logits[start:stop] = out.logits
                continue
            blend = slice(start, min(stop, start + overlap))
            n = blend.stop - blend.start
            face[blend] = _crossfade(face[blend], out.face[:n])
            logits[blend] = _crossfade(logits[blend], out.logits[:n])
            fade = slice(start + context_frames, blend.stop)
            body[fade] = _crossfade(body[fade], out.body[context_frames:n])
            face[blend.stop : stop] = out.face[n:]
            body[blend.stop : stop] = out.body[n:]
            logits[blend.stop : stop] = out.logits[n:]
        outputs = FrameOutputs(face=face, body=body, logits=logits)
        pose = self.to_pose(outputs, ref_keypoints, options.fps, reference.width, reference.height)
        return self.calibrate_head(pose, ref_keypoints, self.gains(options, streaming=False))

    # -- streaming -----------------------------------------------------------------------------
    def stream(
        self,
        reference: PoseSequence,
        style: np.ndarray | None = None,
        options: MotionOptions | None = None,
    ) -> MotionStream:
        """A streaming session for one reference; push 16 kHz mono samples into it."""
        return MotionStream(self, reference, style, options or MotionOptions())


class MotionStream:
    """Chunked streaming generation (see the module docstring).

    ``push(samples)`` returns the frames completed by the new audio (None when none are);
    ``finish()`` returns the rest. Samples should already be at a normal speech level
    (:func:`cospeech.audio.load.load_audio` normalises files).
    """

    def __init__(
        self,
        generator: MotionGenerator,
        reference: PoseSequence,
        style: np.ndarray | None,
        options: MotionOptions,
    ) -> None:
        self.gen = generator
        self.options = options
        self.mel_config = MelConfig()
        self.reference_keypoints, self.reference = generator._reference(reference)
        self.width, self.height = reference.width, reference.height
        self.style = generator._style(style)
        self.head_gains = generator.gains(options, streaming=True)
        self.head_band = StreamBand()
        self.rng = torch.Generator().manual_seed(options.seed)
        cfg = generator.config
        self.steps = generator._steps(options)
        self.temperature = options.temperature
        self.mel_ratio = self.mel_config.frame_rate / (MEL_PER_FRAME * options.fps)
        half = self.mel_config.n_fft // 2
        # Samples are kept from global index ``sample_start`` (negative = virtual zeros).
        self.samples = np.zeros(half, np.float32)
        self.sample_start = -half
        self.received = 0
        # Log-mel frames computed so far, from global mel frame ``mel_start``.
        self.mel = np.zeros((0, self.mel_config.n_mels), np.float32)
        self.mel_start = 0
        self.next_frame = 0
        self.body_context: torch.Tensor | None = None
        self.past = cfg.receptive_past
        self.lookahead = cfg.lookahead_frames
        self.finished = False

    @property
    def latency_s(self) -> float:
        """Audio needed past a chunk's end before the chunk comes out (seconds): the
        encoder's lookahead frames plus half an STFT window (at 25 fps: 176 ms)."""
        last_mel = self._last_mel_index(self.lookahead)
        return (last_mel * self.mel_config.hop_length + self.mel_config.n_fft // 2) / SAMPLE_RATE

    def _last_mel_index(self, frame: int) -> int:
        """The last mel frame that video frame ``frame - 1``'s stacked mel reads (+1 for
        the interpolation neighbour)."""
        return int(np.floor((MEL_PER_FRAME * frame - 1) * self.mel_ratio)) + 1

    def _compute_mel(self, total_samples: int | None) -> None:
        """Extend ``self.mel`` with every frame whose window has arrived (all frames up to
        the signal's end when ``total_samples`` is given)."""
        hop, n_fft = self.mel_config.hop_length, self.mel_config.n_fft
        first = self.mel_start + self.mel.shape[0]
        if total_samples is None:
            last = (self.received - n_fft // 2) // hop
        else:
            last = num_mel_frames(total_samples, self.mel_config) - 1
        if last < first:
            return
        begin = first * hop - n_fft // 2 - self.sample_start
        needed = begin + (last - first) * hop + n_fft
        segment = self.samples[begin:needed]
        if segment.size < needed - begin:
            segment = np.pad(segment, (0, needed - begin - segment.size))
        new = log_mel_frames(segment, last - first + 1, self.mel_config)
        self.mel = np.concatenate([self.mel, new])

    def _stacked(self, start: int, stop: int, total_mel: int | None) -> np.ndarray:
        """Stacked mel ``[stop - start, M]`` for video frames ``[start, stop)``."""
        count = MEL_PER_FRAME * (stop - start)
        times = (MEL_PER_FRAME * start + np.arange(count)) * self.mel_ratio
        left = np.floor(times).astype(np.int64)
        frac = (times - left)[:, None].astype(np.float32)
        floor = self.mel_config.floor_value

        def fetch(index: np.ndarray) -> np.ndarray:
            local = index - self.mel_start
            out = np.full((index.size, self.mel.shape[1]), floor, np.float32)
            inside = (local < self.mel.shape[0]) if total_mel is None else (index < total_mel)
            out[inside] = self.mel[local[inside]]
            return out

        values = fetch(left) * (1 - frac) + fetch(left + 1) * frac
        return values.astype(np.float32).reshape(stop - start, -1)

    def _available_frames(self) -> int:
        """Video frames whose stacked mel is fully computed (before the end is known)."""
        computed = self.mel_start + self.mel.shape[0]
        frames = int(computed / self.mel_ratio / MEL_PER_FRAME) + 1
        while frames > 0 and self._last_mel_index(frames) >= computed:
            frames -= 1
        return frames

    def _emit(self, end: int, total_frames: int, total_mel: int | None) -> PoseSequence | None:
        """Generate chunks up to frame ``end`` (exclusive)."""
        outputs: list[FrameOutputs] = []
        chunk = self.options.chunk_frames
        while self.next_frame < end:
            start, stop = self.next_frame, min(self.next_frame + chunk, end)
            first = max(0, start - self.past)
            last = min(total_frames, stop + self.lookahead)
            mel = self._stacked(first, last, total_mel)
            context = self.body_context
            keep_from = start - (0 if context is None else context.shape[0])
            out = self.gen.run_frames(
                mel, self.reference, self.style, True, context, self.steps, self.rng,
                keep=slice(keep_from - first, stop - first), temperature=self.temperature,
            )  # fmt: skip
            skip = start - keep_from
            outputs.append(FrameOutputs(out.face[skip:], out.body[skip:], out.logits[skip:]))
            self.body_context = out.body[-self.gen.config.context_frames :]
            self.next_frame = stop
        self._trim()
        if not outputs:
            return None
        joined = FrameOutputs(
            face=torch.cat([o.face for o in outputs]),
            body=torch.cat([o.body for o in outputs]),
            logits=torch.cat([o.logits for o in outputs]),
        )
        pose = self.gen.to_pose(
            joined, self.reference_keypoints, self.options.fps, self.width, self.height
        )
        return self.gen.calibrate_head(
            pose, self.reference_keypoints, self.head_gains, self.head_band
        )

    def _trim(self) -> None:
        """Drop samples and mel frames that no future chunk can need."""
        keep_frame = max(0, self.next_frame - self.past - 1)
        keep_mel = int(np.floor(MEL_PER_FRAME * keep_frame * self.mel_ratio))
        drop = keep_mel - self.mel_start
        if drop > 0:
            self.mel = self.mel[drop:]
            self.mel_start = keep_mel
        hop, n_fft = self.mel_config.hop_length, self.mel_config.n_fft
        next_mel = self.mel_start + self.mel.shape[0]
        keep_sample = next_mel * hop - n_fft // 2
        drop = keep_sample - self.sample_start
        if drop > 0:
            self.samples = self.samples[drop:]
            self.sample_start = keep_sample

    def push(self, samples: np.ndarray) -> PoseSequence | None:
        """Add 16 kHz mono samples ``[n]``; returns the frames they complete, or None."""
        if self.finished:
            raise InputError("motion stream: push after finish")
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if not np.isfinite(samples).all():
            raise InputError("motion stream: samples contain NaN or infinite values")
        self.samples = np.concatenate([self.samples, samples])
        self.received += samples.size
        self._compute_mel(None)
        ready = self._available_frames() - self.lookahead
        ready -= (ready - self.next_frame) % self.options.chunk_frames
        if ready <= self.next_frame:
            return None
        with torch_threads(self.options.threads):
            return self._emit(ready, 2**62, None)

    def finish(self) -> PoseSequence | None:
        """End of audio: the remaining frames (None when there are none)."""
        if self.finished:
            return None
        self.finished = True
        if self.received == 0:
            raise InputError("motion stream: no audio was pushed")
        total_frames = num_video_frames(self.received, SAMPLE_RATE, self.options.fps)
        total_mel = num_mel_frames(self.received, self.mel_config)
        self._compute_mel(self.received)
        with torch_threads(self.options.threads):
            return self._emit(total_frames, total_frames, total_mel)
