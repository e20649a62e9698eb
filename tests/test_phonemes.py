"""Phone inventory, espeak / ARPAbet mappings, viseme tables, segment JSON and frame lookup."""

import json

import pytest

from cospeech.audio.phonemes import (
    CONSONANTS,
    ESPEAK_TO_PHONE,
    PHONE_INDEX,
    PHONE_TO_VISEME,
    PHONES,
    SILENCE,
    VISEME_TARGETS,
    VISEMES,
    VOWELS,
    PhonemeSegment,
    arpabet_to_phone,
    articulation_of,
    espeak_to_phone,
    frame_phones,
    segments_from_json,
    segments_to_json,
    viseme_of,
)
from cospeech.errors import InputError

CMU_PHONES = (
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH",
    "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH",
    "UW", "V", "W", "Y", "Z", "ZH",
)  # fmt: skip


def test_inventory_is_cmudict_plus_silence():
    assert sorted(PHONES[:-1]) == sorted(CMU_PHONES)
    assert PHONES[-1] == SILENCE
    assert len(set(PHONES)) == len(PHONES) == 40
    assert set(VOWELS) | set(CONSONANTS) == set(CMU_PHONES)
    assert [PHONE_INDEX[p] for p in PHONES] == list(range(len(PHONES)))


def test_viseme_table_covers_inventory_and_targets_are_in_range():
    assert set(PHONE_TO_VISEME) == set(PHONES)
    assert set(PHONE_TO_VISEME.values()) == set(VISEMES)  # every class is used
    assert len(VISEMES) == 15 and set(VISEME_TARGETS) == set(VISEMES)
    for target in VISEME_TARGETS.values():
        for value in (target.jaw_open, target.lip_width, target.lip_protrusion):
            assert 0.0 <= value <= 1.0


def test_viseme_classes_follow_articulation():
    assert {viseme_of(p) for p in ("P", "B", "M")} == {"PP"}
    assert {viseme_of(p) for p in ("F", "V")} == {"FF"}
    assert {viseme_of(p) for p in ("CH", "JH", "SH", "ZH")} == {"CH"}
    assert {viseme_of(p) for p in ("S", "Z")} == {"SS"}
    assert viseme_of(SILENCE) == "sil"
    # bilabials and rest close the lips; nothing else does
    closed = {v for v, t in VISEME_TARGETS.items() if t.lips_closed}
    assert closed == {"PP", "sil"}
    # open vowels open the jaw more than close vowels; rounded vowels are narrow and pouted
    assert articulation_of("AA").jaw_open > articulation_of("IY").jaw_open
    assert articulation_of("AA").jaw_open > articulation_of("UW").jaw_open
    assert articulation_of("UW").lip_width < articulation_of("AH").lip_width
    assert articulation_of("IY").lip_width > articulation_of("AH").lip_width
    assert articulation_of("UW").lip_protrusion > articulation_of("IY").lip_protrusion
    with pytest.raises(InputError):
        viseme_of("XX")


def test_espeak_mapping_targets_inventory_and_known_mnemonics():
    assert set(ESPEAK_TO_PHONE.values()) <= set(PHONES)
    expected = {
        "@": "AH", "I": "IH", "aI": "AY", "t": "T", "D": "DH", "T": "TH", "3:": "ER",
        "tS": "CH", "dZ": "JH", "S": "SH", "Z": "ZH", "N": "NG", "j": "Y", "oU": "OW",
        "eI": "EY", "OI": "OY", "aU": "AW", "u:": "UW", "i:": "IY", "A:": "AA", "h": "HH",
        "_": SILENCE, "_:": SILENCE, "t#": "T", "@L": "L",
    }  # fmt: skip
    for mnemonic, phone in expected.items():
        assert espeak_to_phone(mnemonic) == phone, mnemonic
    # every inventory phone can come out of espeak
    assert set(ESPEAK_TO_PHONE.values()) == set(PHONES)


def test_unknown_espeak_mnemonic_is_an_error():
    with pytest.raises(InputError, match="no mapping"):
        espeak_to_phone("q!x")
    with pytest.raises(InputError):
        espeak_to_phone("'")  # a stress mark is not a phoneme


def test_arpabet_mapping_with_stress():
    assert arpabet_to_phone("AH0") == ("AH", 0)
    assert arpabet_to_phone("iy1") == ("IY", 1)
    assert arpabet_to_phone("EH2") == ("EH", 2)
    assert arpabet_to_phone("K") == ("K", 0)
    for silence in ("SIL", "sil", "+NSN+", "+SPN+", "+BREATH+", "SP"):
        assert arpabet_to_phone(silence) == (SILENCE, 0)
    for phone in CMU_PHONES:
        assert arpabet_to_phone(phone) == (phone, 0)
    for bad in ("XX", "AH3", "SIL1", "", "A"):
        with pytest.raises(InputError):
            arpabet_to_phone(bad)


SEGMENTS = [
    PhonemeSegment("SIL", 0.0, 0.1),
    PhonemeSegment("P", 0.1, 0.18, 0, 0),
    PhonemeSegment("AA", 0.18, 0.5, 1, 0),
    PhonemeSegment("T", 0.6, 0.7, 0, 1),  # a gap from 0.5 to 0.6
]


def test_segments_json_round_trip():
    data = segments_to_json(SEGMENTS)
    assert data[2] == {"phone": "AA", "start": 0.18, "end": 0.5, "stress": 1, "word_index": 0}
    assert segments_from_json(json.loads(json.dumps(data))) == SEGMENTS
    # stress and word_index may be left out
    assert segments_from_json([{"phone": "M", "start": 0, "end": 0.5}]) == [
        PhonemeSegment("M", 0.0, 0.5, 0, -1)
    ]


@pytest.mark.parametrize(
    "items",
    [
        [{"phone": "QQ", "start": 0.0, "end": 0.1}],
        [{"phone": "AA", "start": 0.2, "end": 0.1}],
        [{"phone": "AA", "start": -0.1, "end": 0.1}],
        [{"phone": "AA", "start": 0.0, "end": float("nan")}],
        [{"phone": "AA", "start": 0.0, "end": 0.3}, {"phone": "B", "start": 0.2, "end": 0.4}],
        [{"phone": "AA", "start": 0.0, "end": 0.1, "stress": 3}],
        [{"phone": "AA", "start": 0.0, "end": 0.1, "stress": True}],
        [{"phone": "AA", "start": "0", "end": 0.1}],
        [{"phone": "AA", "start": 0.0, "end": 0.1, "word_index": -2}],
        [{"phone": "AA", "start": 0.0}],
        [{"phone": "AA", "start": 0.0, "end": 0.1, "speaker": 1}],
        ["AA"],
        "AA",
    ],
)
def test_segments_from_json_rejects_bad_input(items):
    with pytest.raises(InputError):
        segments_from_json(items)


def test_frame_phones_samples_frame_centres():
    # fps 10: centres 0.05 0.15 0.25 0.35 0.45 0.55 0.65 0.75
    assert frame_phones(SEGMENTS, fps=10, num_frames=8) == [
        "SIL", "P", "AA", "AA", "AA", "SIL", "T", "SIL",
    ]  # fmt: skip
    # fps 20: centre 0.175 is still P, 0.125 is P, 0.075 is SIL
    assert frame_phones(SEGMENTS, fps=20, num_frames=4) == ["SIL", "SIL", "P", "P"]
    assert frame_phones(SEGMENTS, fps=25, num_frames=0) == []
    assert frame_phones([], fps=25, num_frames=2) == ["SIL", "SIL"]
    with pytest.raises(InputError):
        frame_phones(SEGMENTS, fps=0, num_frames=3)
