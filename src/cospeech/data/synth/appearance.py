"""``Appearance``: the look of one synthetic speaker, and a sampler of diverse looks.

An appearance is written into each clip's ``meta.json`` (``to_dict`` / ``from_dict``).
Sampled colours always keep clear of the reserved mouth colours (see ``colours.py``).
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from cospeech.data.synth.colours import (
    DARKEST_SHADE,
    RGB,
    segment_clearance,
    shade,
    shades_clear,
)
from cospeech.data.synth.colours import RESERVED_CLEARANCE as _CLEARANCE
from cospeech.errors import InputError

HAIR_STYLES = ("short", "long", "bun", "bald")
CLOTHING_STYLES = ("tshirt", "collared_shirt", "sweater")
BACKGROUND_KINDS = ("solid", "vertical_gradient", "horizontal_gradient", "noise", "stripes")

# Skin tones from light to deep; a sample interpolates between neighbours.
SKIN_TONE_RAMP: tuple[RGB, ...] = (
    (255, 226, 204), (241, 194, 160), (224, 172, 128), (198, 140, 98),
    (160, 106, 70), (122, 78, 50), (88, 56, 38),
)  # fmt: skip
HAIR_PALETTE: tuple[RGB, ...] = (
    (26, 22, 22), (52, 36, 28), (92, 62, 40), (140, 96, 56),
    (150, 72, 38), (214, 180, 120), (232, 206, 150), (168, 166, 162), (222, 220, 214),
)  # fmt: skip
IRIS_PALETTE: tuple[RGB, ...] = (
    (74, 46, 26), (110, 74, 40), (118, 110, 58), (70, 120, 70), (70, 110, 160), (120, 130, 140),
)  # fmt: skip
LIP_TINT_RGB: RGB = (205, 96, 70)  # lips = skin blended towards this coral, then darkened
LIP_TINT_RANGE = (0.35, 0.6)
LIP_DARKEN_RANGE = (0.78, 0.95)
EYEBROW_DARKEN_RANGE = (0.6, 0.9)
COLOUR_JITTER = 10  # +- per channel on palette colours
CLOTHING_SATURATION_RANGE = (0.15, 0.8)
CLOTHING_VALUE_RANGE = (0.2, 0.92)
BACKGROUND_SATURATION_RANGE = (0.05, 0.45)
BACKGROUND_VALUE_RANGE = (0.35, 0.95)
BACKGROUND_SECOND_VALUE_SHIFT = (-0.3, 0.3)
BACKGROUND_SECOND_HUE_SHIFT = 0.12
SEED_LIMIT = 2**31 - 1
MAX_COLOUR_DRAWS = 100  # tries per colour before using the part's fallback colour
FALLBACK_CLOTHING_RGB: RGB = (84, 108, 140)


def _check_rgb(name: str, value: Any) -> RGB:
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 3
        or not all(isinstance(c, (int, np.integer)) and 0 <= c <= 255 for c in value)
    ):
        raise InputError(f"appearance: {name} must be three integers in [0, 255], got {value!r}")
    return tuple(int(c) for c in value)  # type: ignore[return-value]


@dataclass(frozen=True)
class Appearance:
    """Colours (RGB, 0-255) and styles of one speaker and its background."""

    skin_rgb: RGB
    hair_rgb: RGB
    hair_style: str
    iris_rgb: RGB
    eyebrow_rgb: RGB
    lip_rgb: RGB
    clothing_rgb: RGB
    clothing_trim_rgb: RGB  # collar, neckline, cuffs, hem
    clothing_style: str
    background_kind: str
    background_rgb: RGB
    background_second_rgb: RGB  # gradient end / texture colour
    background_seed: int  # texture of "noise" and "stripes" backgrounds

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name.endswith("_rgb"):
                object.__setattr__(self, f.name, _check_rgb(f.name, getattr(self, f.name)))
        for name, allowed in (
            ("hair_style", HAIR_STYLES),
            ("clothing_style", CLOTHING_STYLES),
            ("background_kind", BACKGROUND_KINDS),
        ):
            if getattr(self, name) not in allowed:
                raise InputError(
                    f"appearance: {name} must be one of {allowed}, got {getattr(self, name)!r}"
                )
        seed = self.background_seed
        if not isinstance(seed, (int, np.integer)) or not 0 <= seed <= SEED_LIMIT:
            raise InputError(f"appearance: background_seed must be in [0, 2^31), got {seed!r}")
        object.__setattr__(self, "background_seed", int(seed))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (colours as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Appearance:
        """Inverse of :meth:`to_dict`; raises :class:`InputError` on missing/unknown keys."""
        names = {f.name for f in fields(cls)}
        missing, unknown = names - data.keys(), data.keys() - names
        if missing or unknown:
            raise InputError(
                f"appearance: missing keys {sorted(missing)}, unknown keys {sorted(unknown)}"
            )
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def _jitter(rng: np.random.Generator, colour: RGB) -> RGB:
    noise = rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=3)
    return tuple(int(c) for c in np.clip(np.asarray(colour) + noise, 0, 255))  # type: ignore[return-value]


def _hsv(hue: float, saturation: float, value: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return (round(r * 255), round(g * 255), round(b * 255))


def _sample_clear(draw: Callable[[], RGB], fallback: RGB, darkest: float = DARKEST_SHADE) -> RGB:
    """The first of ``MAX_COLOUR_DRAWS`` drawn colours that (with its shades down to
    ``darkest``) keeps clear of the reserved colours, else ``fallback`` (a clear colour)."""
    for _ in range(MAX_COLOUR_DRAWS):
        colour = draw()
        if shades_clear(colour, darkest):
            return colour
    return fallback


def _skin(rng: np.random.Generator) -> RGB:
    position = rng.uniform(0, len(SKIN_TONE_RAMP) - 1)
    low = int(np.floor(position))
    high = min(low + 1, len(SKIN_TONE_RAMP) - 1)
    frac = position - low
    blend = (1 - frac) * np.asarray(SKIN_TONE_RAMP[low]) + frac * np.asarray(SKIN_TONE_RAMP[high])
    return _jitter(rng, tuple(round(c) for c in blend))  # type: ignore[arg-type]


def _lips(rng: np.random.Generator, skin: RGB) -> RGB:
    tint = rng.uniform(*LIP_TINT_RANGE)
    mixed = (1 - tint) * np.asarray(skin) + tint * np.asarray(LIP_TINT_RGB)
    return shade(tuple(round(c) for c in mixed), rng.uniform(*LIP_DARKEN_RANGE))  # type: ignore[arg-type]


def _background_pair(rng: np.random.Generator) -> tuple[RGB, RGB]:
    while True:
        hue = rng.uniform()
        saturation = rng.uniform(*BACKGROUND_SATURATION_RANGE)
        value = rng.uniform(*BACKGROUND_VALUE_RANGE)
        first = _hsv(hue, saturation, value)
        second = _hsv(
            hue + rng.uniform(-BACKGROUND_SECOND_HUE_SHIFT, BACKGROUND_SECOND_HUE_SHIFT),
            saturation,
            float(np.clip(value + rng.uniform(*BACKGROUND_SECOND_VALUE_SHIFT), 0.1, 1.0)),
        )
        if segment_clearance(first, second) >= _CLEARANCE:
            return first, second


def sample_appearance(rng: np.random.Generator) -> Appearance:
    """A random, deterministic-for-a-seed appearance with no reserved colour in it."""
    skin = _sample_clear(lambda: _skin(rng), SKIN_TONE_RAMP[0])
    hair_style = str(rng.choice(HAIR_STYLES))
    # Eyebrows are darkened hair: check the hair's shades down to the darkest eyebrow shade.
    hair = _sample_clear(
        lambda: _jitter(rng, HAIR_PALETTE[rng.integers(len(HAIR_PALETTE))]),
        HAIR_PALETTE[0],
        EYEBROW_DARKEN_RANGE[0] * DARKEST_SHADE,
    )
    eyebrow = _sample_clear(lambda: shade(hair, rng.uniform(*EYEBROW_DARKEN_RANGE)), hair)
    iris = _sample_clear(
        lambda: _jitter(rng, IRIS_PALETTE[rng.integers(len(IRIS_PALETTE))]), IRIS_PALETTE[0]
    )
    lips = _sample_clear(lambda: _lips(rng, skin), skin)
    clothing, trim = (
        _sample_clear(
            lambda: _hsv(
                rng.uniform(),
                rng.uniform(*CLOTHING_SATURATION_RANGE),
                rng.uniform(*CLOTHING_VALUE_RANGE),
            ),
            FALLBACK_CLOTHING_RGB,
        )
        for _ in range(2)
    )
    background_kind = str(rng.choice(BACKGROUND_KINDS))
    background, background_second = _background_pair(rng)
    return Appearance(
        skin_rgb=skin,
        hair_rgb=hair,
        hair_style=hair_style,
        iris_rgb=iris,
        eyebrow_rgb=eyebrow,
        lip_rgb=lips,
        clothing_rgb=clothing,
        clothing_trim_rgb=trim,
        clothing_style=str(rng.choice(CLOTHING_STYLES)),
        background_kind=background_kind,
        background_rgb=background,
        background_second_rgb=background_second,
        background_seed=int(rng.integers(0, SEED_LIMIT)),
    )
