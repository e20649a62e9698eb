"""The synthetic corpus writer: layout, manifest, frame/audio agreement, reruns, splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from cospeech.audio.espeak import espeak_available
from cospeech.audio.phonemes import segments_from_json
from cospeech.cli import main
from cospeech.data.manifest import (
    CLIP_FILES,
    ManifestEntry,
    read_manifest,
    read_meta,
    write_manifest,
)
from cospeech.data.synth.corpus import CorpusConfig, write_corpus
from cospeech.data.synth.identity import make_identities, split_counts
from cospeech.data.synth.voices import HELD_OUT_VARIANTS, TRAIN_VARIANTS
from cospeech.errors import InputError
from cospeech.media.video import probe
from cospeech.pose.sequence import PoseSequence

pytestmark = pytest.mark.skipif(not espeak_available(), reason="libespeak-ng not installed")

TINY = CorpusConfig(
    clips=2, seed=5, size=64, identities=2, min_words=3, max_words=6,
    min_duration_s=1.0, max_duration_s=4.0,
)  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[ManifestEntry]]:
    root = tmp_path_factory.mktemp("corpus")
    return root, write_corpus(root, TINY)


def test_layout_and_manifest(corpus):
    root, entries = corpus
    assert read_manifest(root) == entries
    assert [e.id for e in entries] == ["clip000000", "clip000001"]
    for entry in entries:
        folder = root / entry.path
        names = {p.name for p in folder.iterdir()}
        assert names == {*CLIP_FILES, "phonemes.json"}
        meta = read_meta(folder)
        assert meta["source"] == "synthetic" and meta["identity"] == entry.identity
        assert (meta["width"], meta["height"], meta["fps"]) == (64, 64, 25.0)
        for key in ("appearance", "geometry", "voice", "gesture_style", "text", "split"):
            assert key in meta
        for path in meta["reference"].values():
            assert (root / path).is_file()
        reference = PoseSequence.load(root / meta["reference"]["pose"])
        assert len(reference) == 1 and reference.width == 64
    assert not list((root / "clips").glob(".*"))  # no temporary folders left


def test_frames_audio_and_phonemes_agree(corpus):
    root, entries = corpus
    for entry in entries:
        folder = root / entry.path
        pose = PoseSequence.load(folder / "pose.npz")
        info = probe(folder / "video.mp4")
        assert info.frames == len(pose) == entry.frames
        assert (info.width, info.height) == (64, 64)
        audio, rate = soundfile.read(folder / "audio.wav", dtype="float32")
        assert rate == 16000 and audio.ndim == 1
        assert len(audio) == round(entry.frames / entry.fps * 16000)
        assert entry.duration == pytest.approx(entry.frames / entry.fps)
        assert np.abs(audio).max() > 0.05  # speech, not silence
        segments = segments_from_json(json.loads((folder / "phonemes.json").read_text()))
        assert segments[0].start == 0 and segments[-1].end == pytest.approx(entry.duration)
        assert segments[0].phone == "SIL" and segments[-1].phone == "SIL"  # silence around


def test_splits_by_identity_and_held_out_voices(corpus):
    root, entries = corpus
    splits = {e.identity: e.split for e in entries}
    assert sorted(splits.values()) == ["test", "train"]
    for entry in entries:
        variant = read_meta(root / entry.path)["voice"]["variant"]
        expected = HELD_OUT_VARIANTS if entry.split == "test" else TRAIN_VARIANTS
        assert variant in expected
    identities = make_identities(seed=1, count=20)
    by_split = {s: {i.id for i in identities if i.split == s} for s in ("train", "val", "test")}
    assert by_split["train"].isdisjoint(by_split["test"] | by_split["val"])
    assert {s: len(v) for s, v in by_split.items()} == {"train": 14, "val": 2, "test": 4}
    assert split_counts(1, 0.1, 0.2) == {"train": 1, "val": 0, "test": 0}
    assert split_counts(3, 0.1, 0.2) == {"train": 1, "val": 1, "test": 1}


def test_rerun_skips_finished_clips(corpus):
    root, entries = corpus
    pose_file = root / entries[0].path / "pose.npz"
    before = pose_file.stat().st_mtime_ns
    (root / "clips" / ".clip000002.abandoned").mkdir()  # as left by a killed run
    assert write_corpus(root, TINY) == entries
    assert not list((root / "clips").glob(".*"))
    assert pose_file.stat().st_mtime_ns == before
    with pytest.raises(InputError, match="other settings"):
        write_corpus(root, CorpusConfig(**{**TINY.__dict__, "seed": 6}))


def test_deterministic_in_parallel(corpus, tmp_path):
    root, entries = corpus
    again = write_corpus(tmp_path, TINY, workers=2)
    assert again == entries
    for entry in entries:
        for name in ("pose.npz", "audio.wav", "phonemes.json"):
            assert (tmp_path / entry.path / name).read_bytes() == (
                root / entry.path / name
            ).read_bytes()


def test_manifest_refuses_an_identity_in_two_splits(tmp_path):
    a = ManifestEntry("a", "clips/a", "train", "id1", 10, 25.0, 0.4)
    b = ManifestEntry("b", "clips/b", "test", "id1", 10, 25.0, 0.4)
    with pytest.raises(InputError, match="splits"):
        write_manifest(tmp_path, [a, b])
    (tmp_path / "manifest.jsonl").write_text('{"id": "a"}\n')
    with pytest.raises(InputError, match=r"manifest\.jsonl:1"):
        read_manifest(tmp_path)


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    assert main(["data", "synth", "--out", str(tmp_path / "c"), "--clips", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--clips" in err[0]
    assert not (tmp_path / "c").exists()
