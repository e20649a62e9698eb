"""EMA, LoRA injection and run-config loading of the trainer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cospeech.errors import InputError
from cospeech.train.config import LoRAConfig
from cospeech.train.ema import EMA
from cospeech.train.lora import apply_lora
from cospeech.train.run import load_run_config


def test_ema_matches_closed_form():
    model = nn.Linear(3, 2)
    start = model.weight.detach().clone()
    ema = EMA(model, decay=0.9)
    targets = [torch.full_like(start, float(v)) for v in (1.0, 2.0, 3.0)]
    expected = start.clone()
    for target in targets:
        with torch.no_grad():
            model.weight.copy_(target)
        ema.update(model)
        expected = 0.9 * expected + 0.1 * target
    torch.testing.assert_close(ema.state_dict()["weight"], expected, rtol=1e-6, atol=1e-6)
    ema.copy_to(model)
    torch.testing.assert_close(model.weight, expected, rtol=1e-6, atol=1e-6)


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(6, 6)
        self.k = nn.Linear(6, 6)
        self.ffn = nn.Sequential(nn.Linear(6, 12), nn.GELU(), nn.Linear(12, 6))

    def forward(self, x):
        return self.ffn(self.q(x) + self.k(x))


def test_lora_starts_as_identity_and_trains_only_adapters(single_thread):
    torch.manual_seed(0)
    model = Block()
    x = torch.randn(4, 6)
    before = model(x).detach()
    model = apply_lora(model, LoRAConfig(rank=2, target_modules=("q", "ffn.0")))
    # Exact: the adapters add B (A x) with B = 0, i.e. exact zeros, to the same linear layers
    # called on the same tensors (one thread, one process), so every number is the same.
    torch.testing.assert_close(model(x), before, rtol=0, atol=0)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert any(n.startswith("q.") for n in trainable) and any("ffn.0" in n for n in trainable)
    assert not any(n.startswith("k.") for n in trainable)
    with pytest.raises(InputError):
        apply_lora(Block(), LoRAConfig(rank=2, target_modules=("nothing",)))


def test_run_config_rejects_unknown_stage():
    with pytest.raises(InputError, match="unknown stage"):
        load_run_config("no-such-stage", None, [])


@pytest.mark.parametrize(
    ("override", "message"),
    [("train.optim.decay=linear", "decay must be one of"),
     ("train.optim.min_lr_ratio=2", "min_lr_ratio must be in"),
     ("train.optim.decay_start=-5", "decay_start must be >= 0")],
)  # fmt: skip
def test_run_config_rejects_bad_learning_rate_schedule(override, message):
    with pytest.raises(InputError, match=message):
        load_run_config("teacher", None, [override])
