"""The audio -> motion model's configuration and its named presets (``tiny``, ``demo``)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from cospeech.errors import InputError

MEL_PER_FRAME = 4
"""Log-mel frames per video frame: the mel is resampled to ``4 * fps`` Hz (100 Hz at 25 fps)
and each video frame sees the 4 mel frames it covers."""


@dataclass(frozen=True)
class MotionModelConfig:
    """Sizes and inference settings of :class:`~cospeech.motion.model.MotionModel`.

    Encoder: stacked mel frames -> ``dim`` -> a conv with ``conv_left`` past and
    ``lookahead_frames`` future frames -> ``layers`` transformer layers, bidirectional
    (offline) or causal with a ``stream_window`` frames left window (streaming).
    Body/hands: a conditional flow-matching denoiser of ``flow_blocks`` dilated conv blocks
    of width ``flow_dim``, sampled in ``flow_steps`` Euler steps; ``context_frames`` earlier
    frames condition each generated window (streaming chunks, long-audio windows).
    """

    n_mels: int = 80
    dim: int = 128
    layers: int = 3
    heads: int = 4
    ff_mult: int = 2
    conv_left: int = 2
    lookahead_frames: int = 4
    stream_window: int = 64
    flow_dim: int = 128
    flow_blocks: int = 4
    flow_kernel: int = 5
    flow_steps: int = 8
    context_frames: int = 10
    style_dim: int = 8
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise InputError(f"motion model: dim {self.dim} is not divisible by {self.heads} heads")
        if self.flow_kernel % 2 == 0:
            raise InputError("motion model: flow_kernel must be odd")
        if min(self.layers, self.flow_blocks, self.flow_steps, self.stream_window) < 1:
            raise InputError("motion model: layers, flow_blocks, flow_steps, stream_window >= 1")

    @property
    def receptive_past(self) -> int:
        """Input frames before frame ``t`` that its streaming encoding depends on."""
        return self.layers * self.stream_window + self.conv_left


PRESETS: dict[str, MotionModelConfig] = {
    "tiny": MotionModelConfig(
        dim=32, layers=2, heads=2, stream_window=16, flow_dim=32, flow_blocks=2, flow_steps=4,
        context_frames=4, dropout=0.0,
    ),
    "demo": MotionModelConfig(),
}  # fmt: skip


def preset(name: str, **overrides: object) -> MotionModelConfig:
    """A named preset, optionally with fields replaced."""
    if name not in PRESETS:
        raise InputError(f"unknown motion model preset {name!r}; presets: {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)
