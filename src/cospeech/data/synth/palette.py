"""``Palette``: every colour the renderer draws for one appearance (appearance + shades)."""

from __future__ import annotations

from dataclasses import dataclass

from cospeech.data.synth.appearance import Appearance
from cospeech.data.synth.colours import OUTLINE_SHADE, RGB, SHADOW_SHADE, shade


@dataclass(frozen=True)
class Palette:
    """Fill, outline and shadow colours (RGB) derived from an :class:`Appearance`."""

    skin: RGB
    skin_outline: RGB
    skin_shadow: RGB
    hair: RGB
    hair_outline: RGB
    hair_shadow: RGB
    clothing: RGB
    clothing_outline: RGB
    trim: RGB
    trim_outline: RGB
    lip: RGB
    lip_line: RGB
    eyebrow: RGB
    iris: RGB
    iris_rim: RGB

    @classmethod
    def from_appearance(cls, appearance: Appearance) -> Palette:
        a = appearance
        return cls(
            skin=a.skin_rgb,
            skin_outline=shade(a.skin_rgb, OUTLINE_SHADE),
            skin_shadow=shade(a.skin_rgb, SHADOW_SHADE),
            hair=a.hair_rgb,
            hair_outline=shade(a.hair_rgb, OUTLINE_SHADE),
            hair_shadow=shade(a.hair_rgb, SHADOW_SHADE),
            clothing=a.clothing_rgb,
            clothing_outline=shade(a.clothing_rgb, OUTLINE_SHADE),
            trim=a.clothing_trim_rgb,
            trim_outline=shade(a.clothing_trim_rgb, OUTLINE_SHADE),
            lip=a.lip_rgb,
            lip_line=shade(a.lip_rgb, OUTLINE_SHADE),
            eyebrow=a.eyebrow_rgb,
            iris=a.iris_rgb,
            iris_rim=shade(a.iris_rgb, OUTLINE_SHADE),
        )
