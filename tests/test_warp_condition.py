"""The warp condition (issue 13): the reference warped to every pose as extra DiT input.

Widening a model for it, the condition itself (latents + validity), the teacher stage's
cache, training, resume and LoRA with it, and generation's per-window slices.

Tolerances: a widened model sums the same fp32 products with zero-weight terms added, and
fused windows divide a tent-weighted sum by the weights (float64): a different order of
the same fp32 sums, ~1e-7 on outputs of order 1, so 1e-5. Cached windows are float16:
latents of magnitude < 4 round by < 2e-3.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import stage_fixture
from cospeech.data.dataset import read_clips
from cospeech.diffusion import Guidance, sample_euler
from cospeech.diffusion.schedule import sampling_sigmas
from cospeech.errors import InputError
from cospeech.models import VideoDiT, load_video_dit_config
from cospeech.models.i2v import (
    ConditionedFlow,
    condition_names,
    drop_conditions,
    expand_for_warp,
    pose_maps,
    reference_slot,
)
from cospeech.models.vae import TinyVideoVAE
from cospeech.models.warp_condition import pool_validity, warp_condition, warp_video
from cospeech.pipeline.bundle import ModelBundle, SamplingSettings
from cospeech.pipeline.generate import reference_conditions, sample_latents
from cospeech.pipeline.reference import Reference
from cospeech.pose.extract import read_image
from cospeech.pose.sequence import PoseSequence
from cospeech.train.config import LoRAConfig
from cospeech.train.lora import apply_lora
from cospeech.train.stages.teacher import Config, TeacherStage, build_latent_cache
from pipeline_fixture import COSPEECH, ENV
from resume_fixture import assert_identical_runs, kill_after_first_checkpoint
from stage_fixture import save_random_teacher, stage_args, train

corpus = stage_fixture.corpus  # the shared module-scoped fixtures
vae_dir = stage_fixture.vae_dir

WARP_DIM = 17  # the tiny VAE's 16 latent channels + validity
STEPS = 4
TOL = dict(rtol=1e-5, atol=1e-5)


def _perturbed(model: VideoDiT, seed: int = 0) -> VideoDiT:
    """``model`` with every weight moved by 0.02 N(0, 1) (a fresh model's zero head would
    make every output zero)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.02)
    return model


def _inputs(batch: int = 2, frames: int = 3, side: int = 4) -> tuple[torch.Tensor, dict]:
    """Noisy latents ``[B, 16, T, side, side]`` and the conditions the tiny DiT takes."""
    g = torch.Generator().manual_seed(1)
    video, pixels = 1 + 4 * (frames - 1), 8 * side
    conditions = {
        "pose": torch.randn(batch, 3, video, pixels, pixels, generator=g),
        "reference": reference_slot(torch.randn(batch, 16, 1, side, side, generator=g)),
        "ref_pose": torch.randn(batch, 3, pixels, pixels, generator=g),
    }
    return torch.randn(batch, 16, frames, side, side, generator=g), conditions


# --------------------------------------------------------------------------- the model
def test_expand_for_warp_starts_as_the_model_it_widens(tmp_path):
    model = _perturbed(VideoDiT(load_video_dit_config("tiny")))
    wide = expand_for_warp(model, WARP_DIM)
    assert wide.config.warp_dim == WARP_DIM and wide.config.in_dim == model.config.in_dim + 17
    assert wide.config.cond_dim == model.config.cond_dim
    assert not wide.patch_embedding.weight[:, -WARP_DIM:].any()
    x, conditions = _inputs()
    t = torch.tensor([300.0, 700.0])
    warped = torch.randn(2, WARP_DIM, 3, 4, 4)
    with torch.no_grad():
        want = ConditionedFlow(model)(x, t, **conditions)
        torch.testing.assert_close(ConditionedFlow(wide)(x, t, **conditions, warped=warped), want,
                                   **TOL)  # fmt: skip
        wide.patch_embedding.weight[:, -WARP_DIM:].normal_(0, 0.1)
        # the reference pose map is added to the conditioning channels, not the warp ones:
        # zero warp channels still give the original model's output
        zero = ConditionedFlow(wide)(x, t, **conditions, warped=torch.zeros_like(warped))
        used = ConditionedFlow(wide)(x, t, **conditions, warped=warped)
    torch.testing.assert_close(zero, want, **TOL)
    assert (used - want).abs().max() > 1e-3

    wide.save_pretrained(tmp_path / "wide")
    written = json.loads((tmp_path / "wide" / "config.json").read_text())
    assert written["in_dim"] == 36 + WARP_DIM and written["cospeech"]["warp_dim"] == WARP_DIM
    loaded = VideoDiT.from_pretrained(tmp_path / "wide")
    assert loaded.config == wide.config
    with torch.no_grad():
        torch.testing.assert_close(ConditionedFlow(loaded)(x, t, **conditions, warped=warped), used)
    with pytest.raises(InputError, match="already has 17 warp channels"):
        expand_for_warp(wide, WARP_DIM)


def test_condition_dropout_and_guidance_drop_warped_with_the_others():
    n = 2000
    _, conditions = _inputs(batch=n, frames=1, side=1)
    conditions["warped"] = torch.randn(n, WARP_DIM, 1, 1, 1)
    dropped = drop_conditions(conditions, 0.3, torch.Generator().manual_seed(0))
    gone = {k: (v.flatten(1) == 0).all(dim=1) for k, v in dropped.items()}
    assert all(torch.equal(gone["pose"], g) for g in gone.values())
    assert 0.25 < gone["pose"].float().mean() < 0.35  # 2000 draws of p = 0.3: sd 0.01
    assert condition_names(True)[-1] == "warped" and "warped" not in condition_names()
    uncond = Guidance(2.0, drop=condition_names(True)).unconditional(conditions)
    assert not uncond["warped"].any()


def test_lora_keeps_the_named_modules_fully_trainable():
    wide = expand_for_warp(VideoDiT(load_video_dit_config("tiny")), WARP_DIM)
    adapted = apply_lora(wide, LoRAConfig(rank=2, train_modules=("patch_embedding",)))
    trainable = {name for name, p in adapted.named_parameters() if p.requires_grad}
    lora = {name for name in trainable if "lora_" in name}
    assert lora and trainable - lora == {"patch_embedding.weight", "patch_embedding.bias"}
    with pytest.raises(InputError, match="no module named"):
        apply_lora(VideoDiT(load_video_dit_config("tiny")),
                   LoRAConfig(rank=2, train_modules=("no_such",)))  # fmt: skip
    with pytest.raises(InputError, match="train_modules do nothing"):
        LoRAConfig(train_modules=("patch_embedding",))


# --------------------------------------------------------------------------- the condition
def test_validity_is_the_fraction_of_valid_pixels_per_latent_cell():
    valid = np.zeros((5, 16, 16), bool)
    valid[:3, :, :4] = True  # frames 0-2, the left quarter
    want = torch.zeros(2, 2, 2)
    want[0, :, 0] = 0.5  # frame 0: 4 of the 8 columns of the left cells
    want[1, :, 0] = 0.25  # frames 1-4: 2 of 4 frames x 4 of 8 columns
    assert torch.equal(pool_validity(valid, 4, 8), want)  # exact: means of 0/1, powers of two


def test_warp_condition_encodes_the_filled_video_and_holds_the_last_frame(vae_dir):
    vae = TinyVideoVAE.from_pretrained(vae_dir)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (7, 16, 16, 3), dtype=np.uint8)
    valid = rng.random((7, 16, 16)) < 0.7
    got = warp_condition(vae, frames, valid)
    assert got.shape == (1, WARP_DIM, 3, 2, 2)  # 7 frames -> 1 + ceil(6 / 4) latent frames
    held = [0, 1, 2, 3, 4, 5, 6, 6, 6]  # 9 = 1 + 4 * 2 frames, the last one repeated
    pixels = torch.from_numpy(frames[held]).float() / 127.5 - 1
    pixels[~torch.from_numpy(valid[held])] = 0.0  # mid-grey where the warp does not know
    with torch.no_grad():
        latents = vae.encode(pixels.permute(3, 0, 1, 2)[None])
    torch.testing.assert_close(got[:, :16], latents, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got[0, 16], pool_validity(valid[held], 4, 8))
    with pytest.raises(InputError, match="does not fit frames"):
        warp_condition(vae, frames, valid[:, :8])


# --------------------------------------------------------------------------- the stage
def _warp_of_clip(clip, vae: TinyVideoVAE, frames: int) -> torch.Tensor:
    """The warp condition ``[17, T, 8, 8]`` of the clip's first ``frames`` frames (64 px)."""
    keypoints = PoseSequence.load(clip.folder / "pose.npz").keypoints[:frames]
    reference = PoseSequence.load(clip.reference_pose).keypoints[0]
    image = read_image(clip.reference_image)
    assert image.shape == (64, 64, 3)  # the tiny corpus is at the stage's size: no scaling
    return warp_condition(vae, *warp_video(image, reference, keypoints))[0]


def test_warp_cache_holds_windows_of_the_whole_clips_warp(corpus, vae_dir, tmp_path):
    vae = TinyVideoVAE.from_pretrained(vae_dir)
    options = dict(window_latents=3, size=64, stride=2, max_frames=17, progress=False)
    build_latent_cache(corpus, "train", vae, tmp_path, **options)
    clip = read_clips(corpus, "train")[0]
    latents_file = tmp_path / f"{clip.clip_id}.safetensors"
    before = latents_file.read_bytes()
    build_latent_cache(corpus, "train", vae, tmp_path, warp=True, **options)
    assert latents_file.read_bytes() == before  # an existing cache stays as it is
    stored = load_file(str(tmp_path / f"{clip.clip_id}.warp.safetensors"))
    assert torch.equal(stored["starts"], load_file(str(latents_file))["starts"])
    whole = _warp_of_clip(clip, vae, 17)
    assert stored["warped"].shape == (len(stored["starts"]), WARP_DIM, 3, 8, 8)
    for window, start in zip(stored["warped"], stored["starts"].tolist(), strict=True):
        s = start // 4
        torch.testing.assert_close(window.float(), whole[:, s : s + 3], atol=2e-3, rtol=1e-2)


def _stage(corpus: Path, vae: Path, latents: Path, **options) -> TeacherStage:
    return TeacherStage(Config(data=str(corpus), vae=str(vae), latents=str(latents),
                               model="tiny", frames=9, size=64, cache_frames=17, warp=True,
                               **options))  # fmt: skip


def test_stage_widens_its_init_and_serves_warped_items(corpus, vae_dir, tmp_path):
    init = save_random_teacher(tmp_path / "init", vae_dir)
    stage = _stage(corpus, vae_dir, tmp_path / "latents", init=str(init), sample_guidance=2.0,
                   sample_steps=1)  # fmt: skip
    model = stage.build_model()
    assert model.config.warp_dim == WARP_DIM
    x, conditions = _inputs(batch=1, side=8)
    t = torch.tensor([500.0])
    with torch.no_grad():
        want = ConditionedFlow(VideoDiT.from_pretrained(init))(x, t, **conditions)
        got = ConditionedFlow(model)(x, t, **conditions, warped=torch.randn(1, WARP_DIM, 3, 8, 8))
    torch.testing.assert_close(got, want, **TOL)

    dataset = stage.build_dataset()
    item, window = dataset[0], dataset.clips[0]  # the same window: items depend on the index
    s = window["start"] // 4
    whole = _warp_of_clip(dataset.clips.clips[0], stage.vae, 17)
    torch.testing.assert_close(item["warped"], whole[:, s : s + 3], atol=2e-3, rtol=1e-2)
    videos = stage.sample(model, 0)  # guided sampling with the warp condition dropped too
    assert [v.shape for v in videos.values()] == [(9, 64, 128, 3)]


def test_warp_teacher_trains_and_resumes_after_sigkill(corpus, vae_dir, tmp_path):
    def args(run: Path) -> list[str]:
        return [*stage_args("teacher", corpus, vae_dir, tmp_path / "latents", run, STEPS),
                "--set", "stage.warp=true", "--set", "stage.cache_frames=17"]  # fmt: skip

    reference, killed = tmp_path / "reference", tmp_path / "killed"
    train(*args(reference))
    kill_after_first_checkpoint([*COSPEECH, *args(killed)], killed, ENV, STEPS)
    train(*args(killed))
    assert_identical_runs(reference, killed, STEPS)
    assert VideoDiT.from_pretrained(reference / "final").config.warp_dim == WARP_DIM


def test_lora_run_trains_the_widened_patch_embedding(corpus, vae_dir, tmp_path):
    init = save_random_teacher(tmp_path / "init", vae_dir)
    run = tmp_path / "lora"
    train(*stage_args("teacher", corpus, vae_dir, tmp_path / "latents", run, 2),
          "--set", "stage.warp=true", "--set", "stage.cache_frames=17",
          "--set", f"stage.init={init}", "--set", "train.lora.rank=2",
          "--set", "train.lora.train_modules=[patch_embedding]")  # fmt: skip
    final = VideoDiT.from_pretrained(run / "final")  # adapters merged on export
    base = VideoDiT.from_pretrained(init)
    assert final.patch_embedding.weight[:, -WARP_DIM:].abs().max() > 0
    assert not torch.equal(final.blocks[0].self_attn.q.weight, base.blocks[0].self_attn.q.weight)
    assert torch.equal(final.head.modulation, base.head.modulation)  # not a LoRA target


# --------------------------------------------------------------------------- generation
@pytest.fixture(scope="module")
def bundle(vae_dir) -> ModelBundle:
    torch.manual_seed(0)
    wide = expand_for_warp(_perturbed(VideoDiT(load_video_dit_config("tiny"))), WARP_DIM)
    with torch.no_grad():
        wide.patch_embedding.weight[:, -WARP_DIM:].normal_(0, 0.05)
    settings = SamplingSettings(window=3, overlap=1, size=64, steps=2)
    return ModelBundle(wide.eval(), TinyVideoVAE.from_pretrained(vae_dir), settings)


def _reference_and_pose(corpus: Path, frames: int) -> tuple[Reference, np.ndarray]:
    clip = read_clips(corpus, "train")[0]
    reference = Reference(read_image(clip.reference_image),
                          PoseSequence.load(clip.reference_pose).keypoints[0])  # fmt: skip
    return reference, PoseSequence.load(clip.folder / "pose.npz").keypoints[:frames]


def test_one_window_samples_as_the_uncut_warp_conditioned_model(bundle, corpus):
    reference, keypoints = _reference_and_pose(corpus, 9)  # 3 latent frames = one window
    warped = warp_condition(bundle.vae, *warp_video(reference.image, reference.keypoints,
                                                    keypoints))  # fmt: skip
    got = sample_latents(bundle, reference, keypoints, steps=2, guidance=2.0, shift=3.0,
                         overlap=1, seed=5, warped=warped)  # fmt: skip
    slot, ref_pose = reference_conditions(bundle, reference)
    conditions = {"pose": pose_maps(keypoints, 64), "reference": slot, "ref_pose": ref_pose,
                  "warped": warped}  # fmt: skip
    noise = torch.randn((1, 16, 3, 8, 8), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        want = sample_euler(ConditionedFlow(bundle.model), noise, conditions,
                            sigmas=sampling_sigmas(2, 3.0),
                            guidance=Guidance(2.0, drop=condition_names(True)))  # fmt: skip
    torch.testing.assert_close(got, want, **TOL)


def test_each_window_gets_its_latent_frames_of_warped(bundle, corpus):
    reference, keypoints = _reference_and_pose(corpus, 17)  # 5 latent frames: windows at 0, 2
    warped = torch.randn(1, WARP_DIM, 5, 8, 8, generator=torch.Generator().manual_seed(2))
    seen = []
    hook = bundle.model.patch_embedding.register_forward_pre_hook(
        lambda _, inputs: seen.append(inputs[0][:, -WARP_DIM:].clone())
    )
    try:
        sample_latents(bundle, reference, keypoints, steps=1, guidance=1.0, shift=3.0,
                       overlap=1, seed=0, warped=warped)  # fmt: skip
    finally:
        hook.remove()
    assert len(seen) == 2
    for got, start in zip(seen, (0, 2), strict=True):
        assert torch.equal(got, warped[:, :, start : start + 3])  # copied values, no arithmetic


def test_warp_conditioning_mismatches_are_one_clear_line(bundle, corpus, vae_dir):
    reference, keypoints = _reference_and_pose(corpus, 9)
    run = dict(steps=1, guidance=1.0, shift=3.0, overlap=1, seed=0)
    with pytest.raises(InputError, match="this model is warp-conditioned"):
        sample_latents(bundle, reference, keypoints, **run)
    with pytest.raises(InputError, match=r"warped: expected \[1, 17, 3, 8, 8\]"):
        sample_latents(bundle, reference, keypoints, **run,
                       warped=torch.zeros(1, WARP_DIM, 2, 8, 8))  # fmt: skip
    plain = ModelBundle(VideoDiT(load_video_dit_config("tiny")).eval(), bundle.vae,
                        bundle.settings)  # fmt: skip
    with pytest.raises(InputError, match="warped given, but this model has no warp channels"):
        sample_latents(plain, reference, keypoints, **run, warped=torch.zeros(1, 17, 3, 8, 8))
