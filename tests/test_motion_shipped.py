"""The shipped motion model (cospeech/assets/motion) on speech it never heard.

Truth for the mouth: the rule generator that made the training data, driven by espeak's
exact phoneme timings for the same utterance (a held-out voice variant, a new body).
"""

from __future__ import annotations

import numpy as np
import pytest

from cospeech.audio.espeak import VoiceParams, espeak_available, synthesize
from cospeech.data.synth.skeleton import neutral_pose, sample_geometry
from cospeech.data.synth.voices import HELD_OUT_VARIANTS
from cospeech.motion.checkpoint import SHIPPED_MODEL
from cospeech.motion.generate import MotionGenerator
from cospeech.motion.metrics import correlation, mouth_opening
from cospeech.motion.normalize import body_frame
from cospeech.motion.rules import GestureStyle, generate_motion, prosody_from_audio
from cospeech.pose.schema import LEFT_WRIST, RIGHT_WRIST
from cospeech.pose.sequence import PoseSequence

pytestmark = pytest.mark.skipif(not espeak_available(), reason="libespeak-ng not installed")
SIZE = 160
TEXT = "Well, I think we should meet again on Monday and talk about the plan."


@pytest.fixture(scope="module")
def generator():
    return MotionGenerator.load(SHIPPED_MODEL)


@pytest.fixture(scope="module")
def reference():
    geometry = sample_geometry(np.random.default_rng(12345))
    return PoseSequence(neutral_pose(geometry, SIZE, SIZE)[None], 25.0, SIZE, SIZE)


@pytest.fixture(scope="module")
def speech():
    voice = VoiceParams(variant=HELD_OUT_VARIANTS[0], pitch=40, rate=160)
    utterance = synthesize(TEXT, voice)
    pad = np.zeros(4000, np.float32)
    return np.concatenate([pad, utterance.audio, pad]), utterance


def test_mouth_follows_held_out_speech(generator, reference, speech):
    from cospeech.audio.load import prepare_samples
    from cospeech.audio.phonemes import PhonemeSegment

    audio, utterance = speech
    audio = prepare_samples(audio, 16000)
    pose = generator.generate(audio, reference)
    shift = 0.25
    phonemes = [PhonemeSegment("SIL", 0.0, shift)] + [
        PhonemeSegment(s.phone, s.start + shift, s.end + shift, s.stress, s.word_index)
        for s in utterance.phonemes
    ]
    duration = len(pose) / 25.0
    if phonemes[-1].end < duration:
        phonemes.append(PhonemeSegment("SIL", phonemes[-1].end, duration))
    prosody = prosody_from_audio(audio, 16000, 25.0, len(pose))
    truth = generate_motion(phonemes, duration, 25.0, reference, GestureStyle(),
                            np.random.default_rng(0), prosody=prosody).pose  # fmt: skip
    assert correlation(mouth_opening(pose.keypoints), mouth_opening(truth.keypoints)) > 0.6


def test_silence_keeps_the_mouth_closed_and_the_body_alive(generator, reference, speech):
    silent = generator.generate(np.zeros(3 * 16000, np.float32), reference)
    talking = generator.generate(speech[0], reference)
    scale = body_frame(reference.keypoints[0]).scale
    closed = mouth_opening(silent.keypoints) / scale
    assert closed.max() < 0.3 * (mouth_opening(talking.keypoints) / scale).max()
    wrists = silent.points[:, [LEFT_WRIST, RIGHT_WRIST]]
    assert wrists.std(axis=0).max() > 1e-3 * scale  # idle motion, not a frozen pose


def test_shipped_model_is_small(generator):
    size = sum(p.stat().st_size for p in SHIPPED_MODEL.iterdir())
    assert size < 8 * 2**20
