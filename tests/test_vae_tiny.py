"""TinyVideoVAE: shapes, causality, streaming == one-piece, checkpoints, and a toy fit."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from cospeech.errors import CheckpointError, InputError
from cospeech.latent_geometry import latent_frames, video_frames
from cospeech.models.vae import TinyVideoVAE, VideoVAE
from cospeech.models.vae.layers import (
    CausalState,
    CausalTimeMix,
    TimeDown,
    TimeUp,
    depth_to_space,
    space_to_depth,
)
from cospeech.models.vae.loss import vae_loss

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def vae() -> TinyVideoVAE:
    torch.manual_seed(0)
    model = TinyVideoVAE.from_preset("tiny").eval()
    # Non-trivial statistics, so that normalisation is exercised both ways.
    model.set_latent_statistics(torch.tensor([0.1, -0.2, 0.3, 0.0]), torch.tensor([0.5, 2.0, 1, 3]))
    return model


def smooth_video(batch: int = 2, frames: int = 9, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Moving coloured blobs on a gradient background, in [-1, 1]: ``[B, 3, F, H, W]``."""
    gen = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    video = torch.empty(batch, 3, frames, size, size)
    for b in range(batch):
        colour = torch.rand(3, 1, 1, generator=gen) * 1.6 - 0.8
        start, velocity = (
            torch.rand(2, generator=gen) - 0.5,
            (torch.rand(2, generator=gen) - 0.5) / 8,
        )
        for f in range(frames):
            cx, cy = start + f * velocity
            blob = torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 0.1)
            background = 0.4 * xs + 0.2 * ys - 0.3
            video[b, :, f] = (background + blob * (colour - background)).clamp(-1, 1)
    return video


@torch.no_grad()
def test_shapes_and_range(vae):
    frames = smooth_video()
    latents = vae.encode(frames)
    assert isinstance(vae, VideoVAE)
    assert latents.shape == (2, 4, 3, 4, 4) == vae.latent_shape(frames.shape)
    assert latents.dtype == torch.float32
    out = vae.decode(latents)
    assert out.shape == frames.shape
    assert float(out.abs().max()) <= 1.0
    assert latent_frames(81) == 21 and video_frames(21) == 81
    image = frames[:, :, :1]  # a single frame (the reference image) is a 1-frame video
    assert vae.encode(image).shape == (2, 4, 1, 4, 4)
    assert vae.decode(vae.encode(image)).shape == image.shape
    assert (vae.time_stride, vae.space_stride, vae.latent_channels) == (4, 8, 4)


@pytest.mark.parametrize(
    "shape", [(1, 3, 8, 32, 32), (1, 3, 9, 30, 32), (1, 1, 9, 32, 32), (3, 9, 32, 32)]
)
def test_rejects_bad_frames(vae, shape):
    with pytest.raises(InputError):
        vae.encode(torch.zeros(shape))


def test_rejects_bad_latents_and_chunks(vae):
    with pytest.raises(InputError):
        vae.decode(torch.zeros(1, 5, 2, 4, 4))
    stream = vae.encode_stream()
    with pytest.raises(InputError, match="1 \\+ 4m"):
        stream.push(torch.zeros(1, 3, 4, 32, 32))
    stream.push(torch.zeros(1, 3, 5, 32, 32))
    with pytest.raises(InputError, match="4m"):
        stream.push(torch.zeros(1, 3, 5, 32, 32))


def input_gradient(output: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """``d <w, output> / d inputs`` for a fixed random cotangent ``w`` shaped like ``output``."""
    weights = torch.randn(output.shape, generator=torch.Generator().manual_seed(0))
    return torch.autograd.grad(output, inputs, weights, retain_graph=True)[0]


def test_encoder_and_decoder_are_causal(vae):
    """Structural check: the gradient of early outputs w.r.t. later inputs is exactly zero,
    since no operation reads a later frame (each contribution to it is an exact zero); the
    gradient w.r.t. the frames they do read is not."""
    frames = smooth_video(batch=1).requires_grad_()  # frames 5..8 make latent frame 2
    latents, _ = vae.encode_posterior(frames)
    early = input_gradient(latents[:, :, :2], frames)
    late = input_gradient(latents[:, :, 2:], frames)
    assert not early[:, :, 5:].any()
    assert all(early[:, :, f].any() for f in range(5))
    assert all(late[:, :, f].any() for f in range(5, 9))
    normalised = torch.randn(1, 4, 3, 4, 4).requires_grad_()
    video = vae.decode_raw(vae.denormalize(normalised))  # unclamped, so no gradient is cut
    early = input_gradient(video[:, :, :5], normalised)  # frames 0..4 from latents 0, 1
    late = input_gradient(video[:, :, 5:], normalised)
    assert not early[:, :, 2].any()
    assert early[:, :, 0].any() and early[:, :, 1].any() and late[:, :, 2].any()


@pytest.mark.parametrize("chunks", [(1, 1, 1, 1, 1, 1), (2, 1, 3), (3, 3), (6,)])
def test_streaming_decode_equals_one_piece_decode(vae, chunks):
    gen = torch.Generator().manual_seed(1)
    latents = torch.randn(2, 4, 6, 4, 5, generator=gen)
    with torch.no_grad():
        reference = vae.decode_raw(vae.denormalize(latents)).clamp(-1, 1)
        stream = vae.decode_stream()
        parts = [stream.push(part) for part in latents.split(list(chunks), dim=2)]
    assert parts[0].shape[2] == 1 + 4 * (chunks[0] - 1)
    # Convolutions over other frame counts may pick other kernels: fp32, 1e-5 x the output
    # scale (frames in [-1, 1]; 3e-7 seen for another batch size).
    torch.testing.assert_close(torch.cat(parts, dim=2), reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(vae.decode(latents), reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("chunks", [(1, 4, 4, 4, 4), (5, 12), (9, 8), (17,)])
def test_streaming_encode_equals_one_piece_encode(vae, chunks):
    frames = smooth_video(batch=2, frames=17, size=24)
    with torch.no_grad():
        mean, _ = vae.encode_posterior(frames)
        reference = vae.normalize(mean)
        stream = vae.encode_stream()
        parts = [stream.push(part) for part in frames.split(list(chunks), dim=2)]
    # As for decoding: fp32, 1e-5 x the latents' scale (|z| < 2, rms 0.45).
    torch.testing.assert_close(torch.cat(parts, dim=2), reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(vae.encode(frames), reference, atol=1e-5, rtol=0)


def test_normalisation_uses_the_stored_statistics(vae):
    frames = smooth_video(batch=1, frames=5)
    with torch.no_grad():
        mean, _ = vae.encode_posterior(frames)
        expected = (mean - vae.latents_mean.view(1, -1, 1, 1, 1)) / vae.latents_std.view(
            1, -1, 1, 1, 1
        )
        torch.testing.assert_close(vae.encode(frames), expected, atol=1e-6, rtol=0)
        torch.testing.assert_close(vae.denormalize(vae.normalize(mean)), mean)
    with pytest.raises(InputError):
        vae.set_latent_statistics(torch.zeros(4), torch.zeros(4))


def test_fitted_statistics_normalise_the_latents():
    torch.manual_seed(6)
    model = TinyVideoVAE.from_preset("tiny").eval()
    clips = [smooth_video(batch=2, frames=5, seed=s) for s in range(3)]
    mean, std = model.fit_latent_statistics(clips)
    assert mean.shape == std.shape == (4,)
    with torch.no_grad():
        latents = torch.cat([model.encode(clip) for clip in clips])
    per_channel = latents.transpose(0, 1).flatten(1).double()
    torch.testing.assert_close(
        per_channel.mean(1), torch.zeros(4, dtype=torch.float64), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        per_channel.std(1, unbiased=False), torch.ones(4, dtype=torch.float64), atol=1e-4, rtol=0
    )


def test_causal_time_mix_equals_a_padded_conv3d():
    torch.manual_seed(2)
    layer = CausalTimeMix(3, 5, kernel=3)
    video = torch.randn(2, 3, 6, 4, 4)  # [B, C, F, H, W]
    # Reference: Conv3d with kernel (3, 1, 1) after two zero frames in front.
    weight = layer.proj.weight.view(5, 3, 3).permute(0, 2, 1).reshape(5, 3, 3, 1, 1)
    expected = F.conv3d(F.pad(video, (0, 0, 0, 0, 2, 0)), weight, layer.proj.bias)
    stack = video.permute(0, 2, 3, 4, 1).flatten(0, 1)
    got = layer(stack, CausalState(2)).view(2, 6, 4, 4, 5).permute(0, 4, 1, 2, 3)
    # A linear layer vs a convolution (other summation order): fp32, 1e-5 x the output scale
    # (|out| < 1.5; 1.2e-7 seen); a misplaced kernel tap changes values by O(0.1).
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_time_resamplers_group_frames_as_wan_does():
    # TimeDown with an identity-like projection shows which frames share a latent frame.
    down = TimeDown(1, 4, stride=4)
    with torch.no_grad():
        down.proj.weight.copy_(torch.eye(4))
        down.proj.bias.zero_()
    frames = torch.arange(1, 10, dtype=torch.float32).view(9, 1, 1, 1)  # frame index + 1
    groups = down(frames, CausalState(1)).view(3, 4)
    expected = torch.tensor([[0, 0, 0, 1], [2, 3, 4, 5], [6, 7, 8, 9]], dtype=torch.float32)
    torch.testing.assert_close(groups, expected)
    up = TimeUp(1, 1, stride=4)
    with torch.no_grad():
        up.proj.weight.copy_(torch.arange(1, 5, dtype=torch.float32).view(4, 1))
        up.proj.bias.zero_()
    out = up(torch.ones(3, 1, 1, 1), CausalState(1)).flatten()
    torch.testing.assert_close(out, torch.tensor([4, 1, 2, 3, 4, 1, 2, 3, 4], dtype=torch.float32))


def test_space_to_depth_round_trip():
    x = torch.randn(3, 8, 6, 5)
    y = space_to_depth(x)
    assert y.shape == (3, 4, 3, 20)
    torch.testing.assert_close(y[0, 1, 2, :5], x[0, 2, 4])
    torch.testing.assert_close(depth_to_space(y), x)


def test_save_and_load_round_trip(vae, tmp_path):
    vae.save_pretrained(tmp_path / "vae")
    assert json.loads((tmp_path / "vae" / "config.json").read_text())["widths"] == [8, 16, 16]
    loaded = TinyVideoVAE.from_pretrained(tmp_path / "vae")
    for name, value in vae.state_dict().items():  # saved and loaded bytes: exact
        assert torch.equal(loaded.state_dict()[name], value), name
    latents = torch.randn(1, 4, 2, 4, 4)
    with torch.no_grad():
        # Two instances (loaded tensors sit elsewhere in memory, which may steer oneDNN to
        # other kernels): fp32, 1e-5 x the frames' scale [-1, 1].
        torch.testing.assert_close(loaded.decode(latents), vae.decode(latents), atol=1e-5, rtol=0)
    vae.save_pretrained(tmp_path / "half", dtype=torch.float16)
    weights = load_file(str(tmp_path / "half" / "model.safetensors"))
    assert all(t.dtype == torch.float16 for t in weights.values())
    half = TinyVideoVAE.from_pretrained(tmp_path / "half")
    with torch.no_grad():
        torch.testing.assert_close(half.decode(latents), vae.decode(latents), atol=2e-2, rtol=0)


def test_loading_reports_bad_checkpoints(vae, tmp_path):
    folder = tmp_path / "vae"
    vae.save_pretrained(folder)
    weights = load_file(str(folder / "model.safetensors"))
    weights.pop("decoder.head.conv.weight")
    weights["extra.weight"] = torch.zeros(1)
    weights["decoder.conv_in.conv.bias"] = torch.zeros(3)
    save_file(weights, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError) as info:
        TinyVideoVAE.from_pretrained(folder)
    message = str(info.value)
    assert "decoder.head.conv.weight" in message and "extra.weight" in message
    assert "decoder.conv_in.conv.bias" in message
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config\.json"):
        TinyVideoVAE.from_pretrained(folder)


def test_tiny_preset_learns_to_reconstruct_a_toy_batch():
    torch.manual_seed(3)
    model = TinyVideoVAE.from_preset("tiny")
    frames = smooth_video(batch=2, frames=5, size=32, seed=4)
    # The best constant-per-video prediction (its mean colour) as a yardstick.
    mean_colour = frames.mean(dim=(2, 3, 4), keepdim=True).expand_as(frames)
    baseline = float((frames - mean_colour).abs().mean())
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        start = float((model(frames, sample=False).recon - frames).abs().mean())
    for _ in range(60):
        out = model(frames, generator=gen)
        loss = vae_loss(frames, out.recon, out.mean, out.logvar).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        end = float((model.decode(model.encode(frames)) - frames).abs().mean())
    assert end < 0.25 * start
    assert end < 0.5 * baseline
