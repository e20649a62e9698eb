"""Low-rank adapters (LoRA) through peft, for fine-tuning large pretrained models."""

from __future__ import annotations

import copy

from torch import nn

from cospeech.errors import InputError
from cospeech.train.config import LoRAConfig


def apply_lora(model: nn.Module, config: LoRAConfig) -> nn.Module:
    """Inject LoRA adapters into the linear layers whose names end with a target name.

    Only the adapter weights stay trainable, and every parameter of the modules named in
    ``train_modules``; the adapters' B matrices start at zero, so the model's output is
    unchanged until training moves them. ``alpha`` 0 means ``alpha = rank``.
    """
    from peft import LoraConfig, inject_adapter_in_model

    targets = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and _named(name, config.target_modules)
    ]
    if not targets:
        raise InputError(f"LoRA: no linear layer matches {list(config.target_modules)}")
    full = [name for name, _ in model.named_modules() if _named(name, config.train_modules)]
    missing = [t for t in config.train_modules if not any(_named(n, (t,)) for n in full)]
    if missing:
        raise InputError(f"train.lora.train_modules: no module named {missing}")
    peft_config = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha or config.rank,
        lora_dropout=config.dropout,
        target_modules=targets,
    )
    model = inject_adapter_in_model(peft_config, model)
    for name, param in model.named_parameters():
        in_full = any(name.startswith(f"{module}.") for module in full)
        param.requires_grad_("lora_" in name or in_full)
    return model


def _named(name: str, names: tuple[str, ...]) -> bool:
    """Whether module ``name`` is one of ``names`` or ends with ``.<one of them>``."""
    return any(name == t or name.endswith(f".{t}") for t in names)


def without_lora(model: nn.Module) -> nn.Module:
    """``model`` itself when it has no LoRA adapters, else a copy with every adapter merged
    into its base linear layer (plain ``nn.Linear`` again): what ``save_pretrained`` and the
    loaders expect (the original parameter names)."""
    from peft.tuners.lora import LoraLayer

    if not any(isinstance(m, LoraLayer) for m in model.modules()):
        return model
    merged = copy.deepcopy(model)
    for name, module in list(merged.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(merged.get_submodule(parent), child, module.get_base_layer())
    return merged
