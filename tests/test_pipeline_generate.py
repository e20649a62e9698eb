"""``cospeech generate`` end to end with tiny random models, and its bad-input handling."""

from __future__ import annotations

import numpy as np
import pytest

from cospeech.cli import main
from cospeech.media.video import probe
from cospeech.pose.sequence import PoseSequence
from pipeline_fixture import (
    clip_with_split,
    silent_wav,
    tiny_corpus,
    tiny_models,
    write_speech_excerpt,
)

FPS = 25


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.getbasetemp()
    corpus = tiny_corpus(base)
    clip, image, pose = clip_with_split(corpus, "test")
    speech = write_speech_excerpt(clip / "audio.wav", base / "speech-1s.wav", 1.0)
    return {"models": tiny_models(base), "image": image, "pose": pose, "speech": speech}


def _generate(setup, audio, out, *extra):
    return main([
        "generate", "--audio", str(audio), "--image", str(setup["image"]), "-o", str(out),
        "--reference-pose", str(setup["pose"]), "--model", str(setup["models"]),
        "--rule-motion", *extra,
    ])  # fmt: skip


def test_generate_writes_h264_aac_as_long_as_the_speech(setup, tmp_path, capsys):
    out, pose_file = tmp_path / "sub" / "out.mp4", tmp_path / "pose.npz"
    assert _generate(setup, setup["speech"], out, "--save-pose", str(pose_file)) == 0
    info = probe(out)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert (info.width, info.height) == (128, 128)  # the photo layer: 2x the model's 64
    # 1 s of speech at 25 fps: 25 frames (7 latent frames -> 3 windows of 3, overlap 1)
    assert info.frames == FPS and abs(info.video_duration - 1.0) <= 1 / FPS
    assert abs(info.audio_duration - 1.0) <= 1 / FPS
    pose = PoseSequence.load(pose_file)
    assert len(pose) == FPS and (pose.width, pose.height) == (128, 128)
    summary = capsys.readouterr().out
    assert "25 frames" in summary and "FPS" in summary and "3 windows" in summary


def _expect_error(capsys, code, out, pattern):
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and pattern in err, err
    assert not out.exists()
    if out.parent.is_dir():
        assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], "temp left"


def test_missing_audio(setup, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    _expect_error(capsys, _generate(setup, tmp_path / "nope.wav", out), out, "no such file")


def test_not_audio(setup, tmp_path, capsys):
    fake = tmp_path / "speech.wav"
    fake.write_text("this is not audio")
    out = tmp_path / "o.mp4"
    _expect_error(capsys, _generate(setup, fake, out), out, "speech.wav")


def test_empty_audio(setup, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    code = _generate(setup, silent_wav(tmp_path / "empty.wav", 0.0), out)
    _expect_error(capsys, code, out, "empty.wav")


def test_not_an_image(setup, tmp_path, capsys):
    bad = tmp_path / "face.png"
    bad.write_bytes(b"not a png")
    out = tmp_path / "o.mp4"
    code = main(["generate", "--audio", str(setup["speech"]), "--image", str(bad), "-o", str(out),
                 "--model", str(setup["models"]), "--rule-motion"])  # fmt: skip
    _expect_error(capsys, code, out, "face.png")


def test_no_person_in_the_image(setup, tmp_path, capsys):
    from PIL import Image

    blank = tmp_path / "wall.png"
    Image.fromarray(np.full((96, 96, 3), 128, np.uint8)).save(blank)
    out = tmp_path / "o.mp4"
    code = main(["generate", "--audio", str(setup["speech"]), "--image", str(blank), "-o",
                 str(out), "--model", str(setup["models"]), "--rule-motion"])  # fmt: skip
    _expect_error(capsys, code, out, "no person found")


def test_two_people_and_a_huge_photo_are_one_line_and_no_output(setup, tmp_path, capsys):
    """``generate`` finds the person as ``cospeech.pose.person`` does: two people are
    refused, and a 20000x20000 photo is refused from its header, before it is decoded."""
    from PIL import Image
    from skimage import data as skimage_data

    photo = skimage_data.astronaut()
    two = tmp_path / "two.png"
    Image.fromarray(np.concatenate([photo, photo[:, ::-1]], axis=1)).save(two)
    huge = tmp_path / "huge.png"
    Image.new("RGB", (20000, 20000), (128, 128, 128)).save(huge)  # ~1 MB on disk
    for image, message in ((two, "found 2 people"), (huge, "40-megapixel limit")):
        out = tmp_path / f"{image.stem}.mp4"
        code = main(["generate", "--audio", str(setup["speech"]), "--image", str(image), "-o",
                     str(out), "--model", str(setup["models"]), "--rule-motion"])  # fmt: skip
        _expect_error(capsys, code, out, message)


def test_output_that_cannot_be_written(setup, tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file where a folder should be")
    out = blocker / "o.mp4"
    _expect_error(capsys, _generate(setup, setup["speech"], out), out, "cannot write")
    wrong = tmp_path / "o.avi"
    _expect_error(capsys, _generate(setup, setup["speech"], wrong), wrong, ".mp4")
