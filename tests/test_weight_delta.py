"""Int8 weight deltas: closed-form quantisation bounds, round trip, and bad files."""

from __future__ import annotations

import copy
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from cospeech.config import to_dict
from cospeech.errors import CheckpointError
from cospeech.jsonfile import write_json
from cospeech.models import VideoDiT
from cospeech.models.i2v import STUDENT_KIND, StudentSampling
from cospeech.models.weight_delta import (
    apply_weight_delta,
    dequantise_delta,
    quantise_delta,
    save_weight_delta,
)
from cospeech.pipeline.bundle import SamplingSettings, load_bundle, save_bundle
from dit_fixture import random_tiny_dit, randomise
from pipeline_fixture import tiny_models


def test_quantise_scale_is_row_max_over_127_and_error_within_half_a_step():
    delta = torch.tensor([[0.5, -1.27, 0.0], [0.0, 0.0, 0.0], [2.54, 1.0, -0.3]])
    q, scale = quantise_delta(delta)
    assert q.dtype == torch.int8
    torch.testing.assert_close(scale, torch.tensor([0.01, 0.0, 0.02]))
    # row 0: -1.27 / 0.01 = -127 exactly; 0.5 / 0.01 = 50
    assert q[0].tolist() == [50, -127, 0]
    assert q[1].tolist() == [0, 0, 0]  # an all-zero row stays exactly zero
    error = (dequantise_delta(q, scale) - delta).abs()
    assert (error <= scale[:, None] / 2 + 1e-7).all()


def test_vector_delta_has_one_scale():
    q, scale = quantise_delta(torch.tensor([0.1, -0.2, 0.4]))
    assert scale.shape == (1,)
    torch.testing.assert_close(dequantise_delta(q, scale), torch.tensor([0.1, -0.2, 0.4]),
                               atol=0.4 / 127 / 2, rtol=0)  # fmt: skip


def test_round_trip_restores_the_fine_tuned_model_within_the_reported_error(tmp_path):
    base = random_tiny_dit()
    tuned = copy.deepcopy(base)
    randomise(tuned, std=0.01, seed=1)
    with torch.no_grad():
        for param, start in zip(tuned.parameters(), base.parameters(), strict=True):
            param.add_(start)  # tuned = base + a small random change
    worst = save_weight_delta(tuned, base, tmp_path / "delta.safetensors")
    restored = apply_weight_delta(copy.deepcopy(base), tmp_path / "delta.safetensors")
    errors = [
        float((a - b).detach().abs().max())
        for a, b in zip(restored.parameters(), tuned.parameters(), strict=True)
    ]
    # the stored model is base + q * s: its error is the quantisation error (<= s / 2,
    # s = max |change| / 127 <= 0.06 / 127 for N(0, 0.01) changes) plus one float32 add
    assert max(errors) == pytest.approx(worst, abs=1e-6)
    assert 0 < worst < 0.06 / 127
    stored = load_file(tmp_path / "delta.safetensors")
    assert {t.dtype for k, t in stored.items() if k.endswith(".q")} == {torch.int8}


def test_not_a_delta_file_is_one_checkpoint_error(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"x": torch.zeros(2)}, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not a cospeech int8 weight delta"):
        apply_weight_delta(random_tiny_dit(), path)
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="unreadable weight delta"):
        apply_weight_delta(random_tiny_dit(), tmp_path / "junk.safetensors")


def test_a_delta_for_another_model_names_what_differs(tmp_path):
    base = random_tiny_dit()
    save_weight_delta(base, base, tmp_path / "delta.safetensors")
    other = random_tiny_dit(num_layers=base.config.num_layers + 1)
    with pytest.raises(CheckpointError, match="missing blocks"):
        apply_weight_delta(other, tmp_path / "delta.safetensors")


def test_a_bundled_student_stored_as_a_delta_loads_as_the_student(tmp_path):
    """save_bundle(student_delta=True) writes the student as an int8 difference to the
    float16 teacher it writes; load_bundle gives the student back within the delta's error."""
    tiny = tiny_models(tmp_path)
    teacher = VideoDiT.from_pretrained(tiny / "teacher")
    student = copy.deepcopy(teacher)
    randomise(student, std=0.01, seed=2)
    with torch.no_grad():
        for param, start in zip(student.parameters(), teacher.parameters(), strict=True):
            param.add_(start)
    student.save_pretrained(tmp_path / "student-run")
    sampling = StudentSampling(
        kind=STUDENT_KIND, steps=[1000.0], shift=3.0, chunk_frames=1, cache_sink=1,
        cache_window=1, attention="dense", k=4, block_size=128, window=3, size=64,
    )  # fmt: skip
    write_json(tmp_path / "student-run" / "sampling.json", to_dict(sampling))
    root = save_bundle(tiny / "teacher", tiny / "vae", SamplingSettings(window=3, overlap=1),
                       tmp_path / "bundle", student_dir=tmp_path / "student-run",
                       student_delta=True)  # fmt: skip
    assert not (root / "student" / "model.safetensors").exists()
    loaded = load_bundle(root)
    assert loaded.kind == "student" and loaded.settings == sampling
    # float16 teacher + int8 delta: within the delta's quantisation step of the student
    for got, want in zip(loaded.model.parameters(), student.parameters(), strict=True):
        torch.testing.assert_close(got, want.detach(), atol=0.06 / 127, rtol=0)
    shutil.rmtree(root / "teacher")
    with pytest.raises(CheckpointError, match="needs its base model"):
        load_bundle(root)
