"""VideoDiT architecture: presets vs diffusers, RoPE, pose conditioning, input checks."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from cospeech.errors import InputError
from cospeech.models import VIDEO_DIT_PRESETS, VideoDiT, VideoDiTConfig, load_video_dit_config
from cospeech.models.attention import attention_dtype
from cospeech.models.pose_encoder import PoseVideoEncoder
from cospeech.models.rope import apply_rope, rope_freqs

diffusers = pytest.importorskip("diffusers")


def randomise(model: torch.nn.Module, std: float = 0.2, seed: int = 0) -> None:
    """Random weights everywhere (the zero-initialised layers would hide bugs)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * std)


def tiny_inputs(config: VideoDiTConfig, frames: int = 3, batch: int = 1, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, config.in_dim, frames, 4, 6, generator=generator)
    pose = torch.rand(batch, 3, 1 + 4 * (frames - 1), 32, 48, generator=generator)
    ref_pose = torch.rand(batch, 3, 32, 48, generator=generator)
    return x, pose, ref_pose


WAN_DIFFUSERS_CONFIGS = {
    "wan2.1-t2v-1.3b": dict(num_attention_heads=12, ffn_dim=8960, num_layers=30, in_channels=16),
    "wan2.1-t2v-14b": dict(num_attention_heads=40, ffn_dim=13824, num_layers=40, in_channels=16),
    "wan2.1-i2v-14b": dict(
        num_attention_heads=40,
        ffn_dim=13824,
        num_layers=40,
        in_channels=36,
        image_dim=1280,
        added_kv_proj_dim=5120,
    ),
}


@pytest.mark.parametrize("preset", sorted(WAN_DIFFUSERS_CONFIGS))
def test_wan_preset_parameter_count_equals_diffusers(preset):
    with torch.device("meta"):
        reference = diffusers.WanTransformer3DModel(
            attention_head_dim=128,
            out_channels=16,
            text_dim=4096,
            freq_dim=256,
            **WAN_DIFFUSERS_CONFIGS[preset],
        )
        ours = VideoDiT(VIDEO_DIT_PRESETS[preset])
    expected = sum(p.numel() for p in reference.parameters())
    counts = ours.parameter_counts()
    assert counts["wan"] == expected
    pose_params = sum(
        p.numel()
        for name, p in ours.named_parameters()
        if name.startswith(("pose_encoder.", "ref_pose_encoder."))
    )
    assert counts["pose"] == pose_params > 0
    assert (preset == "wan2.1-i2v-14b") == hasattr(ours, "ref_pose_encoder")


def test_wan_key_names_follow_the_original_release():
    config = dataclasses.replace(VIDEO_DIT_PRESETS["tiny"], text_dim=8, image_dim=12)
    names = set(VideoDiT(config).state_dict())
    for key in (
        "patch_embedding.weight",
        "text_embedding.0.weight",
        "text_embedding.2.bias",
        "time_embedding.0.weight",
        "time_projection.1.weight",
        "blocks.1.self_attn.norm_q.weight",
        "blocks.0.cross_attn.k_img.weight",
        "blocks.0.cross_attn.norm_k_img.weight",
        "blocks.0.norm3.weight",
        "blocks.0.ffn.2.weight",
        "blocks.0.modulation",
        "head.head.weight",
        "head.modulation",
        "img_emb.proj.4.bias",
    ):
        assert key in names, key


def test_absent_paths_have_no_parameters():
    names = set(VideoDiT(VIDEO_DIT_PRESETS["tiny"]).state_dict())
    assert not any(
        n.startswith(("text_embedding", "img_emb")) or ".cross_attn." in n for n in names
    )
    assert not any(".norm3." in n for n in names)


def test_preset_loading_and_overrides():
    config = load_video_dit_config("demo", ["num_layers=3"])
    assert config.num_layers == 3 and config.dim == VIDEO_DIT_PRESETS["demo"].dim
    assert VIDEO_DIT_PRESETS["wan2.1-i2v-14b"].rope_axis_dims == (44, 42, 42)
    assert VIDEO_DIT_PRESETS["demo"].rope_axis_dims == (24, 20, 20)
    with pytest.raises(InputError):
        load_video_dit_config("no-such-preset")
    with pytest.raises(InputError):
        dataclasses.replace(VIDEO_DIT_PRESETS["tiny"], num_heads=5)


def test_rope_matches_complex_rotation():
    """Closed form: each channel pair is a complex number multiplied by exp(i * pos * w)."""
    head_dim, theta = 16, 10000.0
    dims = (head_dim - 2 * 2 * (head_dim // 6), 2 * (head_dim // 6), 2 * (head_dim // 6))
    frames = torch.tensor([3, 4])
    freqs = rope_freqs(frames, 2, 3, dims, theta, max_positions=64)
    x = torch.randn(1, 2 * 2 * 3, 2, head_dim, dtype=torch.float64)
    out = apply_rope(x.float(), freqs).double()
    expected = torch.empty_like(x)
    token = 0
    for f in frames.tolist():
        for h in range(2):
            for w in range(3):
                angles = []
                for pos, d in zip((f, h, w), dims, strict=True):
                    angles += [pos * theta ** (-2 * j / d) for j in range(d // 2)]
                rot = torch.polar(
                    torch.ones(len(angles), dtype=torch.float64),
                    torch.tensor(angles, dtype=torch.float64),
                )
                pairs = torch.view_as_complex(x[0, token].reshape(2, -1, 2).contiguous())
                expected[0, token] = torch.view_as_real(pairs * rot).reshape(2, head_dim)
                token += 1
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_rope_positions_beyond_table_are_refused():
    with pytest.raises(InputError, match="RoPE table"):
        rope_freqs(torch.tensor([1023, 1024]), 2, 2, (4, 2, 2), 1e4, max_positions=1024)


def test_forward_shape_and_offset_changes_output():
    config = VIDEO_DIT_PRESETS["tiny"]
    model = VideoDiT(config).eval()
    randomise(model)
    x, pose, ref_pose = tiny_inputs(config)
    with torch.no_grad():
        out = model(x, torch.tensor([300.0]), pose=pose, ref_pose=ref_pose)
        shifted = model(x, torch.tensor([300.0]), pose=pose, ref_pose=ref_pose, frame_offset=2)
    assert out.shape == (1, config.out_dim, 3, 4, 6) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert not torch.allclose(out, shifted)


def test_bfloat16_weights_keep_a_float32_stream_and_stay_close_to_float32():
    assert attention_dtype(torch.bfloat16, torch.device("cpu")) == torch.float32
    assert attention_dtype(torch.bfloat16, torch.device("cuda")) == torch.bfloat16
    config = VIDEO_DIT_PRESETS["tiny"]
    model = VideoDiT(config).eval()
    randomise(model)
    half = VideoDiT(config).eval()
    half.load_state_dict(model.state_dict())
    half.to(torch.bfloat16)
    x, pose, ref_pose = tiny_inputs(config)
    streams: list[torch.dtype] = []
    half.blocks[0].register_forward_hook(lambda m, i, o: streams.append(o.dtype))
    with torch.no_grad():
        full = model(x, torch.tensor([300.0]), pose=pose, ref_pose=ref_pose)
        out = half(x, torch.tensor([300.0]), pose=pose, ref_pose=ref_pose)
    assert streams == [torch.float32] and out.dtype == torch.float32
    # bfloat16 weights round at 2^-9: the output moves by about that, not by O(1)
    relative = (out - full).norm() / full.norm()
    assert 0 < relative.item() < 0.03


def test_fresh_pose_encoders_add_exactly_zero():
    config = VIDEO_DIT_PRESETS["tiny"]
    model = VideoDiT(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():  # random Wan part, fresh pose encoders
            if not name.startswith(("pose_encoder", "ref_pose_encoder")):
                param.normal_(0, 0.2)
    x, pose, ref_pose = tiny_inputs(config)
    with torch.no_grad():
        # Exactly zero by construction (zero weights and bias, finite inputs): what the
        # forward adds to the tokens and to frame 0's conditioning channels.
        assert not model.pose_encoder(pose).any() and not model.ref_pose_encoder(ref_pose).any()
        plain = model(x, torch.tensor([500.0]))
        posed = model(x, torch.tensor([500.0]), pose=pose, ref_pose=ref_pose)
    # The two forwards then see equal numbers, but in tensors built by other ops (cat, add):
    # fp32 tolerance, 1e-5 x the output scale (~3 rms; 4e-6 seen for another batch size).
    torch.testing.assert_close(posed, plain, rtol=1e-5, atol=3e-5)
    randomise(model)
    with torch.no_grad():
        plain = model(x, torch.tensor([500.0]))
        posed = model(x, torch.tensor([500.0]), pose=pose, ref_pose=ref_pose)
    assert (posed - plain).abs().max() > 1e-3  # trained encoders do condition the model


def test_pose_encoder_is_chunk_local_in_time():
    """Encoding chunk by chunk (1+4k frames, then 4k) equals slicing the whole encoding."""
    encoder = PoseVideoEncoder(3, (4, 8), out_dim=6, time_stride=4)
    randomise(encoder)
    pose = torch.rand(1, 3, 1 + 4 * 6, 16, 16)
    with torch.no_grad():
        whole = encoder(pose)
        parts = [encoder(pose[:, :, :9]), encoder(pose[:, :, 9:21]), encoder(pose[:, :, 21:])]
    assert whole.shape == (1, 6, 7, 4, 4)
    # Convolutions over other lengths may use other kernels: 1e-5 x the output scale (~0.5
    # rms; 8e-7 seen for another batch size).
    torch.testing.assert_close(torch.cat(parts, dim=2), whole, rtol=1e-5, atol=5e-6)
    with pytest.raises(InputError, match="frames"):
        encoder(pose[:, :, :7])


def test_ref_pose_goes_into_conditioning_channels_of_frame_zero(single_thread):
    """The reference pose acts like an edit of x[:, out_dim:, 0] and nothing else."""
    config = VIDEO_DIT_PRESETS["tiny"]
    model = VideoDiT(config).eval()
    randomise(model)
    x, _, ref_pose = tiny_inputs(config)
    with torch.no_grad():
        encoded = model.ref_pose_encoder(ref_pose)
        edited = x.clone()
        edited[:, config.out_dim :, 0] += encoded
        expected = model(edited, torch.tensor([700.0]))
        out = model(x, torch.tensor([700.0]), ref_pose=ref_pose)
        later_chunk = model(x, torch.tensor([700.0]), ref_pose=ref_pose, frame_offset=3)
        later_plain = model(x, torch.tensor([700.0]), frame_offset=3)
    # Equal inputs built by other ops (cat vs in-place add): 1e-5 x the output scale (~2 rms).
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=2e-5)
    # Exact: past frame 0 the reference pose is not used at all, so both are the same call
    # on the same tensors, on one thread (the single_thread fixture) in one process.
    torch.testing.assert_close(later_chunk, later_plain, rtol=0, atol=0)


def test_bad_inputs_raise_input_error():
    config = VIDEO_DIT_PRESETS["tiny"]
    model = VideoDiT(config).eval()
    x, pose, ref_pose = tiny_inputs(config)
    t = torch.tensor([10.0])
    with pytest.raises(InputError, match="x: expected"):
        model(x[:, :20], t)
    with pytest.raises(InputError, match="context given"):
        model(x, t, context=torch.zeros(1, 4, 8))
    with pytest.raises(InputError, match="pose"):
        model(x, t, pose=pose[..., :16])
    with pytest.raises(InputError, match="ref_pose"):
        model(x, t, ref_pose=ref_pose[..., :16])
    with pytest.raises(InputError, match="attention"):
        model(x, t, attention="banana")
    with pytest.raises(InputError, match="timesteps"):
        model(x, torch.tensor([1.0, 2.0]))
    text_model = VideoDiT(dataclasses.replace(config, text_dim=8))
    with pytest.raises(InputError, match="context is required"):
        text_model(x, t)
