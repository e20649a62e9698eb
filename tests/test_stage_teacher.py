"""Teacher stage: conditioning, latent cache, exact resume after SIGKILL, torchrun."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import stage_fixture
from cospeech.data.dataset import read_clips
from cospeech.models.i2v import (
    MASK_CHANNELS,
    ConditionedFlow,
    drop_conditions,
    reference_slot,
)
from cospeech.models.vae import TinyVideoVAE
from cospeech.train.stages.teacher import build_latent_cache
from pipeline_fixture import COSPEECH, ENV
from resume_fixture import (
    assert_close_exports,
    assert_identical_runs,
    cut_back,
    kill_after_first_checkpoint,
    run_torchrun,
)
from stage_fixture import stage_args, train

STEPS = 8


def _args(corpus: Path, vae: Path, latents: Path, run: Path, steps: int, batch: int = 2):
    return stage_args("teacher", corpus, vae, latents, run, steps, batch)


_train = train
corpus = stage_fixture.corpus  # the shared module-scoped fixtures
vae_dir = stage_fixture.vae_dir


def test_conditioned_flow_builds_wan_i2v_channels():
    seen = {}

    def model(x, t, pose, ref_pose):
        seen.update(x=x, pose=pose, ref_pose=ref_pose)
        return x[:, :4]

    latent = torch.randn(2, 4, 1, 3, 3)
    slot = reference_slot(latent)
    noisy = torch.randn(2, 4, 5, 3, 3)
    pose, ref_pose = torch.randn(2, 3, 17, 24, 24), torch.randn(2, 3, 24, 24)
    ConditionedFlow(model)(noisy, torch.zeros(2), pose=pose, reference=slot, ref_pose=ref_pose)
    x = seen["x"]
    assert x.shape == (2, 4 + MASK_CHANNELS + 4, 5, 3, 3)
    assert torch.equal(x[:, :4], noisy)
    assert torch.equal(x[:, 4 : 4 + MASK_CHANNELS, 0], torch.ones(2, MASK_CHANNELS, 3, 3))
    assert torch.equal(x[:, 4 + MASK_CHANNELS :, :1], latent)
    assert not x[:, 4:, 1:].any()  # no reference on later latent frames
    assert seen["pose"] is pose and seen["ref_pose"] is ref_pose


def test_condition_dropout_drops_all_conditions_of_a_sample_together():
    n = 4000
    conditions = {
        "pose": torch.randn(n, 3, 2, 2),
        "reference": torch.randn(n, 5, 1, 1, 1),
        "ref_pose": torch.randn(n, 3, 2),
    }
    dropped = drop_conditions(conditions, 0.1, torch.Generator().manual_seed(0))
    gone = [(dropped[k].flatten(1) == 0).all(dim=1) for k in conditions]
    assert torch.equal(gone[0], gone[1]) and torch.equal(gone[0], gone[2])
    assert abs(gone[0].float().mean().item() - 0.1) < 0.02  # 4000 draws: sd 0.005
    for key, value in conditions.items():
        assert torch.equal(dropped[key][~gone[0]], value[~gone[0]])


def test_latent_cache_holds_slices_of_the_whole_clip_encoding(corpus, vae_dir, tmp_path):
    from cospeech.data.clip_reader import read_frames

    vae = TinyVideoVAE.from_pretrained(vae_dir)
    cache = build_latent_cache(corpus, "train", vae, tmp_path, window_latents=3, size=64,
                               stride=2, progress=False)  # fmt: skip
    clip = read_clips(corpus, "train")[0]
    stored = load_file(str(cache / f"{clip.clip_id}.safetensors"))
    usable = 1 + 4 * ((clip.frames - 1) // 4)
    frames = torch.from_numpy(read_frames(clip.folder / "video.mp4", 0, usable)).float()
    with torch.no_grad():
        whole = vae.encode(frames.div(127.5).sub(1).permute(3, 0, 1, 2)[None])[0]
    starts = stored["starts"].tolist()
    assert starts == [4 * s for s in range(0, whole.shape[1] - 3 + 1, 2)]
    for window, start in zip(stored["latents"], starts, strict=True):
        s = start // 4
        torch.testing.assert_close(window.float(), whole[:, s : s + 3], atol=2e-3, rtol=1e-2)
    references = load_file(str(cache / "references.safetensors"))
    assert set(references) == {c.clip_id for c in read_clips(corpus, "train")}


def test_sigkill_then_rerun_gives_identical_weights(corpus, vae_dir, tmp_path):
    latents = tmp_path / "latents"
    reference = tmp_path / "reference"
    _train(*_args(corpus, vae_dir, latents, reference, STEPS))

    killed = tmp_path / "killed"
    kill_after_first_checkpoint(
        [*COSPEECH, *_args(corpus, vae_dir, latents, killed, STEPS)], killed, ENV, STEPS
    )
    _train(*_args(corpus, vae_dir, latents, killed, STEPS))
    assert_identical_runs(reference, killed, STEPS)


def test_torchrun_two_processes_train_the_teacher(corpus, vae_dir, tmp_path):
    run = tmp_path / "ddp"
    run_torchrun(
        ["-m", "cospeech.cli", *_args(corpus, vae_dir, tmp_path / "latents", run, 2, batch=1)], ENV
    )
    weights = load_file(str(run / "final" / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values())
    logged = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in logged] == [1, 2]


def test_torchrun_fsdp2_equals_ddp_and_resumes_exactly(corpus, vae_dir, tmp_path):
    """FSDP2 (``fully_shard`` per block, gloo on the CPU) trains the same weights as DDP:
    the same averaged gradients, sharded instead of all-reduced; the exported model and its
    EMA are the full tensors. A run cut back to its step-2 checkpoint and run again ends
    bit for bit where the uninterrupted run ended: weights, EMA and optimizer state go
    through whole tensors."""
    latents = tmp_path / "latents"
    every = ["--set", "train.checkpoint_every=2", "--set", "train.keep_last=0"]
    fsdp = ["--set", "train.fsdp=true"]
    runs = {name: tmp_path / name for name in ("ddp", "fsdp", "cut")}
    for name, extra in (("ddp", []), ("fsdp", fsdp), ("cut", fsdp)):
        if name == "cut":
            cut_back(runs["fsdp"], runs["cut"], 2)
        args = _args(corpus, vae_dir, latents, runs[name], 4, batch=1)
        run_torchrun(["-m", "cospeech.cli", *args, *every, *extra], ENV)
    assert_close_exports(runs["fsdp"], runs["ddp"])
    assert_identical_runs(runs["fsdp"], runs["cut"], 4)


def test_region_weights_scale_the_teachers_loss_where_the_face_is(corpus, vae_dir, tmp_path):
    """A model that returns the exact flow target plus an error of 1 at one latent element:
    the loss with an error inside the face is ``1 + weight`` times the loss with the same
    error in the background."""
    from torch.utils.data import default_collate

    from cospeech.train.region_weights import region_weight_maps
    from cospeech.train.stages.teacher import Config, TeacherStage

    face_weight = 3.0
    config = Config(
        data=str(corpus), vae=str(vae_dir), latents=str(tmp_path / "latents"), model="tiny",
        frames=9, size=64, cond_dropout=0.0, region_weights={"face": face_weight},
    )  # fmt: skip
    stage = TeacherStage(config)
    batch = default_collate([stage.build_dataset()[0]])
    x0 = batch["latents"]
    maps = region_weight_maps(batch["keypoints"], (64, 64), {"face": 1.0}, 4, 8)[0, 0]
    face = tuple(torch.nonzero(maps == 2)[0].tolist())
    background = tuple(torch.nonzero(maps == 1)[0].tolist())

    def exact_plus_error(at):
        def model(x, t, pose, ref_pose):
            sigma = (t / 1000).view(-1, 1, 1, 1, 1)
            x_t = x[:, : x0.shape[1]]
            target = (x_t - (1 - sigma) * x0) / sigma - x0
            error = torch.zeros_like(target)
            error[(0, slice(None), *at)] = 1.0
            return target + error

        return model

    torch.manual_seed(0)
    in_face, _ = stage.loss(exact_plus_error(face), batch, 0)
    torch.manual_seed(0)
    in_background, _ = stage.loss(exact_plus_error(background), batch, 0)
    assert float(in_face / in_background) == pytest.approx(1 + face_weight, rel=1e-3)
