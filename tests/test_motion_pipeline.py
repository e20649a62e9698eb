"""The motion stage, generation paths and commands on a tiny synthetic corpus."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

from cospeech.audio.espeak import espeak_available
from cospeech.audio.features import frame_stacked_mel
from cospeech.cli import main
from cospeech.data.manifest import read_manifest
from cospeech.motion.config import MEL_PER_FRAME
from cospeech.motion.dataset import MotionWindows, load_split
from cospeech.motion.generate import MotionGenerator, MotionOptions
from cospeech.motion.normalize import BODY_POINTS, FACE_POINTS, from_offsets
from cospeech.pose.sequence import PoseSequence

pytestmark = pytest.mark.skipif(not espeak_available(), reason="libespeak-ng not installed")
FACE = list(FACE_POINTS)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from cospeech.data.synth.corpus import CorpusConfig, write_corpus

    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root, CorpusConfig(clips=6, size=64, seed=3, max_duration_s=4.0))
    return root


@pytest.fixture(scope="module")
def run(corpus, tmp_path_factory):
    from cospeech.train.run import run_stage

    out = tmp_path_factory.mktemp("run")
    run_stage("motion", out, None, [
        f"stage.data={corpus}", "stage.preset=tiny", "stage.window_frames=40",
        "train.steps=6", "train.batch_size=2", "train.checkpoint_every=3",
        "train.log_every=3",
    ], device="cpu")  # fmt: skip
    return out


@pytest.fixture(scope="module")
def generator(run):
    return MotionGenerator.load(run / "final-ema")


@pytest.fixture(scope="module")
def clip(corpus):
    return load_split(corpus, "test", limit=1)[0]


def test_clips_hold_the_corpus_ground_truth(corpus, clip):
    pose = PoseSequence.load(corpus / "clips" / clip.id / "pose.npz")
    restored = from_offsets(clip.offsets, clip.reference)
    seen = pose.confidence > 0
    assert np.allclose(restored[seen], pose.points[seen], atol=1e-3)
    assert clip.mel.shape == (len(pose), MEL_PER_FRAME * 80)


def test_windows_are_deterministic_per_index_and_epoch(corpus):
    clips = load_split(corpus, "train")
    windows = MotionWindows(clips, frames=40)
    windows.set_epoch(2)
    a = windows[0]
    windows.set_epoch(5)
    windows[0]
    windows.set_epoch(2)
    b = windows[0]
    assert all(torch.equal(a[k], b[k]) for k in a)  # slices of stored arrays: exact
    # The window is a slice of the clip: find it in the clip's offsets (copies of stored
    # values, no arithmetic, so equal bit for bit on any CPU).
    n = int(a["valid"].sum())
    offsets = clips[0].offsets
    starts = [s for s in range(offsets.shape[0] - n + 1)
              if np.array_equal(offsets[s : s + n], a["offsets"][:n].numpy())]  # fmt: skip
    assert starts


def test_training_run_writes_checkpoints_and_models(run):
    assert (run / "final" / "model.safetensors").is_file()
    assert (run / "final-ema" / "config.json").is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step-00000003", "step-00000006",
    ]  # fmt: skip


def test_frames_follow_the_audio_length(generator, clip):
    for seconds in (0.1, 1.0):
        audio = np.zeros(round(seconds * 16000), np.float32)
        pose = generator.generate(audio, clip.reference_pose)
        assert len(pose) == round(seconds * 25)
        assert (pose.width, pose.height) == (clip.width, clip.height)


def test_output_moves_with_the_reference(generator, clip):
    shifted = clip.reference.copy()
    shifted[:, :2] += (5.0, -3.0)
    ref_b = PoseSequence(shifted[None], 25, clip.width, clip.height)
    a = generator.generate(clip.audio, clip.reference_pose)
    b = generator.generate(clip.audio, ref_b)
    assert np.allclose(b.points - a.points, (5.0, -3.0), atol=1e-3)


def test_streaming_face_equals_a_whole_sequence_streaming_run(generator, clip):
    options = MotionOptions(chunk_frames=7)
    stream = generator.stream(clip.reference_pose, options=options)
    pieces, rng, i = [], np.random.default_rng(0), 0
    while i < clip.audio.size:
        n = int(rng.integers(50, 4000))
        piece = stream.push(clip.audio[i : i + n])
        i += n
        if piece is not None:
            assert len(piece) % 7 == 0
            pieces.append(piece.keypoints)
    pieces.append(stream.finish().keypoints)
    streamed = np.concatenate(pieces)
    assert stream.latency_s <= 0.2
    _, reference = generator._reference(clip.reference_pose)
    mel = frame_stacked_mel(clip.audio, 25.0, clip.frames, MEL_PER_FRAME)
    whole = generator.run_frames(mel, reference, None, True, None, 1, torch.Generator())
    expected = generator.to_pose(whole, clip.reference, 25.0, clip.width, clip.height)
    assert streamed.shape == expected.keypoints.shape
    assert np.allclose(streamed[:, FACE], expected.keypoints[:, FACE], atol=1e-3)


def test_streaming_state_stays_bounded(generator, clip):
    stream = generator.stream(clip.reference_pose, options=MotionOptions(chunk_frames=25))
    noise = np.random.default_rng(1).normal(0, 0.05, 16000).astype(np.float32)
    sizes = []
    for _ in range(8):  # 8 s of audio
        stream.push(noise)
        sizes.append((stream.samples.size, stream.mel.shape[0]))
    # After the receptive field (under 2 s for this model) is filled, the state stops growing.
    assert max(sizes[3:]) <= max(sizes[:3])
    assert stream.next_frame >= 7 * 25


def test_long_audio_windows_blend_into_one_sequence(generator, clip):
    audio = np.tile(clip.audio, 3)
    options = MotionOptions(window_frames=40, overlap_frames=10)
    pose = generator.generate(audio, clip.reference_pose, options=options)
    frames = round(audio.size / 16000 * 25)
    assert len(pose) == frames
    # Up to the first overlap the first window is returned unchanged, and the second window
    # starts from the first one's frames as clean body context (no jump at the seam).
    _, reference = generator._reference(clip.reference_pose)
    mel = frame_stacked_mel(audio, 25.0, frames, MEL_PER_FRAME)
    steps = generator.config.flow_steps
    first = generator.run_frames(
        mel[:40], reference, None, False, None, steps, torch.Generator().manual_seed(0)
    )
    expected = generator.to_pose(first, clip.reference, 25.0, clip.width, clip.height)
    assert np.allclose(pose.keypoints[:30, FACE], expected.keypoints[:30, FACE], atol=1e-4)
    seam = 30 + generator.config.context_frames
    body = list(BODY_POINTS)
    assert np.allclose(pose.points[:seam, body], expected.points[:seam, body], atol=1e-4)


def test_motion_command_writes_pose_and_video(tmp_path, run, clip, corpus, capsys):
    audio = tmp_path / "a.wav"
    soundfile.write(audio, clip.audio, 16000)
    ref = tmp_path / "ref.npz"
    clip.reference_pose.save(ref)
    out, video = tmp_path / "pose.npz", tmp_path / "pose.mp4"
    capsys.readouterr()
    code = main(["motion", "--audio", str(audio), "--reference-pose", str(ref), "-o", str(out),
                 "--draw", str(video), "--model", str(run / "final-ema")])  # fmt: skip
    assert code == 0
    pose = PoseSequence.load(out)
    assert len(pose) == clip.frames and video.stat().st_size > 0
    capsys.readouterr()
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    code = main(["motion", "--audio", str(bad), "--reference-pose", str(ref),
                 "-o", str(tmp_path / "x.npz"), "--model", str(run / "final-ema")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "not an audio file" in err[0]
    assert not (tmp_path / "x.npz").exists()


def test_eval_command_prints_every_method(run, corpus, capsys):
    assert read_manifest(corpus)
    code = main(["eval", "motion", "--model", str(run), "--data", str(corpus), "--limit", "1"])
    assert code == 0
    table = capsys.readouterr().out
    for name in ("learned (offline)", "learned (streaming)", "rules (allphone)", "mean pose"):
        assert f"| {name} |" in table


def test_rollout_fine_tune_of_the_flow_starts_from_init_and_resumes_exactly(
    run, corpus, tmp_path, single_thread
):
    from safetensors.torch import load_file

    from cospeech.motion.checkpoint import load_motion_model
    from cospeech.train.run import run_stage

    init = run / "final-ema"
    options = [
        f"stage.data={corpus}", f"stage.init={init}", "stage.window_frames=40",
        "stage.chunk_frames=[5,10]", "stage.chunk_probability=1.0",
        "stage.rollout_probability=1.0", "stage.rollout_blend_frames=3",
        "stage.train_only=[flow]", "train.batch_size=2", "train.checkpoint_every=2",
        "train.log_every=2",
    ]  # fmt: skip
    # No updates: the exported model is the init model (config, statistics and weights).
    untrained = tmp_path / "untrained"
    run_stage("motion", untrained, None, [*options, "train.steps=0"], device="cpu")
    start, _ = load_motion_model(untrained / "final")
    initial, _ = load_motion_model(init)
    assert start.config == initial.config
    assert all(torch.equal(v, initial.state_dict()[k]) for k, v in start.state_dict().items())
    # Four updates in one go equal two, a stop, and two more (rollout noise included), bit
    # for bit: the same updates on the same data and seeds, here in one process on one
    # thread (the single_thread fixture), so the kernels and their work split are the same.
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    run_stage("motion", whole, None, [*options, "train.steps=4"], device="cpu")
    run_stage("motion", parts, None, [*options, "train.steps=2"], device="cpu")
    run_stage("motion", parts, None, [*options, "train.steps=4"], device="cpu")
    a = load_file(whole / "final" / "model.safetensors")
    b = load_file(parts / "final" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # Only the flow (body head) was trained: the encoder and face head are init's.
    init_state = initial.state_dict()
    assert not torch.equal(a["flow.output.weight"], init_state["flow.output.weight"])
    frozen = [k for k in a if not k.startswith("flow.")]
    assert frozen and all(torch.equal(a[k], init_state[k]) for k in frozen)
