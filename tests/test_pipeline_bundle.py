"""The shipped demo models: present, loadable, float16 on disk, small enough to ship."""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open

from cospeech.pipeline.bundle import DELTA_NAME, SamplingSettings, load_bundle
from cospeech.shipped import ASSETS

SHIPPED_LIMIT_BYTES = 50 * 1024 * 1024


def test_shipped_models_load_and_fit_together():
    bundle = load_bundle(model="teacher")
    assert bundle.teacher.config.out_dim == bundle.vae.latent_channels == 16
    assert bundle.settings == SamplingSettings.load(ASSETS / "teacher")
    assert 0 < bundle.settings.overlap < bundle.settings.window
    raw = json.loads((ASSETS / "teacher" / "sampling.json").read_text())
    assert raw["size"] == 128 and raw["steps"] >= 1


def test_the_shipped_student_is_the_default_and_an_int8_delta_to_the_teacher():
    student = load_bundle()
    assert student.kind == "student"
    assert student.model.config == load_bundle(model="teacher").model.config
    assert student.settings.size == 128 and student.settings.chunk_frames >= 1
    assert (ASSETS / "student" / "MODEL_CARD.md").is_file()
    assert not (ASSETS / "student" / "model.safetensors").exists()
    with safe_open(str(ASSETS / "student" / DELTA_NAME), "pt") as delta:
        dtypes = {str(delta.get_slice(k).get_dtype()) for k in delta.keys()}  # noqa: SIM118
    assert dtypes == {"I8", "F32"}  # int8 differences, float32 row scales


@pytest.mark.parametrize("name", ["teacher", "vae"])
def test_shipped_weights_are_float16_safetensors_with_a_model_card(name):
    folder = ASSETS / name
    assert (folder / "MODEL_CARD.md").is_file()
    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        dtypes = {str(weights.get_slice(k).get_dtype()) for k in weights.keys()}  # noqa: SIM118
    assert dtypes == {"F16"}


def test_all_shipped_weights_stay_under_50_mb():
    total = sum(p.stat().st_size for p in ASSETS.rglob("*.safetensors"))
    assert total < SHIPPED_LIMIT_BYTES
