"""LPIPS, ArcFace and SyncNet (``cospeech eval lpips|arcface|sync``) and the MFCC.

No public weights are available here, so every network gets weights the test creates in the
public key layout, saved to a file and read back through the loader (the outputs must equal
the in-memory model's). The formulas are checked against slow references written here from
the published definitions: LPIPS on a tiny backbone, MFCC from python_speech_features'
definition with an explicit DFT and DCT, SyncNet's offset search with a dense distance
table; ArcFace's alignment against the template and scikit-image's similarity estimate.
"""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image
from safetensors.torch import save_file

from cospeech.audio.mfcc import INT16_SCALE, MfccConfig, mel_triangles, mfcc
from cospeech.cli import main
from cospeech.errors import CheckpointError, InputError
from cospeech.eval.networks import arcface, lpips, syncnet
from cospeech.media.video import read_video, write_video
from media_fixture import carphone

# ---------------------------------------------------------------- MFCC


def _slow_mfcc(signal: np.ndarray, config: MfccConfig) -> np.ndarray:
    """python_speech_features.mfcc written out: loops, an explicit DFT and DCT-II."""
    x = np.append(signal[0], signal[1:] - 0.97 * signal[:-1])
    win, hop, nfft = 400, 160, 512
    count = 1 if len(x) <= win else 1 + math.ceil((len(x) - win) / hop)
    x = np.concatenate([x, np.zeros((count - 1) * hop + win - len(x))])
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    inv = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    points = [inv(mel(0) + i * (mel(8000) - mel(0)) / 27) for i in range(28)]
    bins = [math.floor(513 * p / 16000) for p in points]
    out = np.zeros((count, 13))
    for i in range(count):
        frame = x[i * hop : i * hop + win]
        n = np.arange(win)
        power = (
            np.array(
                [
                    (frame @ np.cos(2 * np.pi * k * n / nfft)) ** 2
                    + (frame @ np.sin(2 * np.pi * k * n / nfft)) ** 2
                    for k in range(257)
                ]
            )
            / nfft
        )
        logs = []
        for j in range(26):
            total = 0.0
            for k in range(bins[j], bins[j + 1]):
                total += power[k] * (k - bins[j]) / (bins[j + 1] - bins[j])
            for k in range(bins[j + 1], bins[j + 2]):
                total += power[k] * (bins[j + 2] - k) / (bins[j + 2] - bins[j + 1])
            logs.append(math.log(total))
        for q in range(13):
            scale = math.sqrt(1 / 26) if q == 0 else math.sqrt(2 / 26)
            c = scale * sum(logs[m] * math.cos(math.pi * q * (2 * m + 1) / 52) for m in range(26))
            out[i, q] = c * (1 + 11 * math.sin(math.pi * q / 22))
        out[i, 0] = math.log(power.sum())
    return out


def test_mfcc_matches_its_definition_written_out():
    signal = np.random.default_rng(0).normal(size=1000) * 3000
    fast = mfcc(signal)
    assert fast.shape == (1 + math.ceil((1000 - 400) / 160), 13)  # 5 frames, the last padded
    np.testing.assert_allclose(fast, _slow_mfcc(signal, MfccConfig()), rtol=1e-9, atol=1e-9)


def test_mfcc_closed_forms():
    eps = np.finfo(np.float64).eps
    silent = mfcc(np.zeros(640))  # every band at the floor eps: log(eps) * DCT of a constant
    np.testing.assert_allclose(silent[:, 0], math.log(eps))
    np.testing.assert_allclose(silent[:, 1:], 0, atol=1e-9)
    signal = np.random.default_rng(1).normal(size=3200)
    scaled = mfcc(signal * INT16_SCALE) - mfcc(signal)  # gain only moves c0 (log energy)
    np.testing.assert_allclose(scaled[:, 0], 2 * math.log(INT16_SCALE), rtol=1e-12)
    np.testing.assert_allclose(scaled[:, 1:], 0, atol=1e-9)
    bank = mel_triangles(MfccConfig())
    assert bank.shape == (26, 257) and bank.max() == 1.0 and (bank >= 0).all()


# ---------------------------------------------------------------- LPIPS

TINY = lpips.BackboneSpec(
    name="tiny",
    layers=(("conv", 3, 4, 3, 1, 1), ("relu",), ("pool", 2, 2), ("conv", 4, 5, 3, 1, 1), ("relu",)),
    taps=(1, 4),
    backbone_file="tiny.pth",
    lin_file="tiny_lin.pth",
    min_side=4,
)


def _positive_lins(model: lpips.LPIPS) -> None:
    """Non-negative lin weights, as the trained ones are."""
    with torch.no_grad():
        for p in model.lins.parameters():
            p.abs_()


def _slow_lpips(model: lpips.LPIPS, x: np.ndarray, y: np.ndarray) -> float:
    """Zhang et al.'s d(x, y) for one image pair [3, H, W], written out with loops."""
    shift, scale = np.array(lpips.SHIFT), np.array(lpips.SCALE)
    feats = []
    for image in (x, y):
        scaled = (image - shift[:, None, None]) / scale[:, None, None]
        maps = model.backbone.double()(torch.from_numpy(scaled)[None])
        feats.append([m[0].detach().numpy() for m in maps])
    model.backbone.float()
    total = 0.0
    for layer, (fx, fy) in enumerate(zip(*feats, strict=True)):
        w = model.lins.layer(layer).model[1].weight.detach().double().numpy().reshape(-1)
        channels, height, width = fx.shape
        acc = 0.0
        for h in range(height):
            for v in range(width):
                a = fx[:, h, v] / (math.sqrt((fx[:, h, v] ** 2).sum()) + 1e-10)
                b = fy[:, h, v] / (math.sqrt((fy[:, h, v] ** 2).sum()) + 1e-10)
                acc += sum(w[c] * (a[c] - b[c]) ** 2 for c in range(channels))
        total += acc / (height * width)
    return total


def test_lpips_formula_against_the_paper_on_a_tiny_backbone():
    torch.manual_seed(0)
    model = lpips.LPIPS(lpips.Backbone(TINY), lpips.LinLayers(lpips.tap_channels(TINY)))
    _positive_lins(model)
    x, y = (torch.rand(2, 3, 8, 10) * 2 - 1).double().unbind(0)
    with torch.no_grad():
        fast = float(model(x[None].float(), y[None].float()))
    slow = _slow_lpips(model, x.numpy(), y.numpy())
    assert slow > 0
    assert fast == pytest.approx(slow, rel=1e-5)  # fp32 network against the fp64 loops


def test_lpips_is_zero_on_equal_images_and_symmetric():
    torch.manual_seed(1)
    model = lpips.build_lpips("alex")
    _positive_lins(model)
    x, y = torch.rand(2, 1, 3, 40, 48) * 2 - 1
    with torch.no_grad():
        assert float(model(x, x)) == 0.0
        assert float(model(x, y)) > 0
        assert float(model(x, y)) == pytest.approx(float(model(y, x)), rel=1e-6)


def test_backbones_have_torchvisions_layout():
    alex = lpips.build_lpips("alex").backbone.state_dict()
    assert [k for k in alex if k.endswith("weight")] == [
        f"features.{i}.weight" for i in (0, 3, 6, 8, 10)
    ]
    assert alex["features.0.weight"].shape == (64, 3, 11, 11)
    vgg = lpips.build_lpips("vgg").backbone.state_dict()
    assert [k for k in vgg if k.endswith("weight")] == [
        f"features.{i}.weight" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
    ]
    assert lpips.tap_channels(lpips.ALEXNET) == [64, 192, 384, 256, 256]
    assert lpips.tap_channels(lpips.VGG16) == [64, 128, 256, 512, 512]
    with pytest.raises(InputError, match="too small"):
        lpips.build_lpips("alex")(torch.zeros(1, 3, 30, 64), torch.zeros(1, 3, 30, 64))


def _save_lpips(model: lpips.LPIPS, folder: Path) -> tuple[Path, Path]:
    """The lpips lin file and a torchvision-style backbone file (with a classifier)."""
    lin, backbone = folder / "alex.pth", folder / "alexnet-owt-7be5be79.pth"
    torch.save(model.lins.state_dict(), lin)
    state = dict(model.backbone.state_dict())
    state["classifier.1.weight"] = torch.zeros(4, 9216)  # present in torchvision's file
    torch.save(state, backbone)
    return lin, backbone


def test_lpips_weights_round_trip(tmp_path):
    torch.manual_seed(2)
    model = lpips.build_lpips("alex")
    _positive_lins(model)
    loaded = lpips.load_lpips("alex", *_save_lpips(model, tmp_path))
    x, y = torch.rand(2, 1, 3, 36, 36) * 2 - 1
    with torch.no_grad():  # the same weights and computation: equal to the last bit
        assert torch.equal(model(x, y), loaded(x, y))


def test_loaders_reject_missing_keys_wrong_shapes_and_pickles(tmp_path):
    model = lpips.build_lpips("alex")
    _, backbone = _save_lpips(model, tmp_path)
    state = model.lins.state_dict()
    torch.save({k: v for k, v in state.items() if not k.startswith("lin2")}, tmp_path / "m.pth")
    with pytest.raises(CheckpointError, match=r"missing keys: lin2\.model\.1\.weight"):
        lpips.load_lpips("alex", tmp_path / "m.pth", backbone)
    torch.save({**state, "lin0.model.1.weight": torch.zeros(1, 3, 1, 1)}, tmp_path / "s.pth")
    with pytest.raises(CheckpointError, match="wrong shapes: lin0"):
        lpips.load_lpips("alex", tmp_path / "s.pth", backbone)
    with open(tmp_path / "p.pth", "wb") as handle:  # a pickle holding a Python object
        pickle.dump({"lin0.model.1.weight": Path("x")}, handle, protocol=2)
    with pytest.raises(CheckpointError, match="never unpickles"):
        lpips.load_lpips("alex", tmp_path / "p.pth", backbone)
    broken = syncnet.SyncNet().state_dict()
    broken["netcnnlip.0.weight"] = torch.zeros(96, 1, 5, 7, 7)  # grayscale input: not v2
    save_file(broken, tmp_path / "sync.safetensors")
    with pytest.raises(CheckpointError, match=r"netcnnlip\.0\.weight \[96, 1, 5, 7, 7\]"):
        syncnet.load_syncnet(tmp_path / "sync.safetensors")
    save_file({"layer1.0.bn1.weight": torch.zeros(64)}, tmp_path / "arc.safetensors")
    with pytest.raises(CheckpointError, match="no iResNet"):
        arcface.load_arcface(tmp_path / "arc.safetensors")


# ---------------------------------------------------------------- ArcFace


def test_alignment_maps_the_template_onto_itself_and_recovers_a_similarity():
    np.testing.assert_allclose(
        arcface.similarity_transform(arcface.TEMPLATE, arcface.TEMPLATE),
        [[1, 0, 0], [0, 1, 0]],
        atol=1e-12,
    )
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = arcface.TEMPLATE @ rotation.T + shift
    matrix = arcface.similarity_transform(moved, arcface.TEMPLATE)
    back = moved @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(back, arcface.TEMPLATE, atol=1e-9)


def test_alignment_equals_scikit_image_on_noisy_points():
    transform = pytest.importorskip("skimage.transform")
    points = arcface.TEMPLATE * 2.3 + np.random.default_rng(3).normal(size=(5, 2)) * 4 + 30
    reference = transform.SimilarityTransform.from_estimate(points, arcface.TEMPLATE)  # Umeyama
    np.testing.assert_allclose(
        arcface.similarity_transform(points, arcface.TEMPLATE), reference.params[:2], atol=1e-9
    )


def test_aligned_face_puts_the_five_points_on_the_template():
    height, width = 240, 200  # channel 0 holds the column, channel 1 the row
    rows, cols = np.mgrid[0:height, 0:width]
    image = np.stack([cols, rows, np.zeros_like(rows)], axis=-1).astype(np.uint8)
    points = arcface.TEMPLATE * 1.6 + np.array([20.0, 40.0])
    face = arcface.align_face(image, points)
    assert face.shape == (112, 112, 3) and face.dtype == np.uint8
    for (tx, ty), (sx, sy) in zip(arcface.TEMPLATE, points, strict=True):
        pixel = face[round(ty), round(tx)]
        assert abs(int(pixel[0]) - sx) <= 2 and abs(int(pixel[1]) - sy) <= 2


def test_five_points_from_dlib_landmarks():
    landmarks = np.zeros((68, 2))
    landmarks[36:42] = [10, 20]
    landmarks[42:48] = [30, 20]
    landmarks[30], landmarks[48], landmarks[54] = [20, 30], [12, 40], [28, 40]
    np.testing.assert_array_equal(
        arcface.five_points(landmarks), [[10, 20], [30, 20], [20, 30], [12, 40], [28, 40]]
    )


def test_arcface_layout_depth_and_weights_round_trip(tmp_path):
    keys = {
        f"layer{s}.{i}.bn1.weight"
        for s, n in zip(range(1, 5), (3, 13, 30, 3), strict=True)
        for i in range(n)
    }
    assert arcface.depths_of(dict.fromkeys(keys)) == arcface.DEPTHS["r100"]
    torch.manual_seed(4)
    model = arcface.IResNet(arcface.DEPTHS["r18"])
    state = model.state_dict()
    assert state["conv1.weight"].shape == (64, 3, 3, 3)
    assert state["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert state["fc.weight"].shape == (512, 512 * 7 * 7)
    assert "features.running_var" in state and "layer4.1.prelu.weight" in state
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    save_file(state, tmp_path / "backbone.safetensors")  # old files lack the BN counters
    loaded = arcface.load_arcface(tmp_path / "backbone.safetensors")
    faces = np.random.default_rng(5).integers(0, 256, (2, 112, 112, 3), dtype=np.uint8)
    expected = model(arcface.faces_to_input(faces)).detach().double().numpy()
    np.testing.assert_array_equal(arcface.embed(loaded, faces), expected)  # same computation


# ---------------------------------------------------------------- SyncNet


def test_syncnet_has_the_syncnet_v2_layout():
    state = syncnet.SyncNet().state_dict()
    shapes = {
        "netcnnaud.0.weight": (64, 1, 3, 3),
        "netcnnaud.18.weight": (512, 256, 5, 4),
        "netcnnaud.19.running_mean": (512,),
        "netfcaud.0.weight": (512, 512),
        "netfcaud.3.weight": (1024, 512),
        "netcnnlip.0.weight": (96, 3, 5, 7, 7),
        "netcnnlip.4.weight": (256, 96, 1, 5, 5),
        "netcnnlip.18.weight": (512, 256, 1, 6, 6),
        "netfclip.1.running_var": (512,),
    }
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key
    convs = [
        int(k.split(".")[1]) for k, v in state.items() if k.startswith("netcnnlip") and v.ndim == 5
    ]
    assert convs == [0, 4, 8, 11, 14, 18]


def _dense_offsets(video: np.ndarray, audio: np.ndarray, k: int) -> np.ndarray:
    """mean_i ||v_i - a_{i+j-k} + 1e-6|| with a zero outside [0, n)."""
    n = len(video)
    table = np.zeros((n, 2 * k + 1))
    for i in range(n):
        for j in range(2 * k + 1):
            other = audio[i + j - k] if 0 <= i + j - k < n else np.zeros(audio.shape[1])
            table[i, j] = np.linalg.norm(video[i] - other + 1e-6)
    return table.mean(axis=0)


@pytest.fixture(scope="module")
def sync_model(tmp_path_factory) -> tuple[syncnet.SyncNet, syncnet.SyncNet]:
    """A randomly initialised SyncNet (with BN statistics) and its copy read from a file."""
    torch.manual_seed(6)
    model = syncnet.SyncNet()
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
            elif name.endswith("running_mean"):
                buffer.normal_(0, 0.1)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model"
    torch.save(state, path)
    return model, syncnet.load_syncnet(path)


def test_offset_search_finds_a_shift_made_by_construction(sync_model):
    model, _ = sync_model
    windows = torch.randn(30, 1, 13, 20)
    with torch.no_grad():
        audio = model.audio_embedding(windows)
    delay = 3  # the sound of lip window i is audio window i + 3: the audio is late
    video = torch.cat([audio[delay:], torch.randn(delay, audio.shape[1])])
    result = syncnet.offset_search(video, audio, max_offset=5)
    dense = _dense_offsets(video.double().numpy(), audio.double().numpy(), 5)
    tolerance = 1e-5 * dense.max()  # fp32 distances against fp64, near-zero ones included
    np.testing.assert_allclose(result.mean_distances, dense, atol=tolerance)
    assert result.offset == -delay  # syncnet_python's sign: negative when the audio is late
    assert result.distance == pytest.approx(dense.min(), abs=tolerance)
    assert result.confidence == pytest.approx(np.median(dense) - dense.min(), abs=tolerance)
    advanced = syncnet.offset_search(torch.cat([torch.randn(2, 1024), audio[:-2]]), audio, 5)
    assert advanced.offset == 2


def test_embeddings_pair_frames_with_their_mfcc_windows(sync_model):
    model, loaded = sync_model
    rng = np.random.default_rng(7)
    crops = rng.integers(0, 256, (7, 224, 224, 3), dtype=np.uint8)
    audio = rng.normal(size=7 * 640 + 100) * 0.1
    lips, sounds = syncnet.embeddings(loaded, crops, audio)
    assert lips.shape == sounds.shape == (2, 1024)  # min(7, 7) - 5 windows
    cc = syncnet.audio_mfcc(audio)
    with torch.no_grad():  # window 1 by hand: frames 1..5, MFCC rows 4..23
        frames = torch.from_numpy(crops[1:6]).float().permute(3, 0, 1, 2)[None]
        torch.testing.assert_close(lips[1:], model.lip_embedding(frames), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(sounds[1:], model.audio_embedding(cc[..., 4:24]))
    with pytest.raises(InputError, match="too short"):
        syncnet.embeddings(model, crops[:5], audio)


def test_face_crop_geometry_and_colour_order():
    frame = np.repeat(np.arange(256, dtype=np.uint8)[:, None, None], 256, axis=1)
    frame = np.repeat(frame, 3, axis=2)  # every pixel's value is its row
    crop = syncnet.crop_face(frame, 40.0, 128.0, 100.0)  # rows 60 .. 172, columns 72 .. 184
    assert crop.shape == (224, 224, 3)
    assert abs(int(crop[0, 112, 0]) - 60) <= 1 and abs(int(crop[-1, 112, 0]) - 171) <= 1
    red = np.zeros((100, 100, 3), np.uint8)
    red[..., 0] = 255
    corner = syncnet.crop_face(red, 30.0, 10.0, 10.0)  # reaches past the top-left edge
    assert tuple(corner[0, 0]) == (110, 110, 110)  # syncnet_python's grey padding
    assert tuple(corner[150, 150]) == (0, 0, 255)  # BGR


def test_face_track_filling_and_frame_rate():
    nan = [np.nan] * 4
    boxes = np.array([nan, [0, 0, 10, 10], nan, [10, 0, 30, 10], nan])
    np.testing.assert_allclose(syncnet.fill_boxes(boxes)[:, 2], [10, 10, 20, 30, 30])
    with pytest.raises(InputError, match="no face"):
        syncnet.fill_boxes(np.array([nan, nan]))
    np.testing.assert_array_equal(syncnet.frame_indices(4, 25.0), [0, 1, 2, 3])
    np.testing.assert_array_equal(syncnet.frame_indices(6, 50.0), [0, 2, 4])
    np.testing.assert_array_equal(syncnet.frame_indices(6, 30.0), [0, 1, 2, 4, 5])


# ---------------------------------------------------------------- commands


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory) -> Path:
    """The first 10 frames of carphone (a real face dlib finds), 25 fps, no audio."""
    frames, _ = read_video(carphone())
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    write_video(path, frames[:10], 25.0)
    return path


@pytest.fixture(scope="module")
def still_images(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(8)
    paths = folder / "a.png", folder / "b.png"
    for path in paths:
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)
    return paths


def test_commands_name_the_weight_file_they_need(
    short_clip, still_images, tmp_path, capsys, monkeypatch
):
    monkeypatch.delenv("COSPEECH_WEIGHTS", raising=False)
    wav = tmp_path / "speech.wav"
    soundfile.write(wav, np.zeros(8000, np.float32), 16000)
    clip, image = str(short_clip), str(still_images[0])
    cases = [
        (["eval", "lpips", *map(str, still_images)], "alex.pth", "PerceptualSimilarity"),
        (["eval", "arcface", clip, "--reference", image], "backbone.pth", "insightface"),
        (["eval", "sync", clip, "--audio", str(wav)], "syncnet_v2.model", "syncnet_python"),
    ]
    for args, filename, source in cases:
        code, out, err = _run(args, capsys)
        assert code == 2 and out == ""
        assert err.count("\n") == 1 and err.startswith("cospeech: error: ")
        assert filename in err and source in err and "COSPEECH_WEIGHTS" in err
    monkeypatch.setenv("COSPEECH_WEIGHTS", str(tmp_path))
    (tmp_path / "alex.pth").write_bytes(b"")
    code, _, err = _run(["eval", "lpips", *map(str, still_images)], capsys)
    assert code == 2 and "alexnet-owt-7be5be79.pth" in err and "download.pytorch.org" in err
    code, _, err = _run(["eval", "sync", str(short_clip)], capsys)
    assert code == 2 and "no audio stream" in err


def test_lpips_command_on_images(still_images, tmp_path, capsys, monkeypatch):
    torch.manual_seed(9)
    model = lpips.build_lpips("alex")
    _positive_lins(model)
    _save_lpips(model, tmp_path)
    monkeypatch.setenv("COSPEECH_WEIGHTS", str(tmp_path))
    out_json = tmp_path / "lpips.json"
    code, out, _ = _run(["eval", "lpips", *map(str, still_images), "--json", str(out_json)], capsys)
    assert code == 0 and "lpips" in out
    pixels = torch.from_numpy(np.stack([np.array(Image.open(p)) for p in still_images]))
    with torch.no_grad():
        expected = float(model(*lpips.images_to_input(pixels).chunk(2)))
    report = json.loads(out_json.read_text())
    assert report["frames"] == 1 and report["lpips"] == pytest.approx(expected, rel=1e-6)
    rng = np.random.default_rng(12)
    videos = tmp_path / "a.mp4", tmp_path / "b.mp4"
    for path in videos:
        write_video(path, rng.integers(0, 256, (3, 48, 64, 3), dtype=np.uint8), 25.0)
    code, _, err = _run(["eval", "lpips", *map(str, videos), "--json", str(out_json)], capsys)
    assert code == 0, err
    decoded = [torch.from_numpy(read_video(path)[0]) for path in videos]
    with torch.no_grad():
        per_frame = model(*[lpips.images_to_input(frames) for frames in decoded]).tolist()
    report = json.loads(out_json.read_text())
    assert report["frames"] == 3
    np.testing.assert_allclose(report["lpips_per_frame"], per_frame, rtol=1e-5)
    assert report["lpips"] == pytest.approx(np.mean(per_frame), rel=1e-5)
    code, _, err = _run(["eval", "lpips", str(videos[0]), str(still_images[0])], capsys)
    assert code == 2 and "two images or two videos" in err
    write_video(videos[1], np.zeros((3, 48, 48, 3), np.uint8), 25.0)
    code, _, err = _run(["eval", "lpips", *map(str, videos)], capsys)
    assert code == 2 and "64x48" in err and "48x48" in err


def test_arcface_and_sync_commands_on_a_real_face(
    short_clip, still_images, sync_model, tmp_path, capsys
):
    torch.manual_seed(10)
    face = arcface.IResNet(arcface.DEPTHS["r18"])
    save_file(face.state_dict(), tmp_path / "r18.safetensors")
    reference = tmp_path / "reference.png"
    Image.fromarray(read_video(short_clip)[0][0]).save(reference)
    out_json = tmp_path / "arcface.json"
    args = ["eval", "arcface", str(short_clip), "--reference", str(reference)]
    code, _, err = _run(
        [*args, "--weights", str(tmp_path / "r18.safetensors"), "--json", str(out_json)], capsys
    )
    assert code == 0, err
    report = json.loads(out_json.read_text())
    assert report["frames"] == 10 and report["face_frames"] >= 9
    assert -1 <= report["arcface_similarity_min"] <= report["arcface_similarity"] <= 1
    code, _, err = _run(
        [
            *args[:3],
            "--reference",
            str(still_images[0]),
            "--weights",
            str(tmp_path / "r18.safetensors"),
        ],
        capsys,
    )
    assert code == 2 and "no face" in err
    model, _ = sync_model
    torch.save(model.state_dict(), tmp_path / "syncnet_v2.model")
    wav = tmp_path / "speech.wav"
    soundfile.write(
        wav, np.random.default_rng(11).normal(size=6400).astype(np.float32) * 0.1, 16000
    )
    out_json = tmp_path / "sync.json"
    args = ["eval", "sync", str(short_clip), "--audio", str(wav), "--max-offset", "2"]
    weights = str(tmp_path / "syncnet_v2.model")
    code, _, err = _run([*args, "--weights", weights, "--json", str(out_json)], capsys)
    assert code == 0, err
    report = json.loads(out_json.read_text())
    assert report["frames_25fps"] == 10 and report["windows"] == 5
    distances = report["mean_distances"]
    assert sorted(map(int, distances)) == [-2, -1, 0, 1, 2]
    assert report["sync_d"] == pytest.approx(min(distances.values()), rel=1e-6)
    assert distances[str(report["av_offset_frames"])] == pytest.approx(report["sync_d"], rel=1e-6)
    short = tmp_path / "short.mp4"
    write_video(short, read_video(short_clip)[0][:6], 25.0)
    code, _, err = _run([*args[:2], str(short), *args[3:], "--weights", weights], capsys)
    assert code == 2 and "6 frames at 25 fps are too short" in err
