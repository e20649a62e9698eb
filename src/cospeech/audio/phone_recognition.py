"""Phone timings from speech with pocketsphinx (CMU en-us acoustic model, shipped with it).

* :func:`recognize_phones`: allphone recognition (phone n-gram, no words) for any speech.
* :func:`align_phones`: forced alignment of a known transcript (CMUdict pronunciations).

Both return :class:`~cospeech.audio.phonemes.PhonemeSegment` lists in the project's phone
inventory, covering the whole signal (gaps are SIL). Audio is 16 kHz mono float32.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from cospeech.audio.phonemes import SILENCE, PhonemeSegment, arpabet_to_phone
from cospeech.errors import InputError

SAMPLE_RATE = 16000
FRAME_RATE = 100  # pocketsphinx frames per second
ALIGN_BEAM = 1e-100  # wide beams: the default ones lose the path on synthetic voices
ALIGN_WORD_BEAM = 1e-80
ALLPHONE_BEAM = 1e-20
ALLPHONE_LANGUAGE_WEIGHT = 2.0
WORD_PATTERN = re.compile(r"[a-z']+")
SILENCE_DBFS = -60.0  # recognised phones quieter than this throughout are silence


def _pcm16(audio: np.ndarray) -> bytes:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise InputError(f"phone recognition: expected samples [N], got {list(audio.shape)}")
    return (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def _decode(decoder: Any, pcm: bytes) -> None:
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()


def _to_segments(items: list[tuple[str, int, int]], duration: float) -> list[PhonemeSegment]:
    """``(ARPAbet label, first frame, frames)`` -> inventory segments covering
    ``[0, duration)``: gaps become SIL and neighbouring silences are merged."""
    pieces: list[PhonemeSegment] = []
    cursor = 0.0
    for label, start_frame, frames in items:
        start = max(min(start_frame / FRAME_RATE, duration), cursor)
        end = min((start_frame + frames) / FRAME_RATE, duration)
        if end <= start:
            continue
        if start > cursor:
            pieces.append(PhonemeSegment(SILENCE, cursor, start))
        phone, stress = arpabet_to_phone(label)
        pieces.append(PhonemeSegment(phone, start, end, stress))
        cursor = end
    if cursor < duration:
        pieces.append(PhonemeSegment(SILENCE, cursor, duration))
    merged: list[PhonemeSegment] = []
    for piece in pieces:
        if merged and piece.phone == SILENCE and merged[-1].phone == SILENCE:
            merged[-1] = PhonemeSegment(SILENCE, merged[-1].start, piece.end)
        else:
            merged.append(piece)
    return merged


def recognize_phones(audio: np.ndarray) -> list[PhonemeSegment]:
    """Allphone recognition of 16 kHz speech ``[N]`` -> segments covering the signal."""
    import pocketsphinx

    duration = len(audio) / SAMPLE_RATE
    model = f"{pocketsphinx.get_model_path()}/en-us/en-us-phone.lm.bin"
    decoder = pocketsphinx.Decoder(
        allphone=model, lm=None, backtrace=False, loglevel="FATAL",
        beam=ALLPHONE_BEAM, pbeam=ALLPHONE_BEAM, lw=ALLPHONE_LANGUAGE_WEIGHT,
    )  # fmt: skip
    _decode(decoder, _pcm16(audio))
    items = [(seg.word, seg.start_frame, seg.end_frame - seg.start_frame + 1)
             for seg in decoder.seg()]  # fmt: skip
    return _to_segments(_gate_silence(items, audio), duration)


def _gate_silence(items: list[tuple[str, int, int]], audio: np.ndarray):
    """Relabel as SIL the recognised phones whose audio never rises above ``SILENCE_DBFS``
    (cepstral mean normalisation makes the recogniser hear phones in digital silence)."""
    from cospeech.audio.load import frame_levels_db

    levels = frame_levels_db(np.asarray(audio, dtype=np.float32), SAMPLE_RATE)
    per_level = len(levels) / max(1, len(audio) / SAMPLE_RATE * FRAME_RATE)
    gated = []
    for label, start, frames in items:
        first = int(start * per_level)
        chunk = levels[first : max(first + 1, int((start + frames) * per_level))]
        quiet = chunk.size == 0 or chunk.max() < SILENCE_DBFS
        gated.append(("SIL" if quiet else label, start, frames))
    return gated


def transcript_words(text: str) -> list[str]:
    """Lower-case words of a transcript (letters and apostrophes; punctuation dropped)."""
    return WORD_PATTERN.findall(text.lower())


def align_phones(audio: np.ndarray, transcript: str) -> list[PhonemeSegment]:
    """Forced alignment of ``transcript`` to 16 kHz speech ``[N]`` -> segments covering the
    signal. ``InputError`` for words missing from the pronunciation dictionary or when the
    transcript cannot be aligned to the audio."""
    import pocketsphinx

    words = transcript_words(transcript)
    if not words:
        raise InputError("forced alignment: the transcript has no words")
    decoder = pocketsphinx.Decoder(
        loglevel="FATAL", bestpath=False, beam=ALIGN_BEAM, pbeam=ALIGN_BEAM,
        wbeam=ALIGN_WORD_BEAM,
    )  # fmt: skip
    unknown = sorted({w for w in words if decoder.lookup_word(w) is None})
    if unknown:
        raise InputError(f"forced alignment: words not in the dictionary: {unknown}")
    pcm = _pcm16(audio)
    try:
        decoder.set_align_text(" ".join(words))
        _decode(decoder, pcm)
        if decoder.hyp() is None:
            raise InputError("forced alignment: the transcript does not fit the audio")
        decoder.set_alignment()
        _decode(decoder, pcm)
        alignment = decoder.get_alignment()
    except RuntimeError as exc:
        raise InputError(f"forced alignment failed ({exc})") from None
    items = [(phone.name, phone.start, phone.duration) for word in alignment for phone in word]
    return _to_segments(items, len(audio) / SAMPLE_RATE)
