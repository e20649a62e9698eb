"""Speech -> keypoints for generation: the learned motion model when shipped, else rules.

The learned model (:class:`cospeech.motion.generate.MotionGenerator`, weights in
``cospeech/assets/motion``) is used when its weights are present. Otherwise the rule
baseline (:mod:`cospeech.motion.rules`) moves the reference pose from phoneme timings
recognised in the audio (pocketsphinx allphone) and prosody measured on it. Recognised
phones carry no word boundaries, which the rules' beat gestures hang on; each syllable
(a vowel with the consonants before it) stands in for a word
(:func:`syllables_as_words`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from cospeech.audio.load import SAMPLE_RATE
from cospeech.audio.phonemes import NO_WORD, SILENCE, VOWELS, PhonemeSegment
from cospeech.pose.sequence import PoseSequence


def learned_model_available() -> bool:
    """Whether the trained motion model ships with this installation."""
    from cospeech.motion.checkpoint import CONFIG_NAME, SHIPPED_MODEL, WEIGHTS_NAME

    return (SHIPPED_MODEL / WEIGHTS_NAME).is_file() and (SHIPPED_MODEL / CONFIG_NAME).is_file()


def speech_motion(
    audio: np.ndarray,
    reference: PoseSequence,
    fps: float,
    seed: int,
    use_learned: bool = True,
    progress: bool = False,
) -> tuple[PoseSequence, str]:
    """Keypoints ``[round(N / 16000 * fps), 133, 3]`` in the reference's pixels for 16 kHz
    mono speech ``audio`` ``[N]``, and the name of the motion source used (``progress``:
    of the learned model's windows)."""
    if use_learned and learned_model_available():
        from cospeech.motion.generate import MotionGenerator, MotionOptions

        options = MotionOptions(fps=fps, seed=seed)
        motion = MotionGenerator.load().generate(
            audio, reference, options=options, progress=progress
        )
        return motion, "learned"
    return rule_motion(audio, reference, fps, seed), "rules"


def rule_motion(audio: np.ndarray, reference: PoseSequence, fps: float, seed: int) -> PoseSequence:
    """The rule baseline on recognised phonemes (see the module docstring)."""
    from cospeech.audio.phone_recognition import recognize_phones
    from cospeech.motion.rules import generate_motion, prosody_from_audio, sample_gesture_style

    duration = len(audio) / SAMPLE_RATE
    frames = round(duration * fps)
    rng = np.random.default_rng(seed)
    style_rng, motion_rng = rng.spawn(2)
    phonemes = syllables_as_words(recognize_phones(audio))
    motion = generate_motion(
        phonemes, duration, fps, reference, sample_gesture_style(style_rng), motion_rng,
        prosody=prosody_from_audio(audio, SAMPLE_RATE, fps, frames),
    )  # fmt: skip
    return motion.pose


def syllables_as_words(segments: Sequence[PhonemeSegment]) -> list[PhonemeSegment]:
    """Give every syllable its own ``word_index``: a new one starts at the first consonant
    after a vowel or silence, or at a vowel that follows a vowel. Silence stays wordless."""
    out, word, seen_vowel = [], -1, True
    for segment in segments:
        if segment.phone == SILENCE:
            out.append(replace(segment, word_index=NO_WORD))
            seen_vowel = True
            continue
        vowel = segment.phone in VOWELS
        if seen_vowel:
            word += 1
        seen_vowel = vowel
        out.append(replace(segment, word_index=word))
    return out
