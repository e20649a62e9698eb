"""Built-in text bank: variety, determinism, word-count ranges, clean text for espeak."""

import re

import numpy as np
import pytest

from cospeech.data.synth.text_bank import (
    MAX_SENTENCES,
    SENTENCE_KINDS,
    count_words,
    sample_sentence,
    sample_text,
)
from cospeech.errors import InputError

SENTENCE = re.compile(r"[A-Z][A-Za-z0-9 ,'$]*[.?!]")


def test_thousand_draws_rarely_repeat():
    rng = np.random.default_rng(0)
    texts = [sample_text(rng, 5, 30) for _ in range(1000)]
    assert len(set(texts)) > 900


def test_deterministic_for_a_seed():
    first = [sample_text(np.random.default_rng(7), 8, 25) for _ in range(3)]
    assert first[0] == first[1] == first[2]
    rng_a, rng_b = np.random.default_rng(11), np.random.default_rng(11)
    assert [sample_text(rng_a) for _ in range(20)] == [sample_text(rng_b) for _ in range(20)]
    assert sample_text(np.random.default_rng(1)) != sample_text(np.random.default_rng(2))


@pytest.mark.parametrize(("low", "high"), [(1, 6), (8, 30), (12, 12), (25, 40)])
def test_word_counts_stay_in_range(low, high):
    rng = np.random.default_rng(3)
    for _ in range(100):
        text = sample_text(rng, low, high)
        assert low <= count_words(text) <= high
        sentences = re.findall(r"[^.?!]+[.?!]", text)
        assert 1 <= len(sentences) <= MAX_SENTENCES


def test_sentences_are_clean_capitalised_and_punctuated():
    rng = np.random.default_rng(5)
    for _ in range(500):
        sentence = sample_sentence(rng)
        assert SENTENCE.fullmatch(sentence), sentence
        assert "  " not in sentence and " ," not in sentence
    # every kind of template is reachable and yields text of speakable length
    for kind in SENTENCE_KINDS:
        for seed in range(20):
            assert 3 <= count_words(kind(np.random.default_rng(seed))) <= 22


def test_variety_of_sentence_shapes():
    rng = np.random.default_rng(9)
    sentences = [sample_sentence(rng) for _ in range(400)]
    assert sum(s.endswith("?") for s in sentences) > 20
    assert sum(s.endswith("!") for s in sentences) > 10
    assert sum(s.count(",") >= 2 for s in sentences) > 40  # lists and steps: pauses
    assert sum(bool(re.search(r"\d", s)) for s in sentences) > 10
    words = {w.strip(",.?!").lower() for s in sentences for w in s.split()}
    assert len(words) > 300


def test_bad_ranges_are_input_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(InputError):
        sample_text(rng, 0, 10)
    with pytest.raises(InputError):
        sample_text(rng, 10, 5)
    with pytest.raises(InputError, match="no text"):
        sample_text(rng, 200, 300)
