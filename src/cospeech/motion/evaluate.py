"""``cospeech eval motion``: the learned model against two baselines on a dataset split.

Methods (every one sees the clip's audio and its reference pose, nothing else):

* ``learned (offline)`` / ``learned (streaming)``: the motion model, both modes;
* ``rules (allphone)``: the rule baseline (:mod:`cospeech.motion.rules`) driven by what the
  audio alone gives it: phones from pocketsphinx allphone recognition, prosody from the
  waveform, the default gesture style;
* ``mean pose``: the reference plus the training set's mean offset, in every frame.

Two reference rows are printed beside them: ``rules (oracle phonemes)`` (the rules with the
corpus's exact phoneme timings, words and stress, default style: the process that made the
synthetic data, minus the speaker's style and random draws) and ``ground truth`` (the
measures of the true motion itself, for the beat-alignment and variance scales).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cospeech.errors import check_range
from cospeech.motion.dataset import MotionClip, load_split
from cospeech.motion.generate import MAX_SEED, MotionGenerator, MotionOptions
from cospeech.motion.metrics import (
    beat_alignment,
    hand_variance,
    lip_vertex_error,
    motion_beats,
    mouth_opening_correlation,
    syllable_onsets,
)
from cospeech.motion.normalize import body_frame
from cospeech.pose.sequence import PoseSequence
from cospeech.progress import track

LEARNED_OFFLINE = "learned (offline)"
LEARNED_STREAMING = "learned (streaming)"
RULES_ALLPHONE = "rules (allphone)"
MEAN_POSE = "mean pose"
RULES_ORACLE = "rules (oracle phonemes)"
GROUND_TRUTH = "ground truth"
METHODS = (LEARNED_OFFLINE, LEARNED_STREAMING, RULES_ALLPHONE, MEAN_POSE, RULES_ORACLE,
           GROUND_TRUTH)  # fmt: skip
RULE_SEED = 0


@dataclass
class MethodScores:
    """Per-clip measures of one method."""

    lip_error: list[float] = field(default_factory=list)
    mouth_correlation: list[float] = field(default_factory=list)
    beat_alignment: list[float] = field(default_factory=list)
    hand_variance: list[float] = field(default_factory=list)
    truth_hand_variance: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        def mean(values: list[float]) -> float:
            finite = [v for v in values if np.isfinite(v)]
            return float(np.mean(finite)) if finite else float("nan")

        truth = mean(self.truth_hand_variance)
        return {
            "lip_error_px": mean(self.lip_error),
            "mouth_correlation": mean(self.mouth_correlation),
            "beat_alignment": mean(self.beat_alignment),
            "hand_diversity_ratio": mean(self.hand_variance) / truth if truth > 0 else np.nan,
        }


def mean_pose(generator: MotionGenerator, clip: MotionClip) -> np.ndarray:
    """The reference plus the model's training-set mean offsets, repeated ``[T, 133, 3]``."""
    keypoints = np.zeros((clip.frames, clip.reference.shape[0], 3), np.float32)
    keypoints[..., :2] = generator.rest_points(clip.reference)
    keypoints[..., 2] = clip.reference[:, 2]
    return keypoints


def rule_motion(clip: MotionClip, phonemes) -> np.ndarray:
    """The rule baseline for a clip with the given phoneme segments ``[T, 133, 3]``."""
    from cospeech.motion.rules import GestureStyle, generate_motion, prosody_from_audio

    prosody = prosody_from_audio(clip.audio, 16000, clip.fps, clip.frames)
    motion = generate_motion(
        phonemes, clip.frames / clip.fps, clip.fps, clip.reference_pose, GestureStyle(),
        np.random.default_rng(RULE_SEED), prosody=prosody,
    )  # fmt: skip
    return motion.pose.keypoints


def score_clip(scores: MethodScores, predicted: np.ndarray, clip: MotionClip) -> None:
    truth = clip.keypoints
    scale = body_frame(clip.reference).scale
    scores.lip_error.append(lip_vertex_error(predicted, truth))
    scores.mouth_correlation.append(mouth_opening_correlation(predicted, truth))
    onsets = syllable_onsets(clip.phonemes or [])
    scores.beat_alignment.append(beat_alignment(motion_beats(predicted, clip.fps, scale), onsets))
    scores.hand_variance.append(hand_variance(predicted))
    scores.truth_hand_variance.append(hand_variance(truth))


def evaluate(
    model: str | Path | None,
    data: str | Path,
    split: str = "test",
    clips: int = 0,
    seed: int = 0,
    progress: bool = False,
    on_clip: Callable[[MotionClip, dict[str, np.ndarray]], None] | None = None,
) -> dict[str, dict[str, float]]:
    """Scores of every method in :data:`METHODS` on the first ``clips`` clips (0 = all) of
    ``split`` of dataset ``data``; a score without a value (a correlation of a still mouth)
    is NaN (``null`` in JSON).

    ``on_clip(clip, outputs)`` is called with each clip's keypoints by method (for drawing).
    """
    from cospeech.audio.phone_recognition import recognize_phones

    check_range("--clips", clips, 0)
    check_range("--seed", seed, 0, MAX_SEED)
    generator = MotionGenerator.load(model)
    loaded = load_split(data, split, clips, progress=progress)
    scores = {name: MethodScores() for name in METHODS}
    for clip in track(loaded, "eval motion", unit="clip", enabled=progress):
        options = MotionOptions(fps=clip.fps, seed=seed)
        reference = PoseSequence(clip.reference[None], clip.fps, clip.width, clip.height)
        outputs = {
            LEARNED_OFFLINE: generator.generate(clip.audio, reference, options=options).keypoints,
            LEARNED_STREAMING: generator.generate(
                clip.audio, reference, options=options, streaming=True
            ).keypoints,
            RULES_ALLPHONE: rule_motion(clip, recognize_phones(clip.audio)),
            MEAN_POSE: mean_pose(generator, clip),
            GROUND_TRUTH: clip.keypoints,
        }
        if clip.phonemes is not None:
            outputs[RULES_ORACLE] = rule_motion(clip, clip.phonemes)
        for name, keypoints in outputs.items():
            score_clip(scores[name], keypoints, clip)
        if on_clip is not None:
            on_clip(clip, outputs)
    return {name: s.summary() for name, s in scores.items() if s.lip_error}


def format_table(results: dict[str, dict[str, float]]) -> str:
    """A Markdown table of :func:`evaluate`'s results."""
    lines = [
        "| method | lip error (px) | mouth-opening corr. | beat alignment | hand diversity |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['lip_error_px']:.3f} | {r['mouth_correlation']:.3f} | "
            f"{r['beat_alignment']:.3f} | {r['hand_diversity_ratio']:.2f} |"
        )
    return "\n".join(lines)
