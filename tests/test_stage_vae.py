"""VAE stage: patch cropping, a short run, and normalised latents after export."""

from __future__ import annotations

import pytest
import torch

from cospeech.data.dataset import ClipDataset
from cospeech.models.vae import TinyVideoVAE
from cospeech.train.config import OptimConfig, TrainConfig
from cospeech.train.loop import Trainer
from cospeech.train.stages.vae import Config, VAEStage, random_crop
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


@pytest.mark.parametrize("region_weights", [{}, {"face": 8.0}])
def test_decoder_fine_tune_keeps_the_encoder_and_its_latents(
    tmp_path_factory, tmp_path, region_weights
):
    from safetensors.torch import load_file

    from pipeline_fixture import save_tiny_vae

    corpus = tiny_corpus(tmp_path_factory.getbasetemp())
    start = save_tiny_vae(tmp_path / "start")
    config = Config(data=str(corpus), init=str(start), train_encoder=False, frames=5, size=64,
                    crop=32, stats_windows=4, cache_bytes=0,
                    region_weights=region_weights)  # fmt: skip
    train = TrainConfig(steps=2, batch_size=2, ema_decay=0.0, checkpoint_every=2,
                        optim=OptimConfig(lr=1e-2, warmup_steps=1))  # fmt: skip
    Trainer(VAEStage(config), train, tmp_path / "run").run()
    before = load_file(str(start / "model.safetensors"))
    after = load_file(str(tmp_path / "run" / "final" / "model.safetensors"))
    encoder = [k for k in before if k.startswith("encoder.")]
    decoder = [k for k in before if k.startswith("decoder.")]
    assert encoder and all(torch.equal(before[k], after[k]) for k in encoder)
    assert any(not torch.equal(before[k], after[k]) for k in decoder)
