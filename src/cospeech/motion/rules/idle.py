"""Idle rules: breathing and a slow torso sway, present whether or not the speaker talks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cospeech.motion.rules.signals import smooth_noise


@dataclass(frozen=True)
class IdleRules:
    """Breathing lifts the shoulders (and all above them); sway rotates the upper body
    about the hip centre and shifts it sideways. Lengths in shoulder widths, angles in
    radians (scaled by the style's ``sway``)."""

    breath_period_s: tuple[float, float] = (3.0, 5.0)
    breath_rise: float = 0.008
    sway_angle: float = 0.015
    sway_shift: float = 0.012
    sway_hz: tuple[float, float] = (0.05, 0.25)


@dataclass(frozen=True)
class TorsoMotion:
    """Per-frame torso motion ``[T]``: ``angle`` (rad, about the hip centre), ``shift_x``
    and ``rise`` (shoulder widths; rise lifts the shoulders and above)."""

    angle: np.ndarray
    shift_x: np.ndarray
    rise: np.ndarray


def torso_motion(
    times: np.ndarray, gain: float, rng: np.random.Generator, rules: IdleRules
) -> TorsoMotion:
    """Breathing (a sinusoid of random period and phase) and sway (smooth noise)."""
    period = rng.uniform(*rules.breath_period_s)
    phase = rng.uniform(0.0, 2 * np.pi)
    rise = gain * rules.breath_rise * 0.5 * (1 - np.cos(2 * np.pi * times / period + phase))
    angle = gain * rules.sway_angle * smooth_noise(rng, times, *rules.sway_hz)
    shift = gain * rules.sway_shift * smooth_noise(rng, times, *rules.sway_hz)
    return TorsoMotion(angle=angle, shift_x=shift, rise=rise)
