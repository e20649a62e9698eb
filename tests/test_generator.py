"""The Python API (``cospeech.Generator``), streaming, and ``cospeech generate --stream``.

Everything runs the bundled demo models at 64x64 with 1-2 Euler steps and no guidance on
about a second of the example speech, so the file stays cheap on a CPU.
"""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import threading
from dataclasses import replace

import numpy as np
import pytest
import soundfile

from cospeech import Chunk, GenerateOptions, Generator
from cospeech.audio.load import SAMPLE_RATE, load_audio
from cospeech.cli import main
from cospeech.errors import InputError
from cospeech.media.fragmented import FragmentedMp4Writer
from cospeech.media.video import probe, read_audio_track, read_video
from cospeech.pose.sequence import PoseSequence
from cospeech.shipped import ASSETS
from pipeline_fixture import EXAMPLE_SPEECH, write_speech_excerpt

EXAMPLES = ASSETS.parent.parent.parent / "examples"
IMAGE, POSE = EXAMPLES / "reference.png", EXAMPLES / "reference_pose.npz"
FAST = GenerateOptions(steps=2, guidance=1.0, size=64)
FPS = 25


@pytest.fixture(scope="module")
def gen() -> Generator:
    return Generator.from_pretrained(model="teacher")


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """The first 1.2 s of the example speech as a wav (30 frames, 9 latent frames: 4 windows
    of 3 sharing 1, the last one aligned to the end)."""
    folder = tmp_path_factory.mktemp("speech")
    return write_speech_excerpt(EXAMPLE_SPEECH, folder / "speech-1.2s.wav", 1.2)


def _stream(gen, audio, **kwargs):
    return gen.stream(audio, IMAGE, reference_pose=POSE, options=FAST, **kwargs)


# --- the API ----------------------------------------------------------------------------------


def test_top_level_api_and_model_facts(gen):
    import cospeech
    from cospeech.pipeline.generator import Generator as Direct

    assert cospeech.Generator is Direct and "Generator" in cospeech.__all__
    assert gen.sample_rate == SAMPLE_RATE and gen.size == gen.settings.size == 128
    with pytest.raises(AttributeError):
        cospeech.NoSuchThing  # noqa: B018


def test_call_is_the_offline_pipeline(gen, speech):
    """``gen(...)`` repeats the steps of the offline pipeline, composed here by hand from its
    building blocks (load, frame, motion, fused-window sampling, decode, the photo layer at
    twice the model's size): the same computation with the same seeds, so the frames are
    bit-identical."""
    from cospeech.pipeline.generate import decode_frames, fit_length, sample_latents
    from cospeech.pipeline.photo_layer import photo_layer_for
    from cospeech.pipeline.reference import frame_reference
    from cospeech.pipeline.speech_motion import speech_motion
    from cospeech.pose.extract import read_image

    result = gen(speech, IMAGE, reference_pose=POSE, options=FAST)
    assert result.path is None and result.video.shape == (30, 128, 128, 3)
    assert result.frames == 30 and result.windows == 4 and result.steps == 2 == result.steps
    assert result.size == 128

    options = gen.resolve(FAST)
    audio = load_audio(speech)
    reference = frame_reference(read_image(IMAGE), PoseSequence.load(POSE), 64)
    sequence = PoseSequence(reference.keypoints[None], 1.0, 64, 64)
    motion, _ = speech_motion(audio, sequence, options.fps, options.seed)
    keypoints = fit_length(motion.keypoints, 30)
    latents = sample_latents(
        gen.bundle, reference, keypoints, steps=2, guidance=1.0, shift=options.shift,
        overlap=options.overlap, seed=0,
    )  # fmt: skip
    model_frames = list(decode_frames(gen.bundle.vae, latents, 30))
    photo = frame_reference(read_image(IMAGE), PoseSequence.load(POSE), 128)
    layer = photo_layer_for(gen.bundle, photo, 64)
    composed = [layer.compose(f, k) for f, k in zip(model_frames, keypoints, strict=True)]
    expected = np.stack(composed)
    np.testing.assert_array_equal(result.video, expected)
    output_keypoints = keypoints.copy()
    output_keypoints[..., :2] *= 2  # pixels of the 128x128 output frames
    np.testing.assert_array_equal(result.keypoints, output_keypoints)

    frames_only = gen(speech, IMAGE, reference_pose=POSE, options=replace(FAST, photo_layer=False))
    np.testing.assert_array_equal(frames_only.video, np.stack(model_frames))
    np.testing.assert_array_equal(frames_only.keypoints, keypoints)


def test_call_writes_an_mp4_with_the_speech(gen, speech, tmp_path):
    out, pose_file = tmp_path / "o.mp4", tmp_path / "p.npz"
    result = gen(speech, IMAGE, reference_pose=POSE, options=FAST, output=out, save_pose=pose_file)
    info = probe(out)
    assert result.path == out and result.video is None
    assert (info.frames, info.width, info.video_codec, info.audio_codec) == (30, 128, "h264", "aac")
    assert abs(info.audio_duration - 1.2) <= 1 / FPS
    assert len(PoseSequence.load(pose_file)) == 30
    assert "wrote" in result.summary() and "first frames" not in result.summary()


def test_arrays_in_give_what_files_give(gen, speech):
    from cospeech.pose.extract import read_image

    by_file = gen(speech, IMAGE, reference_pose=POSE, options=FAST)
    samples = soundfile.read(speech, dtype="float32")[0]
    by_array = gen(samples, read_image(IMAGE), reference_pose=PoseSequence.load(POSE), options=FAST)
    np.testing.assert_array_equal(by_file.video, by_array.video)  # same pixels, same seeds


def test_progress_callback_sees_every_window_step_and_every_frame_decoded(gen, speech):
    calls = []
    gen(speech, IMAGE, reference_pose=POSE, options=FAST, progress=lambda *a: calls.append(a))
    sampling = [c for c in calls if c[0] == "sampling"]
    decode = [c for c in calls if c[0] == "decode"]
    assert sampling[-1] == ("sampling", 8, 8) and len(sampling) == 8  # 4 windows x 2 steps
    # Decoded frames are reported as they leave the photo layer, a batch at a time.
    done = [c[1] for c in decode]
    assert decode[-1] == ("decode", 30, 30) and done == sorted(set(done))


# --- streaming --------------------------------------------------------------------------------


def test_stream_yields_every_frame_once_in_order_with_its_speech(gen, speech):
    stream = _stream(gen, speech)
    assert (stream.total, stream.fps, stream.size) == (30, 25.0, 128)
    chunks = list(stream)
    assert all(isinstance(c, Chunk) for c in chunks)
    # windows of 3 latent frames sharing 1: 9 frames, then 8 per window; the 33 frames of
    # the 9 latent frames end 3 past the speech, cut from the last chunk
    assert [len(c.frames) for c in chunks] == [9, 8, 8, 5]
    assert [c.start for c in chunks] == [0, 9, 17, 25] and chunks[-1].last
    assert all(c.total == 30 and c.fps == 25.0 for c in chunks)
    assert all(c.frames.dtype == np.uint8 and c.frames.shape[1:] == (128, 128, 3) for c in chunks)
    # the audio of frames [a, b) is samples round(a / 25 * 16000) .. round(b / 25 * 16000)
    assert [len(c.audio) for c in chunks[:-1]] == [5760, 5120, 5120]
    np.testing.assert_array_equal(np.concatenate([c.audio for c in chunks]), load_audio(speech))
    seconds = [c.seconds for c in chunks]
    assert stream.first_chunk_seconds == seconds[0] > 0 and seconds == sorted(seconds)
    assert not stream.cancelled


def test_stream_is_deterministic_and_its_first_window_is_the_offline_one(gen, speech):
    """A video of one window: the chain has nothing to hold, so the stream is the offline
    sampler on the same window (the fused flow of one window is its own prediction, up to
    the tent weights' w * f / w rounding: float32, so at most 1 grey level after decoding).
    The noise differs in layout (per latent frame when streaming), so the check uses a video
    of one latent frame, where both draw the same numbers."""
    one_frame = load_audio(speech)[: SAMPLE_RATE // FPS]  # 1 frame -> 1 latent frame
    offline = gen(one_frame, IMAGE, reference_pose=POSE, options=FAST).video
    first = [c.frames for c in _stream(gen, one_frame)]
    again = [c.frames for c in _stream(gen, one_frame)]
    assert len(first) == 1 and first[0].shape == (1, 128, 128, 3)
    np.testing.assert_array_equal(first[0], again[0])
    assert np.abs(first[0].astype(int) - offline.astype(int)).max() <= 1


def test_stream_memory_does_not_grow_with_the_speech(gen, speech):
    """The sampler holds one window (noise, state, shared frames) whatever the length:
    counted in latent frames held, not timed."""
    short = _stream(gen, load_audio(speech)[: SAMPLE_RATE // 2])  # 13 frames, 2 windows
    list(short)
    long = _stream(gen, np.tile(load_audio(speech), 3))  # 3.6 s, 90 frames, 12 windows
    list(long)
    window = gen.settings.window
    assert long.windows > 5 * short.windows and long.total == 90
    # a window's noise and its state (a window each) and the frames it shares with the
    # window before (at most window - 1: both streams have an end-aligned last window)
    assert short.peak_latent_frames == long.peak_latent_frames == 3 * window - 1


def test_cancel_stops_between_chunks_and_inside_a_window(gen, speech):
    cancel = threading.Event()
    stream = _stream(gen, speech, cancel=cancel)
    first = next(stream)
    cancel.set()
    assert list(stream) == [] and stream.cancelled and first.stop < stream.total

    cancel = threading.Event()

    def stop_at_first_step(phase, done, total):
        cancel.set()

    stream = _stream(gen, speech, cancel=cancel, progress=stop_at_first_step)
    assert list(stream) == [] and stream.cancelled  # stopped inside the first window

    stream = _stream(gen, speech)
    next(stream)
    stream.close()  # leaving early also ends it
    assert list(stream) == []


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "audio, image, options, message",
    [
        (np.zeros(100, np.float32), None, FAST, "shorter than one video frame"),
        (np.full(16000, np.nan, np.float32), None, FAST, "NaN"),
        (np.zeros((2, 3, 4), np.float32), None, FAST, "expected samples"),
        (None, np.zeros((64, 64, 3), np.float32), FAST, "expected uint8 [H, W, 3]"),
        (None, np.zeros((64, 64), np.uint8), FAST, "expected uint8 [H, W, 3]"),
        (None, None, GenerateOptions(steps=0), "--steps must be in [1, 1000]"),
        (None, None, GenerateOptions(size=256), "--size 256"),
    ],
)
def test_bad_input_is_an_input_error(gen, speech, audio, image, options, message):
    audio = speech if audio is None else audio
    image = IMAGE if image is None else image
    for call in (gen, gen.stream):
        with pytest.raises(InputError) as info:
            call(audio, image, reference_pose=POSE, options=options)
        assert message in str(info.value)


def test_reference_pose_of_another_size_and_bad_output(gen, speech, tmp_path):
    wrong = PoseSequence.load(POSE)
    wrong = PoseSequence(wrong.keypoints, wrong.fps, wrong.width * 2, wrong.height * 2)
    with pytest.raises(InputError, match=r"reference pose .* frame, the photo"):
        gen.stream(speech, IMAGE, reference_pose=wrong, options=FAST)
    with pytest.raises(InputError, match=r"\.mp4"):
        gen(speech, IMAGE, reference_pose=POSE, options=FAST, output=tmp_path / "o.avi")
    assert list(tmp_path.iterdir()) == []


# --- the fragmented mp4 -----------------------------------------------------------------------


def _boxes(data: bytes) -> list[str]:
    """The top-level box types of an ISO BMFF byte string."""
    names, at = [], 0
    while at + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        names.append(kind.decode())
        at += size
    return names


def _moving_frames(count: int, size: int = 64) -> np.ndarray:
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    base = np.stack([np.add.outer(ramp, ramp) / 2] * 3, axis=-1)
    return np.stack([np.roll(base, 2 * i, axis=1) for i in range(count)]).astype(np.uint8)


def test_fragmented_writer_streams_a_valid_mse_byte_stream(tmp_path):
    rate, sizes = 16000, [9, 8, 8, 5]
    audio = 0.3 * np.sin(2 * np.pi * 220 * np.arange(round(1.2 * rate)) / rate)
    frames = _moving_frames(30)
    sink = io.BytesIO()
    writer = FragmentedMp4Writer(sink, 64, FPS, rate)
    assert writer.mime.startswith('video/mp4; codecs="avc1.') and "mp4a.40.2" in writer.mime
    assert _boxes(sink.getvalue()) == ["ftyp", "moov"]  # the init segment comes first
    seen, start = [], 0
    for count in sizes:
        stop = start + count
        last = len(audio) if stop == 30 else round(stop / FPS * rate)
        writer.write(frames[start:stop], audio[round(start / FPS * rate) : last])
        seen.append(writer.bytes_written)
        start = stop
    assert seen[1] > seen[0] and seen[-1] > seen[1]  # fragments leave before close
    assert set(_boxes(sink.getvalue())[2:]) == {"moof", "mdat"}
    writer.close()
    data = sink.getvalue()
    assert _boxes(data)[:2] == ["ftyp", "moov"] and _boxes(data).count("moof") >= len(sizes)
    path = tmp_path / "f.mp4"
    path.write_bytes(data)
    info = probe(path)
    assert (info.frames, info.video_codec, info.audio_codec) == (30, "h264", "aac")
    decoded, _ = read_video(path)
    assert np.abs(decoded.astype(float) - frames).mean() < 4.0  # the frames, in order
    track = read_audio_track(path)
    # AAC: 1024 priming samples kept in front (the fragmented muxer shifts the video by the
    # same 64 ms instead of an edit list), then the speech, padded to whole frames
    assert 1024 + len(audio) <= len(track) <= 1024 + len(audio) + 1024
    body = track[1024 : 1024 + len(audio)]
    assert np.corrcoef(body, audio)[0, 1] > 0.9


def test_fragmented_writer_refuses_bad_frames():
    writer = FragmentedMp4Writer(io.BytesIO(), 64, FPS)
    with pytest.raises(InputError, match=r"expected \[n, 64, 64, 3\]"):
        writer.write(np.zeros((2, 32, 32, 3), np.uint8), np.zeros(10, np.float32))
    with pytest.raises(InputError, match="uint8"):
        writer.write(np.zeros((2, 64, 64, 3), np.float32), np.zeros(10, np.float32))
    writer.close()
    with pytest.raises(InputError, match="even sizes"):
        FragmentedMp4Writer(io.BytesIO(), 63, FPS)


# --- the command ------------------------------------------------------------------------------

ARGS = ["--image", str(IMAGE), "--reference-pose", str(POSE), "--size", "64", "--steps", "1",
        "--guidance", "1", "--model", "teacher"]  # fmt: skip


def test_generate_stream_writes_a_fragmented_mp4(speech, tmp_path, capsys):
    out = tmp_path / "s.mp4"
    assert main(["generate", "--audio", str(speech), "-o", str(out), "--stream", *ARGS]) == 0
    summary = capsys.readouterr().out
    assert "first frames after" in summary and "30 frames" in summary
    data = out.read_bytes()
    assert _boxes(data)[:3] == ["ftyp", "moov", "moof"]
    info = probe(out)
    assert (info.frames, info.video_codec, info.audio_codec) == (30, "h264", "aac")


def test_generate_stream_to_standard_output(speech):
    run = subprocess.run(
        [sys.executable, "-m", "cospeech.cli", "generate", "--audio", str(speech), "-o", "-",
         "--stream", *ARGS],
        capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr.decode()
    assert _boxes(run.stdout)[:3] == ["ftyp", "moov", "moof"]
    assert b"first frames after" in run.stderr  # the summary goes to stderr


@pytest.mark.parametrize(
    "extra, message",
    [
        (["-o", "-"], "-o - (standard output) needs --stream"),
        (["-o", "-", "--stream", "--contact-sheet", "s.png"], "--contact-sheet needs -o FILE"),
    ],
)
def test_generate_stream_option_errors(speech, capsys, extra, message):
    assert main(["generate", "--audio", str(speech), *ARGS, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
