"""Exponential moving average of a model's parameters."""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """``shadow = decay * shadow + (1 - decay) * param`` after every update, for float tensors.

    Buffers are copied. The shadow lives on the parameters' device, in float32; made from
    an FSDP2 model it holds the same shards as the model (DTensors).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.shadow = {
            name: value.detach().float().clone() for name, value in model.state_dict().items()
        }

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float | None = None) -> None:
        decay = self.decay if decay is None else decay
        for name, value in model.state_dict().items():
            shadow = self.shadow[name]
            if value.is_floating_point():
                shadow.lerp_(value.detach().float(), 1.0 - decay)
            else:
                shadow.copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Whole tensors; a shadow of FSDP2 shards (DTensors, when the EMA was made from a
        sharded model) keeps its shards of them (a collective: every process calls it)."""
        from torch.distributed.tensor import DTensor, distribute_tensor

        missing = set(self.shadow) - set(state)
        if missing:
            raise KeyError(f"EMA state lacks {sorted(missing)[:5]}")
        for name, value in state.items():
            shadow = self.shadow[name]
            if isinstance(shadow, DTensor):
                value = distribute_tensor(
                    value.to(shadow.device_mesh.device_type), shadow.device_mesh,
                    shadow.placements,
                )  # fmt: skip
            shadow.copy_(value)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model`` (cast to each tensor's dtype)."""
        model.load_state_dict(
            {k: v.to(model.state_dict()[k].dtype) for k, v in self.shadow.items()}
        )
