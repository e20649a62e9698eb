"""The synthetic speaker corpus writer: speech (espeak) -> rule motion -> rendered video.

Layout of a corpus folder (the dataset format of :mod:`cospeech.data.manifest`)::

    OUT/
      corpus.json                   the settings the corpus was made with
      manifest.jsonl                one line per clip
      identities/<id>/identity.json appearance, geometry, voice, gesture style, split
      identities/<id>/reference.png the neutral pose rendered (the "photo")
      identities/<id>/reference_pose.npz
      clips/<clip id>/              video.mp4, audio.wav, pose.npz, phonemes.json, meta.json

Every clip is a pure function of (seed, clip index): its random stream is
``default_rng([seed, CLIP_STREAM, index])``, so clips come out the same in any order and
with any number of workers. A clip is written into a temporary folder and renamed when
complete; a rerun skips finished clips. The manifest is rewritten at the end.
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.forkserver
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cospeech.atomic import atomic_path, make_folder, make_temp_dir
from cospeech.audio.phonemes import SILENCE, PhonemeSegment, segments_to_json
from cospeech.data.manifest import (
    AUDIO_NAME,
    AUDIO_SAMPLE_RATE,
    META_NAME,
    POSE_NAME,
    VIDEO_NAME,
    ManifestEntry,
    clip_duration,
    entry_from_meta,
    read_meta,
    write_manifest,
    write_meta,
)
from cospeech.data.synth.identity import Identity, make_identities
from cospeech.errors import InputError, count
from cospeech.jsonfile import read_json, write_json
from cospeech.pose.sequence import PoseSequence

CLIP_STREAM = 3  # SeedSequence key of clip draws (identities use other streams)
CORPUS_NAME = "corpus.json"
PHONEMES_NAME = "phonemes.json"
IDENTITY_NAME = "identity.json"
REFERENCE_IMAGE = "reference.png"
REFERENCE_POSE = "reference_pose.npz"
MAX_TEXT_ATTEMPTS = 50  # texts drawn until one's speech fits the duration range
SOURCE = "synthetic"
MAX_SIZE = 4096  # frame side in pixels; larger frames would not fit in memory while rendering
# Modules the worker fork server imports once, so that each clip's process starts fast.
WORKER_PRELOAD = (
    "cospeech.data.synth.corpus", "cospeech.audio.espeak", "cospeech.data.synth.render",
    "cospeech.data.synth.text_bank", "cospeech.media.video", "cospeech.motion.rules",
    "soundfile", "cv2",
)  # fmt: skip


@dataclass(frozen=True)
class CorpusConfig:
    """Corpus settings. ``identities`` 0 means ``max(4, clips // 5)``. Speech per clip:
    ``min_words``-``max_words`` words of 1-3 sentences, with ``lead_in_s`` / ``tail_s``
    (ranges) of silence around it, ``min_duration_s``-``max_duration_s`` seconds in all."""

    clips: int = 200
    seed: int = 0
    size: int = 256
    fps: float = 25.0
    identities: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    min_words: int = 5
    max_words: int = 18
    min_duration_s: float = 2.0
    max_duration_s: float = 8.0
    lead_in_s: tuple[float, float] = (0.1, 0.4)
    tail_s: tuple[float, float] = (0.2, 0.5)

    def __post_init__(self) -> None:
        if self.clips < 1:
            raise InputError(f"corpus: --clips must be >= 1, got {self.clips}")
        if not 16 <= self.size <= MAX_SIZE or self.size % 2:
            raise InputError(
                f"corpus: --size must be even and in [16, {MAX_SIZE}], got {self.size}"
            )
        if not 1 <= self.fps <= 120:
            raise InputError(f"corpus: --fps must be in [1, 120], got {self.fps}")
        if self.seed < 0:
            raise InputError(f"corpus: --seed must be >= 0, got {self.seed}")
        if self.identities < 0:
            raise InputError(f"corpus: --identities must be >= 0, got {self.identities}")
        if self.identities > self.clips:
            raise InputError(
                f"corpus: --identities {self.identities} is more than --clips {self.clips}: "
                f"{count(self.identities - self.clips, 'speaker')} would have no clip"
            )
        for name in ("val_fraction", "test_fraction"):
            if not 0 <= getattr(self, name) < 1:
                flag = "--" + name.replace("_", "-")
                raise InputError(f"corpus: {flag} must be in [0, 1), got {getattr(self, name)}")
        if self.val_fraction + self.test_fraction >= 1:
            raise InputError("corpus: --val-fraction + --test-fraction must be below 1")
        if not 0 < self.min_duration_s < self.max_duration_s:
            raise InputError("corpus: needs 0 < min duration < max duration")

    @property
    def identity_count(self) -> int:
        return self.identities or max(4, self.clips // 5)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["identities"] = self.identity_count
        data["lead_in_s"], data["tail_s"] = list(self.lead_in_s), list(self.tail_s)
        return data


def clip_id(index: int) -> str:
    return f"clip{index:06d}"


# --- identities ----------------------------------------------------------------------------


def write_identity(root: Path, identity: Identity, size: int) -> None:
    """Write an identity's record, neutral pose and its rendering (skipped when present)."""
    import cv2

    from cospeech.data.synth.render import Renderer
    from cospeech.data.synth.skeleton import neutral_pose

    folder = root / "identities" / identity.id
    if (folder / IDENTITY_NAME).is_file():
        return
    keypoints = neutral_pose(identity.geometry, size, size)
    PoseSequence(keypoints[None], 1.0, size, size).save(folder / REFERENCE_POSE)
    image = Renderer(identity.appearance, size, size).render(keypoints)
    with atomic_path(folder / REFERENCE_IMAGE) as tmp:
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(image[:, :, ::-1])):
            raise InputError(f"cannot write {folder / REFERENCE_IMAGE}")
    # last: marks the folder complete
    write_json(folder / IDENTITY_NAME, identity.to_dict(), sort_keys=True)


def reference_paths(identity_id: str) -> dict[str, str]:
    """Reference image and pose of an identity, relative to the corpus root."""
    base = f"identities/{identity_id}"
    return {"image": f"{base}/{REFERENCE_IMAGE}", "pose": f"{base}/{REFERENCE_POSE}"}


# --- one clip ------------------------------------------------------------------------------


@dataclass
class _Speech:
    audio: np.ndarray
    phonemes: list[PhonemeSegment]
    words: list[tuple[str, float, float]]
    text: str


def _speak(identity: Identity, config: CorpusConfig, rng: np.random.Generator) -> _Speech:
    """Synthesize text until its speech, with silence around it, fits the duration range;
    the audio is padded/trimmed to a whole number of frames."""
    from cospeech.audio.espeak import synthesize
    from cospeech.data.synth.text_bank import sample_text

    for _ in range(MAX_TEXT_ATTEMPTS):
        text = sample_text(rng, config.min_words, config.max_words)
        lead = float(rng.uniform(*config.lead_in_s))
        tail = float(rng.uniform(*config.tail_s))
        utterance = synthesize(text, identity.voice, sample_rate=AUDIO_SAMPLE_RATE)
        total = lead + utterance.duration + tail
        if config.min_duration_s <= total <= config.max_duration_s:
            break
    else:
        raise InputError(
            f"corpus: no text of {config.min_words}-{config.max_words} words gave "
            f"{config.min_duration_s}-{config.max_duration_s} s of speech"
        )
    frames = round(total * config.fps)
    duration = frames / config.fps
    lead_samples = round(lead * AUDIO_SAMPLE_RATE)
    audio = np.zeros(round(duration * AUDIO_SAMPLE_RATE), dtype=np.float32)
    speech = utterance.audio[: len(audio) - lead_samples]
    audio[lead_samples : lead_samples + len(speech)] = speech
    shift = lead_samples / AUDIO_SAMPLE_RATE
    phonemes = [PhonemeSegment(SILENCE, 0.0, shift)] if shift > 0 else []
    for seg in utterance.phonemes:
        start, end = seg.start + shift, min(seg.end + shift, duration)
        if start < duration:
            phonemes.append(PhonemeSegment(seg.phone, start, end, seg.stress, seg.word_index))
    if phonemes[-1].end < duration:
        phonemes.append(PhonemeSegment(SILENCE, phonemes[-1].end, duration))
    phonemes = _merge_silences(phonemes)
    words = [(w, s + shift, min(e + shift, duration)) for w, s, e in utterance.words]
    return _Speech(audio=audio, phonemes=phonemes, words=words, text=text)


def _merge_silences(segments: list[PhonemeSegment]) -> list[PhonemeSegment]:
    merged: list[PhonemeSegment] = []
    for seg in segments:
        if merged and seg.phone == SILENCE and merged[-1].phone == SILENCE:
            merged[-1] = PhonemeSegment(SILENCE, merged[-1].start, seg.end)
        else:
            merged.append(seg)
    return merged


def make_clip(root: Path, config: CorpusConfig, identity: Identity, index: int) -> ManifestEntry:
    """Write clip ``index`` (spoken by ``identity``) under ``root/clips``; skip it when
    finished before. Returns its manifest entry."""
    import soundfile

    from cospeech.data.synth.render import Renderer
    from cospeech.data.synth.skeleton import neutral_pose
    from cospeech.media.video import VideoWriter
    from cospeech.motion.rules import generate_motion, prosody_from_audio

    name = clip_id(index)
    final = root / "clips" / name
    if (final / META_NAME).is_file():
        return entry_from_meta(read_meta(final), f"clips/{name}")
    rng = np.random.default_rng([config.seed, CLIP_STREAM, index])
    speech_rng, motion_rng = rng.spawn(2)
    speech = _speak(identity, config, speech_rng)
    frames = round(len(speech.audio) / AUDIO_SAMPLE_RATE * config.fps)
    duration = frames / config.fps
    prosody = prosody_from_audio(speech.audio, AUDIO_SAMPLE_RATE, config.fps, frames)
    reference = neutral_pose(identity.geometry, config.size, config.size)
    motion = generate_motion(
        speech.phonemes, duration, config.fps, reference, identity.style, motion_rng,
        prosody=prosody, width=config.size, height=config.size,
    )  # fmt: skip
    renderer = Renderer(identity.appearance, config.size, config.size)

    (root / "clips").mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(root / "clips", f".{name}.")
    try:
        with VideoWriter(tmp / VIDEO_NAME, config.fps, audio=speech.audio) as writer:
            for keypoints in motion.pose.keypoints:
                writer.add(renderer.render(keypoints))
        soundfile.write(tmp / AUDIO_NAME, speech.audio, AUDIO_SAMPLE_RATE, subtype="PCM_16")
        motion.pose.save(tmp / POSE_NAME)
        write_json(tmp / PHONEMES_NAME, segments_to_json(speech.phonemes), sort_keys=True)
        meta = {
            "id": name, "identity": identity.id, "split": identity.split, "source": SOURCE,
            "fps": config.fps, "width": config.size, "height": config.size, "frames": frames,
            "duration": clip_duration(frames, config.fps), "text": speech.text,
            "words": [{"word": w, "start": s, "end": e} for w, s, e in speech.words],
            "reference": reference_paths(identity.id),
            "appearance": identity.appearance.to_dict(),
            "geometry": identity.geometry.to_dict(),
            "voice": asdict(identity.voice), "gesture_style": identity.style.to_dict(),
            "events": {
                "beats": [asdict(b) for b in motion.gestures.beats],
                "blinks": [float(t) for t in motion.blinks],
            },
            "seed": [config.seed, CLIP_STREAM, index],
        }  # fmt: skip
        write_meta(tmp, meta)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return entry_from_meta(meta, f"clips/{name}")


# --- the whole corpus ----------------------------------------------------------------------


def _check_no_shrinking(root: Path, config: CorpusConfig) -> None:
    """Refuse a ``--clips`` below the finished clips already in the folder: the manifest
    would leave the extra clips out while they stay on disk."""
    finished = sorted(meta.parent.name for meta in (root / "clips").glob(f"clip*/{META_NAME}"))
    extra = [name for name in finished if name >= clip_id(config.clips)]
    if extra:
        needed = int(extra[-1].removeprefix("clip")) + 1
        raise InputError(
            f"{root} holds {count(len(finished), 'finished clip')} ({extra[-1]} the last); "
            f"--clips {config.clips} would leave {count(len(extra), 'clip')} out of the "
            f"manifest: use --clips {needed} or more, or another --out folder"
        )


def _check_settings(root: Path, config: CorpusConfig) -> None:
    """Refuse to mix clips made with other settings into one corpus folder."""
    path = root / CORPUS_NAME
    current = config.to_dict()
    if path.is_file():
        previous = read_json(path)
        fixed = {k: v for k, v in current.items() if k != "clips"}
        if {k: previous.get(k) for k in fixed} != json.loads(json.dumps(fixed)):
            raise InputError(
                f"{root} holds a corpus made with other settings ({path}); "
                "use another --out folder or the same settings"
            )
    write_json(path, current, sort_keys=True)


def _start_fork_server() -> None:
    """Start the worker fork server ignoring Ctrl-C (SIGINT) and with stderr on /dev/null;
    it and every worker it forks keep both (the disposition survives exec, forks inherit
    file descriptors). Ctrl-C then stops this process only, which ends the pool, instead of
    printing tracebacks from workers cut short. A worker's exception still reaches this
    process through the pool and is reported here."""
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main else None
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        multiprocessing.forkserver.ensure_running()  # spawns it; it preloads on its own
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
        if in_main:
            signal.signal(signal.SIGINT, previous)


def _remove_partial_clips(root: Path) -> None:
    """Delete the temporary folders of clips that were cut short."""
    for stale in (root / "clips").glob(".clip*"):
        shutil.rmtree(stale, ignore_errors=True)


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)


def _make_clip_task(args: tuple[Path, CorpusConfig, Identity, int]) -> ManifestEntry:
    return make_clip(*args)


def write_corpus(
    root: str | Path,
    config: CorpusConfig,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> list[ManifestEntry]:
    """Write (or complete) the corpus under ``root`` and its manifest; returns the entries.

    Clips are made in ``workers`` parallel processes, a fresh one per clip (see the comment
    below). ``progress(n)`` is called with the number of clips finished so far.
    """
    root = Path(root)
    make_folder(root, "corpus folder")
    _check_no_shrinking(root, config)
    _check_settings(root, config)
    _remove_partial_clips(root)  # clips cut short by an earlier run
    identities = make_identities(
        config.seed, config.identity_count, config.val_fraction, config.test_fraction
    )
    for identity in identities:
        write_identity(root, identity, config.size)
    tasks = [(root, config, identities[i % len(identities)], i) for i in range(config.clips)]
    entries: list[ManifestEntry] = []
    # One fresh process per clip: libespeak-ng keeps state from one synthesis to the next
    # (its output shifts by a few samples), so a clip is only reproducible when its speech is
    # made in a process whose espeak has not spoken before. Workers are forked from a clean,
    # single-threaded fork server with the modules preloaded (cheap to start, and safe from
    # locks held by this process's threads at fork time); each initialises espeak itself.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(WORKER_PRELOAD))
    _start_fork_server()
    try:
        with context.Pool(max(1, workers), initializer=_worker_init, maxtasksperchild=1) as pool:
            # leaving the block (also by Ctrl-C) stops and joins the workers
            for entry in pool.imap_unordered(_make_clip_task, tasks):
                entries.append(entry)
                if progress:
                    progress(len(entries))
    except BaseException:
        _remove_partial_clips(root)  # a worker stopped mid-clip leaves its temporary folder
        raise
    write_manifest(root, entries)
    return sorted(entries, key=lambda e: e.id)
