"""Dataclass configs: presets, YAML, overrides, validation."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from cospeech.config import load_config, save_config
from cospeech.errors import InputError


@dataclass
class Inner:
    size: tuple[int, int] = (4, 4)
    rate: float = 1.0


@dataclass
class Outer:
    name: str = "x"
    depth: int = 2
    inner: Inner = field(default_factory=Inner)


PRESETS = {"small": Outer(name="small", depth=1), "big": Outer(name="big", depth=8)}


def test_presets_yaml_and_overrides(tmp_path):
    assert load_config(Outer, "big", PRESETS).depth == 8
    cfg = load_config(Outer, "small", PRESETS, ["inner.size=[2, 3]", "inner.rate=3"])
    assert cfg.inner.size == (2, 3) and cfg.inner.rate == 3.0 and isinstance(cfg.inner.rate, float)
    path = tmp_path / "c.yaml"
    save_config(cfg, path)
    assert load_config(Outer, path, PRESETS) == cfg
    path.write_text("preset: big\ndepth: 5\n")
    assert load_config(Outer, path, PRESETS) == Outer(name="big", depth=5)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"nme": "typo"}, "unknown field"),
        ({"inner": {"sz": 1}}, "unknown field"),
        ("missing.yaml", "no such file or preset"),
    ],
)
def test_bad_configs_raise_one_clear_error(source, message):
    with pytest.raises(InputError, match=message):
        load_config(Outer, source, PRESETS)


def test_bad_yaml_and_unknown_preset(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("depth: [1, 2\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_config(Outer, path, PRESETS)
    path.write_text("preset: huge\n")
    with pytest.raises(InputError, match="unknown preset"):
        load_config(Outer, path, PRESETS)
    with pytest.raises(InputError, match="expected key=value"):
        load_config(Outer, None, PRESETS, ["depth"])
