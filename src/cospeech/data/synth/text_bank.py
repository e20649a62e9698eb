"""Built-in English text for the synthetic speakers: conversational sentences, built
combinatorially so that clips rarely repeat.

Sentences come from a dozen kinds of templates (statements, opinions, questions,
exclamations, comma lists, sequences of steps, numbers, comparisons, stories, advice)
filled from word lists of subjects, past-tense verb phrases, objects, places, times,
adjectives and numbers. Together they give hundreds of thousands of distinct sentences,
the kind of thing a person says while gesturing. Only ASCII letters, digits and simple
punctuation (, . ? ! ') are used, which espeak reads without surprises; commas make short
pauses, sentence ends longer ones.

``sample_text`` joins 1-3 sentences into a clip text with a word count in a given range;
it is deterministic for a given generator state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from cospeech.errors import InputError

MAX_SENTENCES = 3
MAX_ATTEMPTS = 1000
"""Draws of sentence groups tried before ``sample_text`` gives up on a word-count range."""

SUBJECTS = (
    "I", "we", "my sister", "my brother", "our neighbour", "my friend Sam", "the whole team",
    "my grandmother", "the kids", "our manager", "a friend of mine", "my cousin Anna",
    "the new guy at work", "my dad", "my mom", "everyone in the office", "the teacher",
    "our landlord", "my roommate", "the two of us",
)  # fmt: skip
ACTION_GROUPS: tuple[tuple[tuple[tuple[str, str], ...], tuple[str, ...]], ...] = (
    (  # around the house
        (("painted", "paint"), ("fixed", "fix"), ("cleaned", "clean"), ("repaired", "repair"),
         ("measured", "measure"), ("rearranged", "rearrange"), ("emptied", "empty")),
        ("the whole kitchen", "the garden fence", "the front door", "the spare room",
         "the bookshelf", "the window frames", "the garage", "the old shed", "the attic"),
    ),
    (  # things
        (("bought", "buy"), ("sold", "sell"), ("found", "find"), ("lost", "lose"),
         ("borrowed", "borrow"), ("returned", "return"), ("ordered", "order"),
         ("carried", "carry"), ("wrapped", "wrap"), ("moved", "move")),
        ("an old bicycle", "a new sofa", "the tickets", "a wooden chair", "the map",
         "the blue jacket", "my laptop", "three boxes", "a pile of letters", "our camping gear",
         "the old piano", "a tiny boat", "the big table", "a lamp"),
    ),
    (  # food
        (("cooked", "cook"), ("baked", "bake"), ("made", "make"), ("ordered", "order"),
         ("finished", "finish"), ("tried", "try")),
        ("a birthday cake", "a huge pot of soup", "the pasta", "dinner for everyone",
         "a big breakfast", "some fresh bread", "the spicy curry", "pancakes"),
    ),
    (  # plans
        (("planned", "plan"), ("cancelled", "cancel"), ("started", "start"),
         ("finished", "finish"), ("changed", "change"), ("postponed", "postpone"),
         ("organised", "organise")),
        ("the whole plan", "the trip", "the party", "the meeting", "our camping weekend",
         "the project", "the wedding speech", "the school play", "the move"),
    ),
)  # fmt: skip
"""(verbs as (past, base), objects they go with) groups, so that verb and object fit."""
TIMES = (
    "yesterday", "last weekend", "this morning", "on Tuesday", "a few days ago",
    "last summer", "over the holidays", "the other night", "last month", "on Friday night",
)  # fmt: skip
"""Past times, for the past-tense clauses."""
LATER = (
    "tomorrow", "this weekend", "next week", "before lunch", "after work", "tonight",
    "in a couple of days", "next summer", "first thing on Monday",
)  # fmt: skip
"""Future times, for suggestions."""
PLACES = (
    "at the market", "in the park", "at home", "downtown", "by the river", "at the station",
    "in the garage", "at my aunt's place", "near the beach", "on the train", "in the office",
    "at the corner shop",
)  # fmt: skip
ADVERBS = (
    "really quickly", "very carefully", "all by ourselves", "without any help", "in a hurry",
    "slowly", "twice", "almost by accident", "with a lot of patience", "just in time",
)  # fmt: skip
ADJECTIVES = (
    "amazing", "strange", "wonderful", "terrible", "beautiful", "ridiculous", "surprising",
    "brilliant", "exhausting", "lovely", "awkward", "fantastic", "huge", "tiny", "hilarious",
)  # fmt: skip
NOUNS = (
    "idea", "day", "trip", "story", "view", "meal", "surprise", "game", "question", "week",
    "party", "movie", "song", "plan", "mistake", "morning",
)  # fmt: skip
OPENERS = (
    "Honestly,", "To be fair,", "The thing is,", "You know,", "Well,", "Actually,",
    "I mean,", "Believe it or not,", "So,", "Funny enough,", "In the end,", "Look,",
)  # fmt: skip
BELIEF_VERBS = ("think", "guess", "feel", "believe", "suspect", "bet")
THINGS_TO_DO = (
    "seen a sunrise from a mountain", "tried cooking for twenty people",
    "visited the old lighthouse", "climbed that hill behind the school",
    "heard them play live", "read the whole series", "lost your keys twice in one day",
    "built something with your own hands", "forgotten your own birthday",
    "missed the last bus home",
)  # fmt: skip
LIST_ITEMS = (
    "bread", "milk", "apples", "a few candles", "some tape", "batteries", "coffee",
    "a hammer", "two pillows", "fresh basil", "a ladder", "paper plates", "rope", "cheese",
    "a flashlight", "tomatoes", "rice", "a notebook", "glue", "sunscreen",
)  # fmt: skip
STEPS = (
    "we pack the car", "we check the weather", "we call the others", "we grab some coffee",
    "we drive to the lake", "we set up the tent", "we make a quick list",
    "we clear the table", "we measure the room", "we pick up the keys",
    "we walk the dog", "we split the bill",
)  # fmt: skip
COUNTED_THINGS = (
    "people at the party", "chairs in the hall", "emails in my inbox", "steps to the top",
    "cars in the queue", "songs on the list", "boxes in the garage", "kids in the class",
    "pages left to read", "tomatoes on one plant",
)  # fmt: skip
DURATIONS = (("minutes", 5, 55), ("hours", 2, 12), ("days", 2, 20), ("weeks", 2, 8))
"""(unit, smallest, largest amount) for "it took us ..." sentences."""
COMPARISONS = (
    ("the train", "the bus", "faster"), ("the new place", "the old one", "bigger"),
    ("this coffee", "yesterday's", "stronger"), ("the second movie", "the first", "better"),
    ("the north trail", "the river path", "steeper"), ("my phone", "yours", "older"),
    ("the winter here", "back home", "milder"), ("this recipe", "the last one", "easier"),
)  # fmt: skip
FEELINGS = (
    "so happy", "really tired", "a bit nervous", "pretty relieved", "super excited",
    "quite surprised", "a little confused", "so proud",
)  # fmt: skip
ADVICE = (
    "Just take it one step at a time", "Don't worry too much about it",
    "Try to get some sleep first", "Ask them what they actually want",
    "Keep it simple", "Write everything down", "Give it another week",
    "Call them tomorrow morning", "Start with the easy part", "Take a short break",
)  # fmt: skip
REASONS = (
    "it saves a lot of time", "nobody else will do it", "it worked last time",
    "you will thank yourself later", "it is cheaper in the long run",
    "the weather is changing soon", "everyone is already tired",
)  # fmt: skip


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _capitalise(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


def _verb_phrase(rng: np.random.Generator, past: bool = True) -> str:
    """``verb object`` with a verb that fits the object, e.g. "painted the front door"."""
    verbs, objects = ACTION_GROUPS[int(rng.integers(len(ACTION_GROUPS)))]
    past_form, base_form = verbs[int(rng.integers(len(verbs)))]
    return f"{past_form if past else base_form} {_pick(rng, objects)}"


def _clause(rng: np.random.Generator) -> str:
    """``subject past-verb object [place] [time]``, e.g. "my sister fixed the attic at home"."""
    parts = [_pick(rng, SUBJECTS), _verb_phrase(rng)]
    if rng.random() < 0.4:
        parts.append(_pick(rng, PLACES))
    if rng.random() < 0.5:
        parts.append(_pick(rng, ADVERBS) if rng.random() < 0.4 else _pick(rng, TIMES))
    return " ".join(parts)


def _statement(rng: np.random.Generator) -> str:
    return _capitalise(_clause(rng)) + "."


def _opinion(rng: np.random.Generator) -> str:
    belief = _pick(rng, BELIEF_VERBS)
    return f"{_pick(rng, OPENERS)} I {belief} {_clause(rng)}."


def _question(rng: np.random.Generator) -> str:
    kind = int(rng.integers(4))
    if kind == 0:
        return f"Have you ever {_pick(rng, THINGS_TO_DO)}?"
    if kind == 1:
        return f"Do you think we should {_verb_phrase(rng, past=False)} {_pick(rng, LATER)}?"
    if kind == 2:
        return f"What would you do if {_clause(rng)}?"
    return f"Wait, did {_pick(rng, SUBJECTS)} really {_verb_phrase(rng, past=False)}?"


def _exclamation(rng: np.random.Generator) -> str:
    kind = int(rng.integers(3))
    adjective = _pick(rng, ADJECTIVES)
    if kind == 0:
        article = "an" if adjective[0] in "aeiou" else "a"
        return f"What {article} {adjective} {_pick(rng, NOUNS)}!"
    if kind == 1:
        return f"I can't believe {_clause(rng)}!"
    return f"Oh, that was {adjective}!"


def _shopping_list(rng: np.random.Generator) -> str:
    count = int(rng.integers(3, 6))
    chosen = rng.choice(len(LIST_ITEMS), size=count, replace=False)
    items = [LIST_ITEMS[int(i)] for i in chosen]
    lead = _pick(rng, ("We still need", "Don't forget", "Could you grab", "I packed"))
    end = "?" if lead == "Could you grab" else "."
    return f"{lead} {', '.join(items[:-1])}, and {items[-1]}{end}"


def _steps(rng: np.random.Generator) -> str:
    chosen = rng.choice(len(STEPS), size=3, replace=False)
    first, second, third = (STEPS[int(i)] for i in chosen)
    return f"First {first}, then {second}, and after that {third}."


def _numbers(rng: np.random.Generator) -> str:
    kind = int(rng.integers(4))
    if kind == 0:
        return f"There were about {int(rng.integers(3, 200))} {_pick(rng, COUNTED_THINGS)}."
    if kind == 1:
        unit, low, high = DURATIONS[int(rng.integers(len(DURATIONS)))]
        amount = int(rng.integers(low, high + 1))
        return f"It took us {amount} {unit} to {_verb_phrase(rng, past=False)}."
    if kind == 2:
        return f"The whole thing cost {int(rng.integers(5, 900))} dollars, can you imagine?"
    return f"We moved here back in {int(rng.integers(1975, 2024))}, and it feels like yesterday."


def _comparison(rng: np.random.Generator) -> str:
    first, second, adjective = COMPARISONS[int(rng.integers(len(COMPARISONS)))]
    hedge = _pick(rng, ("definitely", "a lot", "maybe a little", "way", "honestly"))
    return _capitalise(f"{first} is {hedge} {adjective} than {second}.")


def _story(rng: np.random.Generator) -> str:
    return (
        f"So {_pick(rng, TIMES)} {_pick(rng, SUBJECTS)} {_verb_phrase(rng)}, "
        f"and everyone was {_pick(rng, FEELINGS)}."
    )


def _advice(rng: np.random.Generator) -> str:
    return f"{_pick(rng, ADVICE)}, because {_pick(rng, REASONS)}."


SENTENCE_KINDS: tuple[Callable[[np.random.Generator], str], ...] = (
    _statement, _opinion, _question, _exclamation, _shopping_list, _steps, _numbers,
    _comparison, _story, _advice,
)  # fmt: skip
"""Sentence generators, drawn with equal probability."""


def sample_sentence(rng: np.random.Generator) -> str:
    """One sentence of a random kind (ends with . ? or !)."""
    return SENTENCE_KINDS[int(rng.integers(len(SENTENCE_KINDS)))](rng)


def count_words(text: str) -> int:
    """Whitespace-separated words (a number such as "1987" counts as one)."""
    return len(text.split())


def sample_text(rng: np.random.Generator, min_words: int = 8, max_words: int = 30) -> str:
    """1-3 sentences joined by spaces, ``min_words <= words <= max_words``.

    Draws groups of sentences until one fits the range (rejection sampling, so the kinds
    keep their proportions); deterministic for a given generator state. ``InputError`` if
    the range is invalid or no group fits after ``MAX_ATTEMPTS`` draws (single sentences
    have 3-22 words, so ranges that three sentences cannot reach fail).
    """
    if min_words < 1 or max_words < min_words:
        raise InputError(
            f"sample_text: needs 1 <= min_words <= max_words, got {min_words}, {max_words}"
        )
    for _ in range(MAX_ATTEMPTS):
        sentences = [sample_sentence(rng) for _ in range(int(rng.integers(1, MAX_SENTENCES + 1)))]
        text = " ".join(sentences)
        if min_words <= count_words(text) <= max_words:
            return text
    raise InputError(
        f"sample_text: no text of 1-{MAX_SENTENCES} sentences with {min_words}-{max_words} words "
        f"found in {MAX_ATTEMPTS} draws"
    )
