"""cospeech.audio.phone_recognition against espeak's own phoneme timings."""

from __future__ import annotations

import numpy as np
import pytest

from cospeech.audio.espeak import espeak_available, synthesize
from cospeech.audio.features import phone_ids
from cospeech.audio.phone_recognition import _to_segments, align_phones, recognize_phones
from cospeech.audio.phonemes import PHONE_INDEX, validate_segments
from cospeech.errors import InputError

pytestmark = pytest.mark.skipif(not espeak_available(), reason="libespeak-ng not installed")
TEXT = "the quick brown fox jumps over the lazy dog"


@pytest.fixture(scope="module")
def utterance():
    speech = synthesize(TEXT)
    lead = np.zeros(4000, np.float32)  # 0.25 s of silence before the speech
    audio = np.concatenate([lead, speech.audio * 4])
    return audio, speech


def test_forced_alignment_agrees_with_espeak_timings(utterance):
    audio, speech = utterance
    segments = align_phones(audio, TEXT.upper() + ".")
    validate_segments(segments)
    assert segments[0].start == 0.0 and segments[-1].end == pytest.approx(len(audio) / 16000)
    # Compare frame by frame (100 Hz) with espeak's segments, shifted by the lead-in.
    count = int(speech.duration * 100)
    truth = phone_ids(speech.phonemes, 100.0, count)
    aligned = phone_ids(segments, 100.0, count + 25)[25:]
    speech_frames = truth != PHONE_INDEX["SIL"]
    agreement = (truth == aligned)[speech_frames].mean()
    assert agreement > 0.6


def test_allphone_covers_the_signal_and_finds_speech(utterance):
    audio, speech = utterance
    segments = recognize_phones(audio)
    validate_segments(segments)
    assert segments[-1].end == pytest.approx(len(audio) / 16000)
    spoken = [s for s in segments if s.phone != "SIL"]
    assert len(spoken) > 10  # some 35 phones were spoken
    first_spoken = next(s.start for s in speech.phonemes if s.phone != "SIL")
    assert spoken[0].start == pytest.approx(0.25 + first_spoken, abs=0.2)


def test_silence_is_one_silence_segment():
    segments = recognize_phones(np.zeros(16000, np.float32))
    assert [s.phone for s in segments] == ["SIL"]


def test_unknown_words_are_refused(utterance):
    with pytest.raises(InputError, match="not in the dictionary"):
        align_phones(utterance[0], "the qwxzv fox")


def test_to_segments_fills_gaps_and_merges_silences():
    segments = _to_segments([("SIL", 0, 10), ("SIL", 10, 5), ("AH1", 20, 10)], 0.5)
    assert [(s.phone, s.start, s.end, s.stress) for s in segments] == [
        ("SIL", 0.0, 0.2, 0), ("AH", 0.2, 0.3, 1), ("SIL", 0.3, 0.5, 0),
    ]  # fmt: skip
