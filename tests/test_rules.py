"""The rule-based motion baseline, checked against the phoneme ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from cospeech.audio.phonemes import (
    CONSONANTS,
    SILENCE,
    STRESS_PRIMARY,
    VOWELS,
    PhonemeSegment,
    articulation_of,
)
from cospeech.data.synth.skeleton import BodyGeometry, neutral_pose
from cospeech.errors import InputError
from cospeech.motion.rules import (
    GestureStyle,
    generate_motion,
    prosody_from_audio,
    sample_gesture_style,
)
from cospeech.motion.rules.gestures import beat_candidates
from cospeech.pose import schema as s
from cospeech.pose.sequence import PoseSequence

SIZE = 256
EYELIDS = ((37, 41), (38, 40), (43, 47), (44, 46))


def speech(seed: int, words: int = 24) -> tuple[list[PhonemeSegment], float]:
    """Random words (consonant-vowel syllables, one stressed vowel per word) with pauses
    between phrases; every segment 50-160 ms, pauses 300-600 ms. Ends with silence."""
    rng = np.random.default_rng(seed)
    segments = [PhonemeSegment(SILENCE, 0.0, 0.4)]
    t = 0.4
    for word in range(words):
        syllables = int(rng.integers(1, 4))
        stressed = int(rng.integers(syllables))
        for syllable in range(syllables):
            for phone, stress in (
                (str(rng.choice(CONSONANTS)), 0),
                (str(rng.choice(VOWELS)), STRESS_PRIMARY if syllable == stressed else 0),
            ):
                duration = float(rng.uniform(0.05, 0.16))
                segments.append(PhonemeSegment(phone, t, t + duration, stress, word))
                t += duration
        if word % 4 == 3:
            pause = float(rng.uniform(0.3, 0.6))
            segments.append(PhonemeSegment(SILENCE, t, t + pause))
            t += pause
    segments.append(PhonemeSegment(SILENCE, t, t + 0.6))
    return segments, t + 0.6


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return neutral_pose(BodyGeometry(), SIZE, SIZE)


def run(segments, duration, reference, fps=25.0, seed=0, style=None, size=SIZE):
    return generate_motion(
        segments, duration, fps, reference, style or GestureStyle(), np.random.default_rng(seed),
        width=size, height=size,
    )  # fmt: skip


def face_width(kp: np.ndarray) -> float:
    return float(np.linalg.norm(kp[s.FACE_JAW[-1], :2] - kp[s.FACE_JAW[0], :2]))


def mouth_gap(kp: np.ndarray) -> np.ndarray:
    return np.linalg.norm(kp[:, s.INNER_LIP_BOTTOM, :2] - kp[:, s.INNER_LIP_TOP, :2], axis=-1)


def nearest_frame(t: float, fps: float) -> int:
    return int(np.floor(t * fps))  # frame i shows time (i + 0.5) / fps


def test_output_is_a_valid_pose_sequence(reference):
    segments, duration = speech(0)
    motion = run(segments, duration, reference)
    pose = motion.pose
    assert isinstance(pose, PoseSequence)
    assert len(pose) == round(duration * 25) and (pose.width, pose.height) == (SIZE, SIZE)
    assert np.isfinite(pose.keypoints).all()
    np.testing.assert_array_equal(
        pose.confidence, np.broadcast_to(reference[:, 2], (len(pose), 133))
    )
    # The speaker moves, but stays a speaker: points stay near their reference positions.
    drift = np.linalg.norm(pose.points - reference[:, :2], axis=-1)
    assert drift.max() < 0.4 * SIZE and drift[:, list(s.FACE)].mean() < 0.05 * SIZE
    assert drift.std(axis=0).max() > 1.0


def test_mouth_follows_phonemes(reference):
    fps = 100.0  # fine frames: the test looks at segment centres, not at frame sampling
    fw = face_width(reference)
    checked = {"pause": 0, "open": 0, "bilabial": 0}
    for seed in range(3):
        segments, duration = speech(seed)
        kp = run(segments, duration, reference, fps=fps, seed=seed).pose.keypoints
        gap = mouth_gap(kp) / fw
        for seg in segments:
            centre = nearest_frame((seg.start + seg.end) / 2, fps)
            if seg.phone == SILENCE and seg.duration >= 0.3:
                inner = slice(
                    nearest_frame(seg.start + 0.1, fps), nearest_frame(seg.end - 0.1, fps)
                )
                assert gap[inner].max() < 0.02, seg
                checked["pause"] += 1
            elif seg.phone in ("AA", "AE", "AH") and seg.duration >= 0.1:
                assert gap[centre] > 0.06, seg
                checked["open"] += 1
            elif seg.phone in ("M", "B", "P"):
                assert gap[centre] < 0.01, seg
                checked["bilabial"] += 1
    assert min(checked.values()) >= 3, checked


def test_mouth_opening_follows_the_jaw_targets_at_video_rate(reference):
    segments, duration = speech(5)
    fps = 25.0
    kp = run(segments, duration, reference, fps=fps).pose.keypoints
    gap = mouth_gap(kp) / face_width(reference)
    times = (np.arange(len(gap)) + 0.5) / fps
    target = np.zeros(len(gap))  # the jaw opening each frame's phone aims at (SIL: 0)
    for seg in segments:
        inside = (times >= seg.start) & (times < seg.end)
        target[inside] = articulation_of(seg.phone).jaw_open * (
            not articulation_of(seg.phone).lips_closed
        )
    assert np.corrcoef(gap, target)[0, 1] > 0.6
    vowel = np.zeros(len(gap), dtype=bool)
    for seg in segments:
        if seg.phone in VOWELS:
            vowel |= (times >= seg.start) & (times < seg.end)
    silent = target == 0
    assert gap[vowel].mean() > 5 * gap[silent & ~vowel].mean()


def test_blinks_close_the_eyelids(reference):
    fps = 100.0
    segments, duration = speech(1)
    motion = run(segments, duration, reference, fps=fps)
    kp = motion.pose.keypoints
    f = s.FACE_OFFSET
    lid_gap = np.mean([kp[:, f + lo, 1] - kp[:, f + up, 1] for up, lo in EYELIDS], axis=0)
    open_gap = np.mean([reference[f + lo, 1] - reference[f + up, 1] for up, lo in EYELIDS])
    blinks = motion.blinks
    assert len(blinks) >= 2
    intervals = np.diff(blinks)
    assert (intervals >= 2.0).all() and (intervals <= 6.0).all()
    times = (np.arange(len(kp)) + 0.5) / fps
    for t in blinks:
        assert lid_gap[nearest_frame(t, fps)] < 0.1 * open_gap
    far = np.min(np.abs(times[:, None] - blinks[None, :]), axis=1) > 0.1
    assert lid_gap[far].min() > 0.8 * open_gap


def test_wrist_speed_peaks_at_stressed_syllables(reference):
    fps = 25.0
    style = GestureStyle(frequency=1.0, both_hands=0.0, amplitude=1.0)
    hits, chance = [], []
    for seed in range(4):
        segments, duration = speech(seed, words=30)
        kp = run(segments, duration, reference, fps=fps, seed=seed, style=style).pose.keypoints
        wrists = kp[:, [s.LEFT_WRIST, s.RIGHT_WRIST], :2]
        speed = np.linalg.norm(np.diff(wrists, axis=0), axis=-1).sum(axis=1)  # between frames
        times = np.arange(1, len(kp)) / fps  # speed[i] is centred between frames i and i+1
        peaks = (
            np.flatnonzero(
                (speed[1:-1] > speed[:-2])
                & (speed[1:-1] >= speed[2:])
                & (speed[1:-1] > np.median(speed))
            )
            + 1
        )
        onsets, strengths = beat_candidates(segments)
        stressed = onsets[strengths == strengths.max()]
        rng = np.random.default_rng(seed)
        random_times = rng.uniform(onsets.min(), onsets.max(), size=len(stressed))
        for targets, out in ((stressed, hits), (random_times, chance)):
            distance = np.min(np.abs(times[peaks][:, None] - targets[None, :]), axis=0)
            out.extend(distance <= 1.0 / fps)
    assert np.mean(hits) > 0.6
    assert np.mean(hits) > 2 * np.mean(chance)


def test_gestures_follow_the_style(reference):
    segments, duration = speech(2, words=30)
    quiet = run(segments, duration, reference, style=GestureStyle(frequency=0.0))
    assert quiet.gestures.beats == ()
    wrists = quiet.pose.points[:, [s.LEFT_WRIST, s.RIGHT_WRIST]]
    assert np.ptp(wrists, axis=0).max() < 0.03 * SIZE  # only idle sway
    style = GestureStyle(handedness=1.0, both_hands=0.0, hand_shapes=("point",))
    right = run(segments, duration, reference, style=style)
    assert right.gestures.units and all(u.hand == "right" for u in right.gestures.units)
    moved = np.ptp(right.pose.points[:, [s.LEFT_WRIST, s.RIGHT_WRIST]], axis=0).max(axis=-1)
    assert moved[1] > 0.1 * SIZE and moved[0] < 0.03 * SIZE
    # Fingers move with the gesture and every hand keeps 21 distinct points.
    hand = right.pose.points[:, list(s.RIGHT_HAND)]
    local = hand - hand[:, :1]
    assert np.ptp(np.linalg.norm(local[:, 12], axis=-1)) > 0.02 * SIZE  # middle finger curls
    dist = np.linalg.norm(hand[:, :, None] - hand[:, None], axis=-1) + np.eye(21) * 1e9
    assert dist.min() > 0.1


def test_deterministic_and_seed_dependent(reference):
    segments, duration = speech(3)
    style = sample_gesture_style(np.random.default_rng(7))
    a = run(segments, duration, reference, seed=11, style=style).pose.keypoints
    b = run(segments, duration, reference, seed=11, style=style).pose.keypoints
    c = run(segments, duration, reference, seed=12, style=style).pose.keypoints
    np.testing.assert_array_equal(a, b)  # the same computation with the same seed: exact
    assert not np.array_equal(a, c)


def test_motion_is_relative_to_the_reference(reference):
    """Retargeting: a reference twice as large, moved, gives the same motion scaled."""
    segments, duration = speech(4)
    big = reference.copy()
    big[:, :2] = reference[:, :2] * 2 + [30.0, 10.0]
    small = run(segments, duration, reference, seed=5).pose.points
    large = run(segments, duration, big, seed=5, size=2 * SIZE).pose.points
    np.testing.assert_allclose(large, small * 2 + [30.0, 10.0], atol=5e-3)
    one_frame = PoseSequence(reference[None], 25.0, SIZE, SIZE)
    same = generate_motion(
        segments, duration, 25.0, one_frame, GestureStyle(), np.random.default_rng(5)
    )
    np.testing.assert_array_equal(same.pose.points, small)  # same inputs, same computation


def test_prosody_from_audio_tracks_pitch_and_energy():
    sr, fps, frames = 16000, 25.0, 50
    t = np.arange(int(sr * frames / fps)) / sr
    f0 = np.where(t < 1.0, 120.0, 240.0)  # one octave up after 1 s
    audio = 0.5 * np.sin(2 * np.pi * np.cumsum(f0) / sr)
    audio[(t > 0.4) & (t < 0.6)] = 0.0  # a pause
    prosody = prosody_from_audio(audio.astype(np.float32), sr, fps, frames)
    times = (np.arange(frames) + 0.5) / fps
    pause = (times > 0.45) & (times < 0.55)
    assert prosody.energy[pause].max() < 0.05 and prosody.energy[times > 1.2].min() > 0.9
    assert not prosody.voiced[pause].any()
    low, high = prosody.pitch[(times > 0.1) & (times < 0.35)], prosody.pitch[times > 1.2]
    assert np.median(high) - np.median(low) == pytest.approx(12.0, abs=0.7)


def test_bad_input(reference):
    segments, duration = speech(0)
    with pytest.raises(InputError):
        generate_motion(
            segments, duration, 25.0, reference, GestureStyle(), np.random.default_rng()
        )
    with pytest.raises(InputError):
        run(segments, 0.01, reference)
    broken = reference.copy()
    broken[s.LEFT_SHOULDER, :2] = broken[s.RIGHT_SHOULDER, :2]
    with pytest.raises(InputError):
        run(segments, duration, broken)
