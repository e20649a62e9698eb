"""Checkpoint I/O: diffusers and original Wan layouts, sharding, clear errors, no pickle."""

from __future__ import annotations

import json
import logging
import os
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from cospeech.errors import CheckpointError
from cospeech.models import VIDEO_DIT_PRESETS, VideoDiT, diffusers_to_wan_key
from cospeech.models.dit import POSE_ENCODER_PREFIXES

diffusers = pytest.importorskip("diffusers")

TEXT_DIM, IMAGE_DIM = 20, 24


def randomise(model: torch.nn.Module, std: float = 0.3, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * std)


def small_diffusers_wan(i2v: bool) -> torch.nn.Module:
    model = diffusers.WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=36 if i2v else 16,
        out_channels=16,
        text_dim=TEXT_DIM,
        freq_dim=16,
        ffn_dim=40,
        num_layers=2,
        image_dim=IMAGE_DIM if i2v else None,
        added_kv_proj_dim=24 if i2v else None,
    )
    randomise(model)
    return model.eval()


def wan_inputs(in_dim: int, i2v: bool, seed: int = 3):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(2, in_dim, 3, 6, 8, generator=generator)
    t = torch.tensor([120.0, 870.0])
    # diffusers' I2V cross-attention assumes exactly 512 text tokens after the image tokens
    context = torch.randn(2, 512 if i2v else 9, TEXT_DIM, generator=generator)
    clip = torch.randn(2, 7, IMAGE_DIM, generator=generator) if i2v else None
    return x, t, context, clip


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def assert_same_model_output(got: torch.Tensor, want: torch.Tensor) -> None:
    """Outputs of two instances holding bit-identical fp32 weights. They may still differ in
    the last bits: BLAS/oneDNN pick kernels (and summation orders) by CPU, thread count and
    memory alignment, and loaded tensors are laid out differently. Through the tiny models'
    layers that is ~1e-6 relative of outputs of size ~10 (1.1e-5 seen for another batch
    size, 9.5e-6 between instances on an AMD EPYC), hence atol 1e-4 = 1e-5 x the output
    scale; one wrong or misplaced weight changes outputs by O(1)."""
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("i2v", [False, True], ids=["t2v", "i2v"])
def test_diffusers_checkpoint_gives_the_same_output(tmp_path, i2v, caplog):
    reference = small_diffusers_wan(i2v)
    reference.save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING):
        ours = VideoDiT.from_pretrained(tmp_path)
    assert "pose_encoder" in caplog.text  # absent pose weights are announced
    assert ours.config.has_image_tokens == i2v and ours.config.in_dim == (36 if i2v else 16)
    x, t, context, clip = wan_inputs(ours.config.in_dim, i2v)
    with torch.no_grad():
        expected = reference(x, t, context, clip, return_dict=False)[0]
        out = ours(x, t, context, clip)
    assert out.shape == expected.shape
    assert relative_error(out, expected) <= 1e-4
    # the whole pipeline folder layout (transformer/ subfolder) works too
    pipeline_folder = tmp_path / "pipeline"
    reference.save_pretrained(pipeline_folder / "transformer")
    again = VideoDiT.from_pretrained(pipeline_folder)
    for name, param in ours.state_dict().items():  # bytes copied from the same files: exact
        if not name.startswith(POSE_ENCODER_PREFIXES):  # fresh (zero-output) pose encoders
            assert torch.equal(again.state_dict()[name], param), name
    with torch.no_grad():
        assert_same_model_output(again(x, t, context, clip), out)


def test_every_diffusers_key_maps_to_a_wan_key():
    reference = small_diffusers_wan(True)
    mapped = {diffusers_to_wan_key(k) for k in reference.state_dict()}
    assert None not in mapped
    assert diffusers_to_wan_key("blocks.17.attn2.add_k_proj.weight") == (
        "blocks.17.cross_attn.k_img.weight"
    )
    assert diffusers_to_wan_key("scale_shift_table") == "head.modulation"
    assert diffusers_to_wan_key("blocks.3.scale_shift_table") == "blocks.3.modulation"


def test_original_layout_round_trip_single_and_sharded(tmp_path):
    config = VIDEO_DIT_PRESETS["tiny"]
    model = VideoDiT(config).eval()
    randomise(model)
    model.save_pretrained(tmp_path / "single")
    saved = json.loads((tmp_path / "single" / "config.json").read_text())
    assert saved["_class_name"] == "WanModel" and saved["dim"] == config.dim
    loaded = VideoDiT.from_pretrained(tmp_path / "single")
    assert loaded.config == config
    for name, param in model.state_dict().items():  # saved and loaded bytes: exact
        torch.testing.assert_close(loaded.state_dict()[name], param, rtol=0, atol=0)

    # shard it the way the Wan 14B release is shipped: files + *.safetensors.index.json
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    state = load_file(str(tmp_path / "single" / "model.safetensors"))
    names = sorted(state)
    weight_map = {}
    for index, part in enumerate((names[::2], names[1::2])):
        file = f"diffusion_pytorch_model-{index + 1:05d}-of-00002.safetensors"
        save_file({n: state[n] for n in part}, str(sharded / file))
        weight_map.update(dict.fromkeys(part, file))
    (sharded / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )
    (sharded / "config.json").write_text((tmp_path / "single" / "config.json").read_text())
    (sharded / "Wan2.1_VAE.pth").write_bytes(b"not ours to open")  # siblings are ignored
    resharded = VideoDiT.from_pretrained(sharded, dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in resharded.parameters())
    assert not any(p.is_meta for p in resharded.parameters())

    full = VideoDiT.from_pretrained(sharded)
    for name, param in model.state_dict().items():  # the shards' bytes: exact
        torch.testing.assert_close(full.state_dict()[name], param, rtol=0, atol=0)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, config.in_dim, 2, 4, 4, generator=generator)
    pose = torch.rand(1, 3, 5, 32, 32, generator=generator)
    with torch.no_grad():
        expected = model(x, torch.tensor([400.0]), pose=pose)
        out = full(x, torch.tensor([400.0]), pose=pose)
    assert_same_model_output(out, expected)


def test_original_wan_config_without_cospeech_section(tmp_path):
    """A config.json as Wan-AI ships it (no "cospeech" entry, text_dim implied)."""
    with torch.device("meta"):
        reference = VideoDiT(VIDEO_DIT_PRESETS["wan2.1-t2v-1.3b"])
    wan_json = {
        "_class_name": "WanModel",
        "_diffusers_version": "0.30.0",
        "dim": 1536,
        "eps": 1e-06,
        "ffn_dim": 8960,
        "freq_dim": 256,
        "in_dim": 16,
        "model_type": "t2v",
        "num_heads": 12,
        "num_layers": 30,
        "out_dim": 16,
        "text_len": 512,
    }
    (tmp_path / "config.json").write_text(json.dumps(wan_json))
    from cospeech.models.checkpoint import config_from_wan

    config = config_from_wan(wan_json)
    assert config == VIDEO_DIT_PRESETS["wan2.1-t2v-1.3b"]
    assert reference.parameter_counts()["wan"] == 1_418_996_800


@pytest.fixture()
def saved_tiny(tmp_path):
    model = VideoDiT(VIDEO_DIT_PRESETS["tiny"])
    model.save_pretrained(tmp_path)
    return tmp_path


def test_wrong_shape_is_one_clear_error(saved_tiny):
    state = load_file(str(saved_tiny / "model.safetensors"))
    state["blocks.0.self_attn.q.weight"] = torch.zeros(3, 3)
    save_file(state, str(saved_tiny / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"wrong shapes: blocks\.0\.self_attn\.q\.weight"):
        VideoDiT.from_pretrained(saved_tiny)


def test_missing_and_unexpected_keys_are_listed(saved_tiny):
    state = load_file(str(saved_tiny / "model.safetensors"))
    del state["head.modulation"]
    del state["blocks.1.ffn.0.bias"]
    state["blocks.0.mystery.weight"] = torch.zeros(2)
    save_file(state, str(saved_tiny / "model.safetensors"))
    with pytest.raises(CheckpointError) as info:
        VideoDiT.from_pretrained(saved_tiny)
    message = str(info.value)
    assert "missing keys: blocks.1.ffn.0.bias, head.modulation" in message
    assert "unexpected keys: blocks.0.mystery.weight" in message


def test_partly_present_pose_encoder_is_an_error(saved_tiny):
    state = load_file(str(saved_tiny / "model.safetensors"))
    del state["pose_encoder.proj.weight"]
    save_file(state, str(saved_tiny / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing keys: pose_encoder\.proj\.weight"):
        VideoDiT.from_pretrained(saved_tiny)


class _Tripwire:
    """Unpickling this object creates a marker file: proof that a pickle was opened."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("name", ["diffusion_pytorch_model.bin", "model.pt", "weights.pth"])
def test_pickle_checkpoints_are_refused_unopened(tmp_path, name):
    marker = tmp_path / "unpickled"
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "WanModel", "dim": 64}))
    (folder / name).write_bytes(pickle.dumps(_Tripwire(str(marker))))
    for target in (folder, folder / name):
        with pytest.raises(CheckpointError, match="pickle"):
            VideoDiT.from_pretrained(target)
    assert not os.path.exists(marker)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no such folder"):
        VideoDiT.from_pretrained(tmp_path / "absent")
    with pytest.raises(CheckpointError, match=r"config\.json"):
        VideoDiT.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"no \.safetensors"):
        VideoDiT.from_pretrained(tmp_path)
    save_file({"x": torch.zeros(1)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="JSON"):
        VideoDiT.from_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "Other"}))
    with pytest.raises(CheckpointError, match="neither"):
        VideoDiT.from_pretrained(tmp_path)


def test_corrupt_safetensors_is_a_checkpoint_error(saved_tiny):
    (saved_tiny / "model.safetensors").write_bytes(b"\x10\x00garbage")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        VideoDiT.from_pretrained(saved_tiny)
