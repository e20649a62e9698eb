"""``--precision``: which number format ``auto`` picks, and what bfloat16 changes.

The suite runs with ``auto`` resolving to float32 on every CPU (conftest), so that no test
depends on the CPU's instructions; the tests here name the precision they run.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cospeech import GenerateOptions, Generator
from cospeech.cli import main
from cospeech.errors import InputError
from cospeech.precision import autocast_for, check_precision, cpu_flags, resolve_precision
from cospeech.shipped import ASSETS
from pipeline_fixture import EXAMPLE_SPEECH, write_speech_excerpt

EXAMPLES = ASSETS.parent.parent.parent / "examples"
IMAGE, POSE = EXAMPLES / "reference.png", EXAMPLES / "reference_pose.npz"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """The first 1.2 s of the example speech (30 frames)."""
    folder = tmp_path_factory.mktemp("speech")
    return write_speech_excerpt(EXAMPLE_SPEECH, folder / "speech-1.2s.wav", 1.2)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16\n\n"
                       "processor\t: 1\nflags\t\t: fpu\n")  # fmt: skip
    assert cpu_flags(cpuinfo) == {"fpu", "sse2", "avx512f", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


@pytest.mark.parametrize(
    ("flags", "expected"),
    [({"avx512f", "avx512_bf16"}, "bfloat16"), ({"amx_bf16"}, "bfloat16"),
     ({"avx2", "avx512f"}, "float32"), (set(), "float32")],
)  # fmt: skip
def test_auto_picks_bfloat16_only_where_the_cpu_has_it(monkeypatch, flags, expected):
    monkeypatch.setattr("cospeech.precision.cpu_flags", lambda: frozenset(flags))
    assert resolve_precision("auto", CPU) == expected
    assert resolve_precision("float32", CPU) == "float32"
    assert resolve_precision("bfloat16", CPU) == "bfloat16"


def test_bad_precision_is_one_input_error_naming_the_flag():
    with pytest.raises(InputError, match="--precision must be one of auto, float32, bfloat16"):
        check_precision("fp16")
    with pytest.raises(InputError, match="--precision"):
        Generator.from_pretrained(model="student", precision="half")
    with pytest.raises(InputError, match="not resolved"), autocast_for("auto", CPU):
        pass


def test_autocast_only_inside_the_block():
    with autocast_for("float32", CPU):
        assert not torch.is_autocast_enabled("cpu")
    with autocast_for("bfloat16", CPU):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
        product = torch.ones(2, 3) @ torch.ones(3, 2)
    assert product.dtype == torch.bfloat16 and not torch.is_autocast_enabled("cpu")


def test_bfloat16_student_is_close_to_float32_and_its_caller_runs_outside_autocast(speech):
    """The DiT's weights are bfloat16; the frames differ from float32's by rounding only (a
    different seed, for scale, differs by about 6.6 levels on average and 29 dB); the
    stream's consumer never runs under autocast."""
    options = GenerateOptions(size=64, photo_layer=False)
    videos = {}
    for precision in ("float32", "bfloat16"):
        gen = Generator.from_pretrained(model="student", precision=precision)
        dtypes = {p.dtype for p in gen.bundle.model.parameters()}
        assert gen.precision == precision and dtypes == {getattr(torch, precision)}
        result = gen(speech, IMAGE, reference_pose=POSE, options=options)
        assert result.precision == precision
        videos[precision] = result.video.astype(np.float64)
        for _chunk in gen.stream(speech, IMAGE, reference_pose=POSE, options=options):
            assert not torch.is_autocast_enabled("cpu")
    difference = videos["float32"] - videos["bfloat16"]
    psnr = 10 * np.log10(255**2 / np.mean(difference**2))
    assert 0 < np.abs(difference).mean() < 1.0 and psnr > 45


def test_generate_cli_names_the_precision(speech, tmp_path, capsys):
    out = tmp_path / "bf16.mp4"
    code = main(["generate", "--audio", str(speech), "--image", str(IMAGE), "--reference-pose",
                 str(POSE), "-o", str(out), "--size", "64", "--precision", "bfloat16"])  # fmt: skip
    assert code == 0 and out.is_file()
    assert "in bfloat16" in capsys.readouterr().out
