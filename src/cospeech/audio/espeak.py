"""Speech with exact phoneme timings from libespeak-ng (ctypes).

The library runs in synchronous mode with phoneme events: one ``espeak_Synth`` call gives
the PCM (22050 Hz int16) through the synth callback together with word and phoneme events
whose ``sample`` field is the sample index, in that same PCM, where the word / phoneme
starts. So the timings are those of the audio itself, not an estimate.

Layout of ``espeak_EVENT`` (speak_lib.h, espeak-ng 1.51; 40 bytes on 64-bit)::

    int type;                     // espeak_EVENT_TYPE: 1 WORD, 7 PHONEME, 0 list end, ...
    unsigned int unique_identifier;
    int text_position;            // 1-based character position of the word in the text
    int length;                   // word length in characters (WORD events)
    int audio_position;           // ms from the start of the message
    int sample;                   // sample index from the start of the message
    void *user_data;
    union { int number; const char *name; char string[8]; } id;  // PHONEME: mnemonic

Post-processing of the events (see docs/speech-synthesis.md):

* phoneme onsets are the events' ``sample``; a phone ends where the next one starts, the
  last at the end of the audio;
* espeak's pause phonemes (``_``, ``_:``, ...) and any audio before the first phoneme are
  SIL; consecutive SIL pieces merge;
* espeak emits a voiceless stop's event at its release, after a silent closure that it
  otherwise books to the phone before; the closure (the digital silence just before the
  release, at most ``MAX_STOP_CLOSURE_S``) is moved into the stop, where lips/tongue close;
* stress comes from ``espeak_TextToPhonemes`` on the same text and voice (its stress
  marks), aligned to the event phonemes by mnemonic.

Determinism: libespeak-ng keeps process-global synthesis state that no API call resets
(e.g. the pitch-flutter index, a function-static in wavegen.c, and the glottal wave phase),
so the same text spoken twice in one process differs by a few samples. Therefore the
library is loaded and initialised once per process (under a lock) and never synthesises in
that process: each ``synthesize`` forks a child from this pristine state, synthesises once
there and sends PCM + events back through a pipe. Same text + voice -> identical audio,
independent of what was synthesised before. A forked process (e.g. a multiprocessing worker)
gets a fresh lock and reuses the inherited, still pristine library state.
"""

from __future__ import annotations

import bisect
import ctypes
import dataclasses
import difflib
import json
import os
import re
import string
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from math import gcd
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from cospeech.audio.phonemes import (
    NO_WORD,
    SILENCE,
    STRESS_NONE,
    STRESS_PRIMARY,
    STRESS_SECONDARY,
    PhonemeSegment,
    espeak_to_phone,
    validate_segments,
)
from cospeech.errors import CospeechError, InputError

LIBRARY_NAME = "libespeak-ng.so.1"
INSTALL_HINT = "install espeak-ng (Debian/Ubuntu: 'apt-get install espeak-ng')"
DEFAULT_SAMPLE_RATE = 16000

# speak_lib.h constants
AUDIO_OUTPUT_SYNCHRONOUS = 2
ESPEAK_INITIALIZE_PHONEME_EVENTS = 0x0001
ESPEAK_BUFFER_MS = 0  # 0: the library's default buffer (60 ms)
ESPEAK_CHARS_UTF8 = 1
POS_CHARACTER = 1
EVENT_LIST_TERMINATED = 0
EVENT_WORD = 1
EVENT_PHONEME = 7
EE_OK = 0
PARAM_RATE, PARAM_VOLUME, PARAM_PITCH, PARAM_RANGE, PARAM_WORDGAP = 1, 2, 3, 4, 7
PHONEME_NAME_BYTES = 8
TEXT_TO_PHONEMES_SEPARATOR = ord(" ") << 8  # phonememode bits 8-23: separator character
STRESS_MARKS = {"'": STRESS_PRIMARY, ",": STRESS_SECONDARY}

VOICELESS_STOPS = frozenset({"P", "T", "K", "CH"})
MAX_STOP_CLOSURE_S = 0.08
"""Longest closure moved into a voiceless stop (espeak's closures are ~30-50 ms)."""
WORD_EDGE_PUNCTUATION = string.punctuation
"""Stripped from both ends of a word as written ("friend." -> "friend", "can't" stays)."""
SILENCE_AMPLITUDE = 2
"""|int16 sample| at or below this counts as digital silence (espeak writes exact zeros)."""

RATE_LIMITS = (80, 450)  # words per minute (speak_lib.h espeakRATE_MINIMUM/MAXIMUM)
PITCH_LIMITS = (0, 99)
PITCH_RANGE_LIMITS = (0, 99)
VOLUME_LIMITS = (0, 200)
WORD_GAP_LIMITS = (0, 100)  # units of 10 ms at normal speed


@dataclass(frozen=True)
class VoiceParams:
    """An espeak-ng speaker.

    language: espeak voice name ("en-us"); variant: a file of espeak-ng-data/voices/!v
    ("m1".."m8", "f1".."f5", "klatt", ..., see ``available_variants``), "" for none;
    pitch: base pitch 0-99; pitch_range: intonation range 0-99 (0 = monotone);
    rate: words per minute 80-450; word_gap: extra pause between words in 10 ms units;
    volume: amplitude 0-200 (100 = normal).
    """

    language: str = "en-us"
    variant: str = ""
    pitch: int = 50
    pitch_range: int = 50
    rate: int = 175
    word_gap: int = 0
    volume: int = 100

    def __post_init__(self) -> None:
        for name, (low, high) in (
            ("pitch", PITCH_LIMITS),
            ("pitch_range", PITCH_RANGE_LIMITS),
            ("rate", RATE_LIMITS),
            ("word_gap", WORD_GAP_LIMITS),
            ("volume", VOLUME_LIMITS),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InputError(
                    f"VoiceParams.{name} must be an integer in [{low}, {high}], got {value!r}"
                )
        for name in ("language", "variant"):
            value = getattr(self, name)
            if not isinstance(value, str) or any(c in value for c in "+/\\ \0"):
                raise InputError(f"VoiceParams.{name} must be a plain name, got {value!r}")
        if not self.language:
            raise InputError("VoiceParams.language must not be empty")

    @property
    def voice_name(self) -> str:
        """The name given to ``espeak_SetVoiceByName``: "language" or "language+variant"."""
        return f"{self.language}+{self.variant}" if self.variant else self.language


@dataclass
class Utterance:
    """One synthesised utterance.

    audio: float32 [N] mono in [-1, 1] at ``sample_rate`` Hz;
    phonemes: contiguous segments covering [0, N / sample_rate] seconds;
    words: (word as written in ``text`` without edge punctuation, start s, end s), in
    order; a segment's ``word_index`` indexes this list. Words espeak speaks as one unit
    ("There were", "on the") are one entry; a number is one entry ("1992").
    text, voice: what was spoken, and by whom.
    """

    audio: np.ndarray
    sample_rate: int
    phonemes: list[PhonemeSegment]
    words: list[tuple[str, float, float]]
    text: str
    voice: VoiceParams = field(default_factory=VoiceParams)

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate


# --- ctypes binding ----------------------------------------------------------------------


class _EventId(ctypes.Union):
    _fields_ = (
        ("number", ctypes.c_int),
        ("name", ctypes.c_char_p),
        ("string", ctypes.c_char * PHONEME_NAME_BYTES),
    )


class _Event(ctypes.Structure):
    _fields_ = (
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    )


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass(frozen=True)
class _RawEvent:
    kind: int  # EVENT_WORD or EVENT_PHONEME
    sample: int  # at the library's sample rate
    text_position: int
    length: int
    name: str  # phoneme mnemonic ("" for words)


@dataclass(frozen=True)
class _RawSynthesis:
    """What one synthesis in the child process sends back (see :func:`_encode_message`)."""

    pcm: bytes  # native-endian int16 at the library's sample rate
    events: list[_RawEvent]
    stressed: list[tuple[str, int]]  # (mnemonic, stress) from espeak_TextToPhonemes


_CHILD_OK, _CHILD_NO_VOICE, _CHILD_FAILED = "ok", "no-voice", "failed"
_CHILD_EXIT_STATUS = 0


def _encode_message(status: str, result: _RawSynthesis | str) -> bytes:
    """Child -> parent: one JSON header line, then the raw PCM bytes (no pickle)."""
    if isinstance(result, _RawSynthesis):
        header = {
            "status": status,
            "events": [dataclasses.astuple(e) for e in result.events],
            "stressed": result.stressed,
            "pcm_bytes": len(result.pcm),
        }
        return json.dumps(header).encode() + b"\n" + result.pcm
    return json.dumps({"status": status, "detail": result}).encode() + b"\n"


def _decode_message(payload: bytes) -> tuple[str, _RawSynthesis | str]:
    header_bytes, _, pcm = payload.partition(b"\n")
    header = json.loads(header_bytes)
    if "detail" in header:
        return header["status"], header["detail"]
    if len(pcm) != header["pcm_bytes"]:
        raise CospeechError("espeak synthesis process sent truncated audio")
    events = [_RawEvent(*e) for e in header["events"]]
    stressed = [(m, int(st)) for m, st in header["stressed"]]
    return header["status"], _RawSynthesis(pcm, events, stressed)


class _Engine:
    """The initialised library of this process. It never synthesises here: ``synthesize``
    runs each request in a forked child (see the module docstring). Use under ``_lock``."""

    def __init__(self) -> None:
        try:
            self.lib = ctypes.CDLL(LIBRARY_NAME)
        except OSError as exc:
            raise CospeechError(f"cannot load {LIBRARY_NAME} ({exc}); {INSTALL_HINT}") from None
        lib = self.lib
        lib.espeak_Initialize.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int)
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = (_SynthCallback,)
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = (ctypes.c_char_p,)
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int)
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = (
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        )  # fmt: skip
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_TextToPhonemes.argtypes = (
            ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int,
        )  # fmt: skip
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_Info.argtypes = (ctypes.POINTER(ctypes.c_char_p),)
        lib.espeak_Info.restype = ctypes.c_char_p

        rate = lib.espeak_Initialize(
            AUDIO_OUTPUT_SYNCHRONOUS, ESPEAK_BUFFER_MS, None, ESPEAK_INITIALIZE_PHONEME_EVENTS
        )
        if rate <= 0:
            raise CospeechError(f"espeak_Initialize failed (no espeak-ng-data?); {INSTALL_HINT}")
        self.sample_rate = rate
        data_path = ctypes.c_char_p()
        self.version = lib.espeak_Info(ctypes.byref(data_path)).decode()
        self.data_path = Path(data_path.value.decode()) if data_path.value else None
        self._pcm: list[bytes] = []
        self._events: list[_RawEvent] = []
        self._callback = _SynthCallback(self._on_synth)  # keep a reference: C holds a pointer
        lib.espeak_SetSynthCallback(self._callback)

    def synthesize_isolated(self, voice: VoiceParams, text: str) -> _RawSynthesis:
        """Synthesise ``text`` in a forked child, from this process's pristine state."""
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: synthesise, report, exit without returning to the caller
            try:
                os.close(read_fd)
                try:
                    message = _encode_message(_CHILD_OK, self._synthesize_here(voice, text))
                except _NoVoiceError:
                    message = _encode_message(_CHILD_NO_VOICE, voice.voice_name)
                except Exception as exc:
                    message = _encode_message(_CHILD_FAILED, f"{type(exc).__name__}: {exc}")
                with os.fdopen(write_fd, "wb") as pipe:
                    pipe.write(message)
            finally:
                os._exit(_CHILD_EXIT_STATUS)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as pipe:
            payload = pipe.read()
        _, wait_status = os.waitpid(pid, 0)
        if not payload:
            raise CospeechError(f"espeak synthesis process died (wait status {wait_status})")
        status, result = _decode_message(payload)
        if status == _CHILD_NO_VOICE:
            raise InputError(f"espeak-ng has no voice {result!r}")
        if status != _CHILD_OK:
            raise CospeechError(f"espeak synthesis failed: {result}")
        return result

    def variants(self) -> tuple[str, ...]:
        folder = self.data_path / "voices" / "!v" if self.data_path else None
        if folder is None or not folder.is_dir():
            return ()
        return tuple(sorted(p.name for p in folder.iterdir() if p.is_file()))

    def _synthesize_here(self, voice: VoiceParams, text: str) -> _RawSynthesis:
        self._select_voice(voice)
        self._pcm, self._events = [], []
        data = text.encode("utf-8") + b"\0"
        status = self.lib.espeak_Synth(
            data, len(data), 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8, None, None
        )
        if status != EE_OK or self.lib.espeak_Synchronize() != EE_OK:
            raise CospeechError(f"espeak_Synth failed with status {status}")
        return _RawSynthesis(b"".join(self._pcm), self._events, self._stressed_phonemes(text))

    def _on_synth(self, wav, num_samples: int, events) -> int:
        if wav and num_samples > 0:
            self._pcm.append(ctypes.string_at(wav, num_samples * ctypes.sizeof(ctypes.c_short)))
        i = 0
        while events[i].type != EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type in (EVENT_WORD, EVENT_PHONEME):
                name = ""
                if event.type == EVENT_PHONEME:
                    name = bytes(event.id.string).split(b"\0", 1)[0].decode("utf-8", "replace")
                self._events.append(
                    _RawEvent(event.type, event.sample, event.text_position, event.length, name)
                )
            i += 1
        return 0  # 0: continue synthesis

    def _select_voice(self, voice: VoiceParams) -> None:
        if self.lib.espeak_SetVoiceByName(voice.voice_name.encode()) != EE_OK:
            raise _NoVoiceError
        for param, value in (
            (PARAM_RATE, voice.rate),
            (PARAM_VOLUME, voice.volume),
            (PARAM_PITCH, voice.pitch),
            (PARAM_RANGE, voice.pitch_range),
            (PARAM_WORDGAP, voice.word_gap),
        ):
            if self.lib.espeak_SetParameter(param, value, 0) != EE_OK:
                raise CospeechError(f"espeak_SetParameter({param}, {value}) failed")

    def _stressed_phonemes(self, text: str) -> list[tuple[str, int]]:
        """(mnemonic, stress) of ``text`` from ``espeak_TextToPhonemes``, clause by clause."""
        buffer = ctypes.create_string_buffer(text.encode("utf-8"))
        pointer = ctypes.c_void_p(ctypes.addressof(buffer))
        result = []
        while pointer.value:
            clause = self.lib.espeak_TextToPhonemes(
                ctypes.byref(pointer), ESPEAK_CHARS_UTF8, TEXT_TO_PHONEMES_SEPARATOR
            )
            for token in (clause or b"").decode("utf-8", "replace").split():
                stress = STRESS_NONE
                while token[:1] in STRESS_MARKS:
                    stress = max(stress, STRESS_MARKS[token[0]])
                    token = token[1:]
                if token:
                    result.append((token, stress))
        return result


class _NoVoiceError(Exception):
    """espeak_SetVoiceByName refused the voice (raised in the child only)."""


_engine: _Engine | None = None
_lock = threading.Lock()


def _reset_lock_in_child() -> None:
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_lock_in_child)


def _get_engine() -> _Engine:
    global _engine
    if _engine is None:
        _engine = _Engine()
    return _engine


def espeak_available() -> bool:
    """True when libespeak-ng can be loaded and initialised in this process."""
    try:
        with _lock:
            _get_engine()
    except CospeechError:
        return False
    return True


def available_variants() -> tuple[str, ...]:
    """Voice variant names of the installed espeak-ng-data (files of voices/!v), sorted."""
    with _lock:
        return _get_engine().variants()


# --- synthesis ---------------------------------------------------------------------------


def synthesize(
    text: str, voice: VoiceParams | None = None, sample_rate: int = DEFAULT_SAMPLE_RATE
) -> Utterance:
    """Speak ``text`` with ``voice``; audio float32 [N] at ``sample_rate`` Hz mono plus the
    phoneme segments and word times of the same synthesis (see the module docstring)."""
    voice = voice or VoiceParams()
    if not text.strip():
        raise InputError("synthesize: empty text")
    if sample_rate <= 0:
        raise InputError(f"synthesize: sample_rate must be > 0, got {sample_rate}")
    with _lock:
        engine = _get_engine()
        if voice.variant and voice.variant not in engine.variants():
            raise InputError(
                f"espeak-ng has no voice variant {voice.variant!r} "
                f"(available: {', '.join(engine.variants()) or 'none found'})"
            )
        raw = engine.synthesize_isolated(voice, text)
        native_rate = engine.sample_rate
    pcm, events = np.frombuffer(raw.pcm, dtype=np.int16), raw.events
    if len(pcm) == 0 or not any(e.kind == EVENT_PHONEME for e in events):
        raise InputError(f"synthesize: espeak produced no speech for {text!r}")

    audio = _resample(pcm.astype(np.float32) / 32768.0, native_rate, sample_rate)
    phonemes, words = _segments_from_events(pcm, events, text, native_rate, raw.stressed)
    duration = len(audio) / sample_rate
    last = phonemes[-1]
    phonemes[-1] = PhonemeSegment(last.phone, last.start, duration, last.stress, last.word_index)
    words = [(w, s, min(e, duration)) for w, s, e in words]
    validate_segments(phonemes)
    return Utterance(audio, sample_rate, phonemes, words, text, voice)


def _resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """float32 [N] from ``rate_in`` to ``rate_out`` Hz (polyphase), clipped to [-1, 1]."""
    if rate_in != rate_out:
        common = gcd(rate_in, rate_out)
        audio = resample_poly(audio, rate_out // common, rate_in // common)
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


@dataclass
class _Piece:
    phone: str
    mnemonic: str
    start: int  # samples at the native rate
    end: int
    word: int  # index of the text token, NO_WORD for silence
    stress: int = STRESS_NONE


def _segments_from_events(
    pcm: np.ndarray,
    events: Sequence[_RawEvent],
    text: str,
    rate: int,
    stressed: Sequence[tuple[str, int]],
) -> tuple[list[PhonemeSegment], list[tuple[str, float, float]]]:
    """Phoneme segments and words (in seconds) from the events of one synthesis call."""
    total = len(pcm)
    tokens = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    token_starts = [start for start, _ in tokens]
    pieces: list[_Piece] = []
    token = NO_WORD
    for event in events:
        if event.kind == EVENT_WORD:
            token = _token_at(tokens, token_starts, event.text_position - 1)
            continue
        phone = espeak_to_phone(event.name)
        start = min(max(event.sample, 0), total)
        if pieces:
            pieces[-1].end = start
        pieces.append(
            _Piece(phone, event.name, start, total, token if phone != SILENCE else NO_WORD)
        )
    if pieces[0].start > 0:
        pieces.insert(0, _Piece(SILENCE, "", 0, pieces[0].start, NO_WORD))
    _assign_stress(pieces, stressed)
    _move_closures_into_stops(pieces, pcm, int(MAX_STOP_CLOSURE_S * rate))
    pieces = _merge_silences([p for p in pieces if p.end > p.start])

    # a word is a token that owns phonemes, plus the tokens up to the next such one that
    # espeak spoke together with it ("There were", "on the")
    spoken: dict[int, tuple[int, int]] = {}
    for piece in pieces:
        if piece.word != NO_WORD:
            first, _ = spoken.get(piece.word, (piece.start, piece.end))
            spoken[piece.word] = (first, piece.end)
    owners = sorted(spoken)
    words = []
    for k, owner in enumerate(owners):
        first_token = 0 if k == 0 else owner
        last_token = owners[k + 1] - 1 if k + 1 < len(owners) else len(tokens) - 1
        written = " ".join(text[a:b] for a, b in tokens[first_token : last_token + 1])
        start, end = spoken[owner]
        words.append((written.strip(WORD_EDGE_PUNCTUATION), start / rate, end / rate))
    word_of_token = {owner: k for k, owner in enumerate(owners)}
    segments = [
        PhonemeSegment(
            p.phone, p.start / rate, p.end / rate, p.stress, word_of_token.get(p.word, NO_WORD)
        )
        for p in pieces
    ]
    return segments, words


def _token_at(tokens: Sequence[tuple[int, int]], starts: Sequence[int], position: int) -> int:
    """Index of the whitespace-separated token at character ``position`` (the next token
    when the position falls between tokens, the last one past the end)."""
    index = bisect.bisect_right(starts, position) - 1
    if index < 0 or position >= tokens[index][1]:
        index += 1
    return min(max(index, 0), len(tokens) - 1)


def _assign_stress(pieces: list[_Piece], stressed: Sequence[tuple[str, int]]) -> None:
    """Copy the stress of ``espeak_TextToPhonemes`` onto the event phonemes (aligned by
    mnemonic; the two agree except where the clause context changes a phoneme)."""
    spoken = [i for i, p in enumerate(pieces) if p.phone != SILENCE]
    matcher = difflib.SequenceMatcher(
        a=[pieces[i].mnemonic for i in spoken], b=[m for m, _ in stressed], autojunk=False
    )
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            pieces[spoken[block.a + k]].stress = stressed[block.b + k][1]


def _move_closures_into_stops(pieces: list[_Piece], pcm: np.ndarray, max_closure: int) -> None:
    """Start each voiceless stop at the beginning of the digital silence before its release
    (at most ``max_closure`` samples; a spoken phone before it keeps at least one sample,
    a silence before it may vanish)."""
    silent = np.abs(pcm.astype(np.int32)) <= SILENCE_AMPLITUDE
    for k in range(1, len(pieces)):
        piece, before = pieces[k], pieces[k - 1]
        if piece.phone not in VOICELESS_STOPS:
            continue
        keep = 0 if before.phone == SILENCE else 1
        limit = max(piece.start - max_closure, before.start + keep)
        start = piece.start
        while start > limit and silent[start - 1]:
            start -= 1
        before.end = piece.start = start


def _merge_silences(pieces: list[_Piece]) -> list[_Piece]:
    merged: list[_Piece] = []
    for piece in pieces:
        if merged and piece.phone == SILENCE and merged[-1].phone == SILENCE:
            merged[-1].end = piece.end
        else:
            merged.append(piece)
    return merged
