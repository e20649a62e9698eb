"""Motion for generation: recognised phones get syllable words so the rules can gesture."""

from __future__ import annotations

from cospeech.audio.phonemes import NO_WORD, SILENCE, PhonemeSegment
from cospeech.pipeline.speech_motion import syllables_as_words


def test_each_syllable_becomes_a_word_and_silence_stays_wordless():
    phones = [SILENCE, "B", "AA", "S", "T", "AH", "IY", SILENCE, "N", "OW"]
    segments = [PhonemeSegment(p, i * 0.1, (i + 1) * 0.1) for i, p in enumerate(phones)]
    words = [s.word_index for s in syllables_as_words(segments)]
    #          SIL      B  AA  S  T  AH  IY  SIL      N  OW
    assert words == [NO_WORD, 0, 0, 1, 1, 1, 2, NO_WORD, 3, 3]
    assert [s.phone for s in syllables_as_words(segments)] == phones
