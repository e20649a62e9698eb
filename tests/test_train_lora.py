"""Exporting a LoRA-adapted model: adapters merged back into plain linear layers.

Tolerance: the merged linear computes ``(W + s B A) x`` in one matmul instead of ``W x + s
B (A x)``: the same fp32 sums in another order, ~1e-7 on outputs of order 1, so 1e-5.
"""

from __future__ import annotations

import torch

from cospeech.models import VIDEO_DIT_PRESETS, VideoDiT
from cospeech.train.config import LoRAConfig
from cospeech.train.lora import apply_lora, without_lora


def test_without_lora_merges_adapters_into_the_original_layout(tmp_path):
    torch.manual_seed(0)
    model = VideoDiT(VIDEO_DIT_PRESETS["tiny"])
    plain_keys = set(model.state_dict())
    adapted = apply_lora(model, LoRAConfig(rank=2))
    with torch.no_grad():
        for name, param in adapted.named_parameters():
            param.add_(torch.randn_like(param) * (0.1 if "lora_" in name else 0.02))
    x = torch.randn(1, adapted.config.in_dim, 3, 4, 4)
    t = torch.tensor([500.0])
    with torch.no_grad():
        want = adapted(x, t)
        merged = without_lora(adapted)
        got = merged(x, t)
    assert set(merged.state_dict()) == plain_keys
    assert any("lora_" in name for name in adapted.state_dict())  # the trained model is kept
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    merged.save_pretrained(tmp_path / "m")
    loaded = VideoDiT.from_pretrained(tmp_path / "m")
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t), want, rtol=1e-5, atol=1e-5)


def test_a_model_without_adapters_is_returned_as_is():
    model = VideoDiT(VIDEO_DIT_PRESETS["tiny"])
    assert without_lora(model) is model
