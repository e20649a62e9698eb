"""VAE stage: patch cropping, a short run, and normalised latents after export."""

from __future__ import annotations

import pytest
import torch

from cospeech.data.dataset import ClipDataset
from cospeech.errors import InputError
from cospeech.models.vae import TinyVideoVAE
from cospeech.train.config import OptimConfig, TrainConfig
from cospeech.train.loop import Trainer
from cospeech.train.stages.vae import Config, VAEStage, mouth_crop, random_crop
from pipeline_fixture import tiny_corpus


def test_random_crop_stays_on_the_8_pixel_grid_and_cuts_every_tensor_alike():
    video = torch.arange(64 * 64, dtype=torch.float32).view(1, 1, 1, 64, 64)
    weights = video.expand(1, 1, 2, 64, 64) * 2
    torch.manual_seed(0)
    for _ in range(20):
        patch, weight_patch = random_crop(video, 24, weights)
        assert patch.shape[-2:] == (24, 24)
        top, left = divmod(int(patch[0, 0, 0, 0, 0]), 64)
        assert top % 8 == 0 and left % 8 == 0 and top + 24 <= 64 and left + 24 <= 64
        assert torch.equal(weight_patch, patch.expand(1, 1, 2, 24, 24) * 2)
    assert random_crop(video, 0)[0] is video


def test_short_run_exports_a_vae_with_normalised_latents(tmp_path_factory, tmp_path):
    corpus = tiny_corpus(tmp_path_factory.getbasetemp())
    config = Config(data=str(corpus), preset="tiny", frames=5, size=64, crop=32,
                    stats_windows=8, cache_bytes=0)  # fmt: skip
    train = TrainConfig(steps=3, batch_size=2, ema_decay=0.0, checkpoint_every=3,
                        optim=OptimConfig(lr=1e-3, warmup_steps=1))  # fmt: skip
    stage = VAEStage(config)
    Trainer(stage, train, tmp_path / "run").run()
    vae = TinyVideoVAE.from_pretrained(tmp_path / "run" / "final")
    assert vae.config.latent_channels == 4
    # The stored statistics normalise the very windows they were measured on: per channel
    # the normalised latents have mean 0 and standard deviation 1.
    dataset = ClipDataset(corpus, "train", frames=5, size=64, with_pose_maps=False,
                          with_audio=False, seed=12345)  # fmt: skip
    indices = torch.linspace(0, len(dataset) - 1, min(8, len(dataset))).round().long()
    with torch.no_grad():
        latents = torch.cat([vae.encode(dataset[int(i)]["video"][None]) for i in indices])
    values = latents.transpose(0, 1).flatten(1).double()
    torch.testing.assert_close(values.mean(dim=1), torch.zeros(4, dtype=torch.double),
                               atol=1e-4, rtol=0)  # fmt: skip
    torch.testing.assert_close(values.std(dim=1), torch.ones(4, dtype=torch.double),
                               atol=1e-3, rtol=0)  # fmt: skip


@pytest.mark.parametrize(
    ("region_weights", "mouth_crops"), [({}, 0.0), ({"face": 8.0}, 0.0), ({"mouth": 10.0}, 1.0)]
)
def test_decoder_fine_tune_keeps_the_encoder_and_its_latents(
    tmp_path_factory, tmp_path, region_weights, mouth_crops
):
    from safetensors.torch import load_file

    from pipeline_fixture import save_tiny_vae

    corpus = tiny_corpus(tmp_path_factory.getbasetemp())
    start = save_tiny_vae(tmp_path / "start")
    config = Config(data=str(corpus), init=str(start), train_encoder=False, frames=5, size=64,
                    crop=32, stats_windows=4, cache_bytes=0,
                    region_weights=region_weights, mouth_crops=mouth_crops)  # fmt: skip
    train = TrainConfig(steps=2, batch_size=2, ema_decay=0.0, checkpoint_every=2,
                        optim=OptimConfig(lr=1e-2, warmup_steps=1))  # fmt: skip
    Trainer(VAEStage(config), train, tmp_path / "run").run()
    before = load_file(str(start / "model.safetensors"))
    after = load_file(str(tmp_path / "run" / "final" / "model.safetensors"))
    encoder = [k for k in before if k.startswith("encoder.")]
    decoder = [k for k in before if k.startswith("decoder.")]
    assert encoder and all(torch.equal(before[k], after[k]) for k in encoder)
    assert any(not torch.equal(before[k], after[k]) for k in decoder)


def test_mouth_crop_centres_each_windows_patch_on_its_lips_within_a_quarter_crop():
    from cospeech.pose import schema

    batch, frames, size, crop = 3, 5, 64, 24
    video = torch.arange(size * size, dtype=torch.float32).view(1, 1, 1, size, size)
    video = video.expand(batch, 1, frames, size, size)
    keypoints = torch.zeros(batch, frames, schema.NUM_KEYPOINTS, 3)
    centres = [(20.0, 30.0), (60.0, 4.0), None]  # x, y; the second near a corner
    for index, centre in enumerate(centres):
        if centre is not None:
            keypoints[index, :, list(schema.MOUTH)] = torch.tensor([*centre, 1.0])
    torch.manual_seed(0)
    for _ in range(20):
        patches, twice = mouth_crop(video, crop, keypoints, video * 2)
        assert patches.shape == (batch, 1, frames, crop, crop)
        assert torch.equal(twice, patches * 2)
        for index, centre in enumerate(centres):
            top, left = divmod(int(patches[index, 0, 0, 0, 0]), size)
            assert top % 8 == 0 and left % 8 == 0
            assert 0 <= top <= size - crop and 0 <= left <= size - crop
            if centre is not None:
                # Within a quarter crop plus half a grid step of centring on the lips,
                # unless the frame's edge is in the way.
                x, y = centre
                for corner, want in ((left, x - crop / 2), (top, y - crop / 2)):
                    want = min(max(want, 0), size - crop)
                    assert abs(corner - want) <= crop / 4 + 4
    assert mouth_crop(video, 0, keypoints)[0] is video


def test_mouth_crops_must_be_a_share():
    with pytest.raises(InputError, match="mouth_crops"):
        VAEStage(Config(mouth_crops=1.5))
