"""libespeak-ng synthesis: timings against the audio, mapping coverage, determinism,
resampling, voices."""

import string
import struct
from concurrent.futures import ProcessPoolExecutor
from itertools import pairwise
from multiprocessing import get_context

import numpy as np
import pytest

from cospeech.audio import espeak
from cospeech.audio.espeak import (
    Utterance,
    VoiceParams,
    available_variants,
    espeak_available,
    synthesize,
)
from cospeech.audio.phonemes import ESPEAK_TO_PHONE, PHONES, SILENCE, VOWELS
from cospeech.data.synth.voices import (
    HELD_OUT_VARIANTS,
    PITCH_BOUNDS,
    RATE_BOUNDS,
    TRAIN_VARIANTS,
    VOLUME_BOUNDS,
    sample_voice,
)
from cospeech.errors import CospeechError, InputError

pytestmark = pytest.mark.skipif(not espeak_available(), reason="libespeak-ng not installed")

VARIED_TEXT = (
    "The quick brown fox jumps over the lazy dog. Would you believe it? She measured "
    "thirty-two oranges, nine joyful choirs, and a vision of azure water! Thank you, "
    "Hugh; the young bathing king sang: oh boy, how ugly, such treasure."
)


def rms(audio: np.ndarray, rate: int, start: float, end: float) -> float:
    piece = audio[round(start * rate) : round(end * rate)]
    return float(np.sqrt(np.mean(piece.astype(np.float64) ** 2))) if len(piece) else 0.0


@pytest.fixture(scope="module")
def pa() -> Utterance:
    return synthesize("Pa, pa. Pa pa pa!", VoiceParams(variant="m3"))


def test_segments_cover_the_audio_exactly(pa):
    segments = pa.phonemes
    assert segments[0].start == 0.0
    for before, after in pairwise(segments):
        assert after.start == pytest.approx(before.end, abs=1e-9)
    assert abs(segments[-1].end - len(pa.audio) / pa.sample_rate) < 0.01
    assert pa.sample_rate == 16000 and pa.audio.dtype == np.float32 and pa.audio.ndim == 1


def test_silences_are_silent_and_vowels_loud(pa):
    phones = [s.phone for s in pa.phonemes]
    assert phones[:2] == ["P", "AA"] and phones.count("P") == 5 and phones.count("AA") == 5
    pauses = [s for s in pa.phonemes if s.phone == SILENCE and s.duration > 0.05]
    assert len(pauses) >= 2  # after "Pa," and "pa."
    vowels = [s for s in pa.phonemes if s.phone == "AA"]
    loudest = max(rms(pa.audio, pa.sample_rate, s.start, s.end) for s in vowels)
    for pause in pauses:
        assert rms(pa.audio, pa.sample_rate, pause.start, pause.end) < 1e-3
    for vowel in vowels:
        assert rms(pa.audio, pa.sample_rate, vowel.start, vowel.end) > 0.3 * loudest > 0.02


def test_stop_closure_belongs_to_the_stop(pa):
    """The silent closure before each "p" release is inside P, not at the end of the vowel
    before it; the release (burst) follows within the P segment."""
    rate = pa.sample_rate
    edge = 0.01
    pairs = [(b, s) for b, s in pairwise(pa.phonemes) if b.phone == "AA"]
    assert sum(stop.phone == "P" for _, stop in pairs) == 2  # "Pa pa pa": two vowel-stop joins
    for before, stop in pairs:
        if stop.phone != "P":
            continue
        assert rms(pa.audio, rate, before.end - edge, before.end) > 0.01  # vowel still sounding
        assert rms(pa.audio, rate, stop.start, stop.start + edge) < 1e-3  # closure: silent
        assert rms(pa.audio, rate, stop.end - edge, stop.end) > 1e-3  # release: sound


def test_words_and_word_indices(pa):
    assert [w for w, _, _ in pa.words] == ["Pa", "pa", "Pa", "pa", "pa"]
    for index, (_, start, end) in enumerate(pa.words):
        members = [s for s in pa.phonemes if s.word_index == index]
        assert [s.phone for s in members] == ["P", "AA"]
        assert members[0].start == pytest.approx(start) and members[-1].end == pytest.approx(end)
    assert all(s.word_index == -1 for s in pa.phonemes if s.phone == SILENCE)


def test_varied_text_maps_every_emitted_phoneme():
    utterance = synthesize(VARIED_TEXT, VoiceParams())
    phones = {s.phone for s in utterance.phonemes}
    assert phones <= set(PHONES)
    assert len(phones) >= 36  # nearly the whole inventory occurs in this text
    assert [t for w, _, _ in utterance.words for t in w.split()] == [
        t.strip(string.punctuation) for t in VARIED_TEXT.split()
    ]
    # stress from espeak's own transcription: content words carry primary stress
    assert any(s.stress == 1 for s in utterance.phonemes)
    stressed_phones = {s.phone for s in utterance.phonemes if s.stress > 0}
    assert stressed_phones <= set(VOWELS) | {"L", "M", "N", "NG"}


def test_words_follow_the_text_with_numbers_and_joined_words():
    text = "There were about 67 songs on the list. I can't go, it's 1992!"
    utterance = synthesize(text, VoiceParams())
    words = [w for w, _, _ in utterance.words]
    assert [t for w in words for t in w.split()] == [
        t.strip(string.punctuation) for t in text.split()
    ]
    assert "67" in words and "1992" in words and "can't" in words  # numbers stay one word
    for index, (_, start, end) in enumerate(utterance.words):
        members = [s for s in utterance.phonemes if s.word_index == index]
        assert members and all(s.phone != SILENCE for s in members)
        assert members[0].start == pytest.approx(start) and members[-1].end == pytest.approx(end)
    starts = [start for _, start, _ in utterance.words]
    assert starts == sorted(starts)
    # "sixty-seven" takes several syllables of phonemes under one word
    sixty_seven = words.index("67")
    assert sum(s.phone in VOWELS for s in utterance.phonemes if s.word_index == sixty_seven) >= 4


def _en_us_phoneme_table(data_path) -> list[tuple[str, int]]:
    """(mnemonic, type) of every phoneme of the en-us table chain, read from espeak-ng's
    compiled phontab (1.51 layout: table count; per table n_phonemes, includes (parent
    index + 1), 32-byte name, then 16-byte PHONEME_TAB records starting with the mnemonic
    packed into a little-endian uint32 and with the type at byte 11)."""
    blob = (data_path / "phontab").read_bytes()
    tables, offset = [], 4
    for _ in range(blob[0]):
        count, includes = blob[offset], blob[offset + 1]
        name = blob[offset + 4 : offset + 36].split(b"\0")[0].decode()
        offset += 36
        records = []
        for _ in range(count):
            mnemonic, _flags, _program, code, kind = struct.unpack_from("<IIHBB", blob, offset)
            records.append((code, mnemonic.to_bytes(4, "little").split(b"\0")[0].decode(), kind))
            offset += 16
        tables.append((name, includes, records))
    names = [t[0] for t in tables]
    chain, index = [], names.index("en-us")
    while True:
        chain.append(index)
        if tables[index][1] == 0:
            break
        index = tables[index][1] - 1
    effective = {}
    for index in reversed(chain):
        for code, mnemonic, kind in tables[index][2]:
            effective[code] = (mnemonic, kind)
    return [entry for entry in effective.values() if entry[0]]


def test_mapping_covers_the_whole_en_us_phoneme_table():
    with espeak._lock:
        data_path = espeak._get_engine().data_path
    stress_type, virtual_type = 1, 9  # never emitted as phoneme events
    table = _en_us_phoneme_table(data_path)
    assert len(table) > 100
    speakable = {m for m, kind in table if kind not in (stress_type, virtual_type)}
    assert {"@", "aI", "3:", "t#", "_:", "D"} <= speakable
    assert speakable - set(ESPEAK_TO_PHONE) == set()


def test_same_text_and_voice_give_identical_audio():
    voice = VoiceParams(variant="f1", pitch=60, rate=190)
    first = synthesize("Well, I think so too.", voice)
    synthesize("Something else in between, to move the library's state on.", VoiceParams())
    second = synthesize("Well, I think so too.", voice)
    assert np.array_equal(first.audio, second.audio)  # the same C code on the same input
    assert first.phonemes == second.phonemes and first.words == second.words


def _audio_in_worker(text: str) -> np.ndarray:
    return synthesize(text, VoiceParams(variant="m1")).audio


def test_worker_processes_give_the_same_audio():
    expected = synthesize("Hello from a worker.", VoiceParams(variant="m1")).audio
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("fork")) as pool:
        assert np.array_equal(
            pool.submit(_audio_in_worker, "Hello from a worker.").result(), expected
        )


def test_resampling_keeps_duration_and_level():
    text = "Resampling check."
    native = synthesize(text, VoiceParams(), sample_rate=22050)
    resampled = synthesize(text, VoiceParams(), sample_rate=16000)
    assert len(native.audio) / 22050 == pytest.approx(len(resampled.audio) / 16000, abs=1e-4)
    assert native.sample_rate == 22050 and resampled.sample_rate == 16000
    level = np.sqrt(np.mean(native.audio**2))
    assert np.sqrt(np.mean(resampled.audio**2)) == pytest.approx(level, rel=0.05)

    # a polyphase resampler keeps the spectrum below 8 kHz: compare the 0-4 kHz energy share
    def low_band_share(audio, rate):
        spectrum = np.abs(np.fft.rfft(audio)) ** 2
        freqs = np.fft.rfftfreq(len(audio), 1 / rate)
        return spectrum[freqs < 4000].sum() / spectrum[freqs < 7500].sum()

    assert low_band_share(resampled.audio, 16000) == pytest.approx(
        low_band_share(native.audio, 22050), abs=0.02
    )


def _f0(audio: np.ndarray, rate: int) -> float:
    """Fundamental frequency (Hz) of a voiced stretch, by autocorrelation in 60-400 Hz."""
    audio = audio - audio.mean()
    corr = np.correlate(audio, audio, mode="full")[len(audio) - 1 :]
    low, high = int(rate / 400), int(rate / 60)
    return rate / (low + int(np.argmax(corr[low:high])))


def test_voice_parameters_change_the_speech():
    text = "Ah, a long vowel."
    low = synthesize(text, VoiceParams(variant="m3", pitch=20, pitch_range=0))
    high = synthesize(text, VoiceParams(variant="m3", pitch=80, pitch_range=0))

    def vowel_f0(u):
        vowel = max((s for s in u.phonemes if s.phone in VOWELS), key=lambda s: s.duration)
        middle = u.audio[int(vowel.start * 16000) : int(vowel.end * 16000)]
        return _f0(middle, u.sample_rate)

    assert vowel_f0(high) > 1.3 * vowel_f0(low)
    slow = synthesize(text, VoiceParams(rate=100))
    fast = synthesize(text, VoiceParams(rate=300))
    assert slow.duration > 1.5 * fast.duration
    other = synthesize(text, VoiceParams(variant="f1"))
    assert not np.array_equal(other.audio[: len(slow.audio)], slow.audio[: len(other.audio)])


def test_bad_requests_are_input_errors():
    with pytest.raises(InputError):
        synthesize("   ", VoiceParams())
    with pytest.raises(InputError, match="variant"):
        synthesize("hello", VoiceParams(variant="no-such-variant"))
    with pytest.raises(InputError):
        synthesize("hello", VoiceParams(language="xx-nope"))
    with pytest.raises(InputError):
        VoiceParams(pitch=120)
    with pytest.raises(InputError):
        VoiceParams(rate=20)
    with pytest.raises(InputError):
        VoiceParams(variant="m1+f2")


def test_missing_library_says_how_to_install(monkeypatch):
    monkeypatch.setattr(espeak, "LIBRARY_NAME", "libespeak-ng-does-not-exist.so.1")
    with pytest.raises(CospeechError, match="apt-get install espeak-ng"):
        espeak._Engine()


def test_voice_split_and_sampling():
    assert not set(TRAIN_VARIANTS) & set(HELD_OUT_VARIANTS)
    assert set(TRAIN_VARIANTS) | set(HELD_OUT_VARIANTS) <= set(available_variants())
    voices = [sample_voice(np.random.default_rng(seed)) for seed in range(50)]
    again = [sample_voice(np.random.default_rng(seed)) for seed in range(50)]
    assert voices == again
    assert {v.variant for v in voices} <= set(TRAIN_VARIANTS)
    assert len({v.variant for v in voices}) > 10
    for voice in voices:
        assert PITCH_BOUNDS[0] <= voice.pitch <= PITCH_BOUNDS[1]
        assert RATE_BOUNDS[0] <= voice.rate <= RATE_BOUNDS[1]
        assert VOLUME_BOUNDS[0] <= voice.volume <= VOLUME_BOUNDS[1]
    held_out = sample_voice(np.random.default_rng(0), variants=HELD_OUT_VARIANTS)
    assert held_out.variant in HELD_OUT_VARIANTS
    with pytest.raises(InputError):
        sample_voice(np.random.default_rng(0), variants=())


@pytest.mark.parametrize("variant", TRAIN_VARIANTS + HELD_OUT_VARIANTS)
def test_corpus_variants_have_silent_pauses_and_no_clipping(variant):
    voice = VoiceParams(variant=variant, volume=VOLUME_BOUNDS[1])
    utterance = synthesize("Okay, so, what now?", voice)
    pauses = [s for s in utterance.phonemes if s.phone == SILENCE and s.duration > 0.05]
    assert pauses
    for pause in pauses:
        assert rms(utterance.audio, utterance.sample_rate, pause.start, pause.end) < 2e-3
    assert np.mean(np.abs(utterance.audio) > 0.99) < 1e-4
