"""Classifier-free guidance over named conditions (pose, reference, ...).

A flow model is any callable ``model(x_t [B, C, F, H, W], t [B], **conditions) -> flow``.
:class:`Guidance` says how strong the guidance is and which conditions the unconditional
branch drops; each dropped condition is replaced by its null value::

    guidance = Guidance(scale=3.0, drop=("pose",))                 # pose CFG, zeros for pose
    guidance = Guidance(4.0, drop=("pose", "reference"),
                        null={"reference": lambda ref: torch.zeros_like(ref)})
    flow = guidance(model, x_t, t, {"pose": pose_video, "reference": ref_latent})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from cospeech.errors import InputError

FlowModel = Callable[..., Tensor]
"""``model(x_t [B, C, F, H, W], t [B], **conditions) -> flow [B, C, F, H, W]``."""


@dataclass(frozen=True)
class Guidance:
    """Classifier-free guidance ``uncond + scale * (cond - uncond)``.

    ``drop`` names the conditions that the unconditional branch replaces by their null
    value. ``null[name]`` is that value, or a callable mapping the conditional value to it;
    a dropped tensor condition without an entry becomes ``zeros_like``. ``scale == 1``
    is plain conditional prediction (one model call). The DMD convention
    ``cond + g * (cond - uncond)`` is ``Guidance(scale=1 + g)``.
    """

    scale: float = 1.0
    drop: tuple[str, ...] = ("pose", "reference")
    null: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        drop = (self.drop,) if isinstance(self.drop, str) else tuple(self.drop)
        object.__setattr__(self, "drop", drop)
        if not self.drop and self.scale != 1.0:
            raise InputError("guidance with scale != 1 must drop at least one condition")
        unknown = sorted(set(self.null) - set(self.drop))
        if unknown:
            raise InputError(f"null values given for conditions that are not dropped: {unknown}")

    @property
    def active(self) -> bool:
        """Whether the unconditional branch is evaluated at all."""
        return self.scale != 1.0

    def unconditional(self, conditions: Mapping[str, Any]) -> dict[str, Any]:
        """``conditions`` with every dropped condition replaced by its null value."""
        uncond = dict(conditions)
        for name in self.drop:
            if name not in conditions:
                raise InputError(
                    f"guidance drops condition {name!r}, but only {sorted(conditions)} are given"
                )
            value = conditions[name]
            if name in self.null:
                null = self.null[name]
                uncond[name] = null(value) if callable(null) else null
            elif isinstance(value, Tensor):
                uncond[name] = torch.zeros_like(value)
            else:
                raise InputError(
                    f"condition {name!r} is not a tensor: give its null value in Guidance.null"
                )
        return uncond

    def combine(self, cond: Tensor, uncond: Tensor) -> Tensor:
        """``uncond + scale * (cond - uncond)``."""
        return uncond + self.scale * (cond - uncond)

    def __call__(
        self, model: FlowModel, x_t: Tensor, t: Tensor, conditions: Mapping[str, Any]
    ) -> Tensor:
        """The guided flow of ``model`` at ``(x_t, t)``: two model calls, or one at scale 1."""
        cond = model(x_t, t, **conditions)
        if not self.active:
            return cond
        uncond = model(x_t, t, **self.unconditional(conditions))
        return self.combine(cond, uncond)
