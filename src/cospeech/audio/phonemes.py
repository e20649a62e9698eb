"""The project's phone inventory, phoneme segments, and the phone -> viseme -> mouth-shape tables.

One inventory for everything that carries phonemes (espeak synthesis, pocketsphinx
alignment, motion rules, features): ARPAbet without stress digits plus ``SIL`` for silence
and pauses. Stress is kept beside the phone in ``PhonemeSegment.stress``.

Mappings into the inventory:

* ``espeak_to_phone``: the phoneme mnemonics libespeak-ng (en-us) emits in its phoneme
  events (``"@"``, ``"aI"``, ``"t#"``, ``"_:"``, ...). The table covers every phoneme of
  the en-us phoneme tables (en-us -> en -> base1 -> base) except stress marks and virtual
  phonemes, which never appear as events. An unknown mnemonic raises ``InputError``:
  nothing falls through silently.
* ``arpabet_to_phone``: CMUdict / pocketsphinx labels with stress digits (``"AH0"``,
  ``"IY1"``); pocketsphinx's silence and filler labels (``"SIL"``, ``"+NSN+"``, ...) -> SIL.

Visemes are the common 15-class MPEG-4/Oculus set; each has an ``ArticulationTarget``
(jaw opening, lip width, lip protrusion, lips closed), all in [0, 1], for the motion rules.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cospeech.errors import InputError

SILENCE = "SIL"

VOWELS: tuple[str, ...] = (
    "AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW",
)  # fmt: skip
CONSONANTS: tuple[str, ...] = (
    "B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG", "P", "R", "S", "SH",
    "T", "TH", "V", "W", "Y", "Z", "ZH",
)  # fmt: skip
PHONES: tuple[str, ...] = (*sorted(VOWELS + CONSONANTS), SILENCE)
"""The inventory: 39 ARPAbet phones (alphabetical) followed by ``SIL``."""

PHONE_INDEX: dict[str, int] = {phone: i for i, phone in enumerate(PHONES)}
"""Phone -> integer id (position in ``PHONES``), for embeddings and one-hot features."""

STRESS_NONE, STRESS_PRIMARY, STRESS_SECONDARY = 0, 1, 2
STRESS_LEVELS = (STRESS_NONE, STRESS_PRIMARY, STRESS_SECONDARY)
NO_WORD = -1
"""``PhonemeSegment.word_index`` of segments outside any word (silences)."""

SEGMENT_TIME_TOLERANCE_S = 1e-6
"""Slack allowed when checking that segments do not overlap (float rounding)."""


@dataclass(frozen=True)
class PhonemeSegment:
    """One phone of an utterance: ``phone`` from ``PHONES``, ``[start, end)`` in seconds,
    ``stress`` 0 none / 1 primary / 2 secondary, ``word_index`` into the utterance's word
    list (``NO_WORD`` = -1 for silence)."""

    phone: str
    start: float
    end: float
    stress: int = STRESS_NONE
    word_index: int = NO_WORD

    @property
    def duration(self) -> float:
        return self.end - self.start


# --- espeak-ng (en-us) mnemonics -> inventory ------------------------------------------------

ESPEAK_PAUSES = ("_", "_:", "_::", "_!", "_|", "_;_", "_^_", "_X1", "||", "_\x01", "1")
"""Pause-type phonemes of espeak's base table; all become SIL."""

ESPEAK_TO_PHONE: dict[str, str] = {
    **dict.fromkeys(ESPEAK_PAUSES, SILENCE),
    # vowels (en-us overrides en, which overrides base1)
    "@": "AH", "@-": "AH", "@2": "AH", "@5": "AH", "@#": "AH", "V": "AH", "a#": "AH",
    "a#2": "AH", "a2": "AH",
    "a": "AE", "aa": "AE",
    "A:": "AA", "A@": "AA", "A#": "AA", "A~": "AA", "0": "AA", "0#": "AA",
    "O": "AO", "O:": "AO", "O@": "AO", "o@": "AO", "O2": "AO", "02": "AO", "O~": "AO",
    "E": "EH", "E#": "EH", "E2": "EH", "e": "EH", "e#": "EH", "e@": "EH",
    "eI": "EY", "e:": "EY",
    "3": "ER", "3:": "ER", "VR": "ER",
    "I": "IH", "I#": "IH", "I2": "IH", "I2#": "IH", "IR": "IH", "i@": "IH", "i@3": "IH",
    "i": "IY", "i:": "IY",
    "U": "UH", "U@": "UH",
    "u": "UW", "u:": "UW",
    "o": "OW", "o:": "OW", "oU": "OW", "oU#": "OW",
    "aI": "AY", "aI@": "AY", "aI3": "AY",
    "aU": "AW", "aU@": "AW",
    "OI": "OY",
    # syllabic consonants (vowel type in espeak)
    "@L": "L", "l-": "L", "m-": "M", "n-": "N", "N-": "NG",
    # liquids and glides; ";" is the linking glide espeak puts after "happy"-i before a vowel
    "r": "R", "r-": "R", "r/": "R", "r.": "R", "R": "R", "R2": "R", "R3": "R", "**": "R",
    'r"': "R",
    "l": "L", "l/": "L", "l/2": "L", "l/3": "L", "l^": "L", "l.": "L", "L": "L", "L/": "L",
    "l#": "L",
    "j": "Y", ";": "Y", "J^": "Y",
    "w": "W", "w#": "W",
    # stops and affricates; "?" (glottal stop, "button") and "t#" (flap, "better") are T
    # as in CMUdict
    "p": "P", "b": "B",
    "t": "T", "t2": "T", "t[": "T", "t#": "T", "?": "T",
    "d": "D", "d[": "D", "d#": "D", "*": "D",
    "k": "K", "c": "K", "q": "K",
    "g": "G", "Q": "G", "Q^": "G", 'Q"': "G",
    "tS": "CH", "tS;": "CH",
    "dZ": "JH", "dZ;": "JH", "J": "JH",
    # fricatives
    "f": "F", "v": "V", "v#": "V", "B": "V",
    "T": "TH", "D": "DH",
    "s": "S", "s.": "S", "s;": "S",
    "z": "Z", "z.": "Z", "z;": "Z", "z#": "Z", "z/2": "Z",
    "S": "SH", "S;": "SH",
    "Z": "ZH", "Z;": "ZH",
    "h": "HH", "C": "HH", "x": "HH", "X": "HH", "#X1": "HH",
    # nasals
    "m": "M", "n": "N", "n.": "N", "n^": "N", "N": "NG",
}  # fmt: skip
"""espeak-ng mnemonic (as in its phoneme events for en-us) -> inventory phone."""


def espeak_to_phone(mnemonic: str) -> str:
    """Inventory phone for an espeak-ng phoneme mnemonic; ``InputError`` if unknown."""
    try:
        return ESPEAK_TO_PHONE[mnemonic]
    except KeyError:
        raise InputError(
            f"espeak phoneme {mnemonic!r} has no mapping to the phone inventory "
            "(add it to cospeech.audio.phonemes.ESPEAK_TO_PHONE)"
        ) from None


# --- ARPAbet (CMUdict / pocketsphinx) -> inventory ---------------------------------------------

ARPABET_SILENCES = ("SIL", "SP", "SPN", "NSN", "+NSN+", "+SPN+", "+BREATH+", "+COUGH+", "+UM+")
"""Silence and filler labels (pocketsphinx) that become SIL."""


def arpabet_to_phone(label: str) -> tuple[str, int]:
    """``(phone, stress)`` for an ARPAbet label such as ``"AH0"``, ``"iy1"``, ``"K"``.

    A trailing digit is the CMUdict stress (0 none, 1 primary, 2 secondary); labels without
    one get stress 0. Silence/filler labels map to ``("SIL", 0)``. ``InputError`` otherwise.
    """
    upper = label.strip().upper()
    if upper in ARPABET_SILENCES or (upper.startswith("+") and upper.endswith("+")):
        return SILENCE, STRESS_NONE
    stress = STRESS_NONE
    base = upper
    if upper[-1:].isdigit():
        stress, base = int(upper[-1]), upper[:-1]
    if base not in PHONE_INDEX or base == SILENCE or stress not in STRESS_LEVELS:
        raise InputError(f"ARPAbet label {label!r} is not a phone of the inventory")
    return base, stress


# --- visemes and articulation targets ----------------------------------------------------------

VISEMES: tuple[str, ...] = (
    "sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "I", "O", "U",
)  # fmt: skip
"""The 15 MPEG-4/Oculus-style viseme classes."""

PHONE_TO_VISEME: dict[str, str] = {
    SILENCE: "sil",
    "P": "PP", "B": "PP", "M": "PP",
    "F": "FF", "V": "FF",
    "TH": "TH", "DH": "TH",
    "T": "DD", "D": "DD",
    "K": "kk", "G": "kk", "NG": "kk", "HH": "kk",
    "CH": "CH", "JH": "CH", "SH": "CH", "ZH": "CH",
    "S": "SS", "Z": "SS",
    "N": "nn", "L": "nn",
    "R": "RR", "ER": "RR",
    "AA": "aa", "AE": "aa", "AH": "aa", "AW": "aa", "AY": "aa",
    "EH": "E", "EY": "E",
    "IH": "I", "IY": "I", "Y": "I",
    "AO": "O", "OW": "O", "OY": "O",
    "UH": "U", "UW": "U", "W": "U",
}  # fmt: skip
"""Inventory phone -> viseme. Diphthongs take the viseme of their first (longer) part;
HH and NG, which show little of their own, are grouped with the back consonants (kk)."""


@dataclass(frozen=True)
class ArticulationTarget:
    """Mouth shape a viseme aims at; every number is in [0, 1].

    jaw_open: jaw / inner-lip opening, 0 = teeth together, 1 = widest open ("aa").
    lip_width: horizontal mouth-corner distance, 0 = fully rounded/narrow ("U"),
        0.5 = relaxed rest width, 1 = fully spread ("I").
    lip_protrusion: lips pushed forward and rounded, 0 = flat against the teeth,
        1 = maximal pout ("U").
    lips_closed: the lips touch along their length (bilabial closure, rest).
    """

    jaw_open: float
    lip_width: float
    lip_protrusion: float
    lips_closed: bool


VISEME_TARGETS: dict[str, ArticulationTarget] = {
    "sil": ArticulationTarget(jaw_open=0.0, lip_width=0.5, lip_protrusion=0.1, lips_closed=True),
    "PP": ArticulationTarget(jaw_open=0.05, lip_width=0.5, lip_protrusion=0.2, lips_closed=True),
    "FF": ArticulationTarget(jaw_open=0.15, lip_width=0.55, lip_protrusion=0.1, lips_closed=False),
    "TH": ArticulationTarget(jaw_open=0.2, lip_width=0.55, lip_protrusion=0.0, lips_closed=False),
    "DD": ArticulationTarget(jaw_open=0.2, lip_width=0.55, lip_protrusion=0.1, lips_closed=False),
    "kk": ArticulationTarget(jaw_open=0.3, lip_width=0.55, lip_protrusion=0.1, lips_closed=False),
    "CH": ArticulationTarget(jaw_open=0.2, lip_width=0.4, lip_protrusion=0.7, lips_closed=False),
    "SS": ArticulationTarget(jaw_open=0.1, lip_width=0.7, lip_protrusion=0.0, lips_closed=False),
    "nn": ArticulationTarget(jaw_open=0.2, lip_width=0.55, lip_protrusion=0.1, lips_closed=False),
    "RR": ArticulationTarget(jaw_open=0.25, lip_width=0.35, lip_protrusion=0.5, lips_closed=False),
    "aa": ArticulationTarget(jaw_open=0.9, lip_width=0.6, lip_protrusion=0.1, lips_closed=False),
    "E": ArticulationTarget(jaw_open=0.5, lip_width=0.75, lip_protrusion=0.0, lips_closed=False),
    "I": ArticulationTarget(jaw_open=0.25, lip_width=0.9, lip_protrusion=0.0, lips_closed=False),
    "O": ArticulationTarget(jaw_open=0.6, lip_width=0.25, lip_protrusion=0.7, lips_closed=False),
    "U": ArticulationTarget(jaw_open=0.25, lip_width=0.1, lip_protrusion=0.95, lips_closed=False),
}


def viseme_of(phone: str) -> str:
    """Viseme class of an inventory phone; ``InputError`` if the phone is unknown."""
    try:
        return PHONE_TO_VISEME[phone]
    except KeyError:
        raise InputError(f"{phone!r} is not a phone of the inventory") from None


def articulation_of(phone: str) -> ArticulationTarget:
    """Articulation target of an inventory phone (through its viseme)."""
    return VISEME_TARGETS[viseme_of(phone)]


# --- segment lists: validation, JSON, frame sampling ---------------------------------------------

SEGMENT_KEYS = ("phone", "start", "end", "stress", "word_index")


def validate_segments(segments: Sequence[PhonemeSegment]) -> None:
    """``InputError`` unless every segment has a known phone, finite ``0 <= start < end``,
    a valid stress and word index, and the segments are in time order without overlap."""
    previous_end = 0.0
    for i, seg in enumerate(segments):
        where = f"phoneme segment {i}"
        if seg.phone not in PHONE_INDEX:
            raise InputError(f"{where}: unknown phone {seg.phone!r}")
        if not (math.isfinite(seg.start) and math.isfinite(seg.end)):
            raise InputError(f"{where}: non-finite time ({seg.start}, {seg.end})")
        if seg.start < 0 or seg.end <= seg.start:
            raise InputError(f"{where}: needs 0 <= start < end, got ({seg.start}, {seg.end})")
        if seg.start < previous_end - SEGMENT_TIME_TOLERANCE_S:
            raise InputError(
                f"{where}: starts at {seg.start} before the previous end {previous_end}"
            )
        if seg.stress not in STRESS_LEVELS:
            raise InputError(f"{where}: stress must be 0, 1 or 2, got {seg.stress}")
        if seg.word_index < NO_WORD:
            raise InputError(f"{where}: word_index must be >= -1, got {seg.word_index}")
        previous_end = seg.end


def segments_to_json(segments: Sequence[PhonemeSegment]) -> list[dict[str, Any]]:
    """Validated segments as a list of plain dicts with keys ``SEGMENT_KEYS``."""
    validate_segments(segments)
    return [
        {
            "phone": s.phone,
            "start": float(s.start),
            "end": float(s.end),
            "stress": int(s.stress),
            "word_index": int(s.word_index),
        }
        for s in segments
    ]


def segments_from_json(items: Iterable[Any]) -> list[PhonemeSegment]:
    """Segments from a list of dicts written by ``segments_to_json`` (stress and word_index
    may be omitted); ``InputError`` for missing/unknown keys, wrong types or bad timing."""
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise InputError("phoneme segments: expected a list of objects")
    segments = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InputError(f"phoneme segment {i}: expected an object, got {type(item).__name__}")
        unknown = sorted(set(item) - set(SEGMENT_KEYS))
        missing = [k for k in ("phone", "start", "end") if k not in item]
        if unknown or missing:
            raise InputError(f"phoneme segment {i}: unknown keys {unknown}, missing keys {missing}")
        try:
            segments.append(
                PhonemeSegment(
                    phone=str(item["phone"]),
                    start=_as_float(item["start"]),
                    end=_as_float(item["end"]),
                    stress=_as_int(item.get("stress", STRESS_NONE)),
                    word_index=_as_int(item.get("word_index", NO_WORD)),
                )
            )
        except TypeError as exc:
            raise InputError(f"phoneme segment {i}: {exc}") from None
    validate_segments(segments)
    return segments


def _as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _as_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def frame_phones(segments: Sequence[PhonemeSegment], fps: float, num_frames: int) -> list[str]:
    """The phone at the centre of each video frame, ``(i + 0.5) / fps`` seconds.

    Returns ``num_frames`` phones; times in gaps between segments or past the last one are
    ``"SIL"``. Segments must be valid (see ``validate_segments``).
    """
    if fps <= 0 or num_frames < 0:
        raise InputError(
            f"frame_phones: needs fps > 0 and num_frames >= 0, got {fps}, {num_frames}"
        )
    validate_segments(segments)
    centres = (np.arange(num_frames) + 0.5) / fps
    starts = np.array([s.start for s in segments], dtype=np.float64)
    index = np.searchsorted(starts, centres, side="right") - 1
    phones = []
    for t, i in zip(centres, index, strict=True):
        inside = i >= 0 and t < segments[i].end
        phones.append(segments[i].phone if inside else SILENCE)
    return phones
