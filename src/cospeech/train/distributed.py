"""Process-group set-up for ``torchrun``: the same command on one process or many.

Backend: NCCL on CUDA, gloo on CPU. Without torchrun's environment variables everything
runs in one process and the helpers here are no-ops.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from cospeech.device import resolve_device


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the torchrun job if there is one; pick the device (``cuda:LOCAL_RANK`` or cpu)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def wrap_model(model: nn.Module, info: DistInfo, fsdp: bool = False) -> nn.Module:
    """DDP (or FSDP2 ``fully_shard`` per block, for models that do not fit one GPU)."""
    if not info.enabled:
        return model
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        for block in getattr(model, "blocks", []):
            fully_shard(block)
        fully_shard(model)
        return model
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def is_sharded(model: nn.Module) -> bool:
    """Whether ``model``'s parameters are FSDP2 shards (DTensors)."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def _full_options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole, unsharded state dict of ``model``. For an FSDP2 model this gathers the
    shards: a collective every process must call; the main process gets the tensors on
    the CPU, the others ``{}``. Otherwise the model's own ``state_dict()``."""
    if not is_sharded(model):
        return model.state_dict()
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_full_options())


def load_full_model_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a whole state dict (as :func:`full_model_state` saves it) into ``model``; each
    FSDP2 process keeps its shards of it."""
    if not is_sharded(model):
        model.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's whole state: keyed by parameter name and gathered for an FSDP2
    ``model`` (a collective, as :func:`full_model_state`), its ``state_dict()`` otherwise."""
    if not is_sharded(model):
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_full_options())


def load_full_optimizer_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, state: dict
) -> None:
    """Load what :func:`full_optimizer_state` saved."""
    if not is_sharded(model):
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True)
    set_optimizer_state_dict(model, optimizer, state, options=options)


def full_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with every DTensor gathered to a whole CPU tensor (a collective when there
    are any: every process must call it)."""
    from torch.distributed.tensor import DTensor

    return {
        name: value.full_tensor().cpu() if isinstance(value, DTensor) else value
        for name, value in state.items()
    }


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (FSDP2 modules are their own)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def mean_across(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """All-reduce mean of a scalar (for logging the same loss on every rank)."""
    if not info.enabled:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / info.world_size


def average_gradients(params: Iterable[nn.Parameter], info: DistInfo) -> None:
    """Replace every gradient by its mean across processes (what DDP does in its backward),
    for modules that are not wrapped in DDP.

    A parameter that has a gradient on some process only gets a zero gradient on the
    others first; one that has none anywhere keeps ``None`` (the optimizer skips it, as
    in a single process). All processes must pass the parameters in the same order.
    FSDP2 shards (DTensors) are skipped: their backward already reduced their gradients.
    """
    from torch.distributed.tensor import DTensor

    if not info.enabled:
        return
    params = [p for p in params if p.requires_grad and not isinstance(p, DTensor)]
    if not params:
        return
    present = torch.tensor(
        [p.grad is not None for p in params], dtype=torch.float32, device=info.device
    )
    dist.all_reduce(present, op=dist.ReduceOp.MAX)
    for param, has in zip(params, present.tolist(), strict=True):
        if not has:
            continue
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
        param.grad.div_(info.world_size)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
