"""Distill stage: DMD against a closed form, noise levels, the critic's loss, the TTUR
schedule, the region loss, the student's cached rollout, exact resume and torchrun.

Tolerances: the closed-form checks run float64 (``rel=1e-9``) or float32 arithmetic on
values of order 1 (``1e-5``); the rollout compares the chunk-by-chunk cached forward with one
block-causal forward of the same fp32 tiny model (attention summed in another order:
~1e-6, as in test_dit_sparse_batch, so ``1e-5``). Two processes against one with a double
batch differ by float summation order only (gradients differ by ~1e-8); that run sets AdamW's
eps to 1e-6, so an update ``lr * m / (sqrt(v) + eps)`` moves by at most ``lr / eps = 100``
times a gradient difference (no sign flip of a near-zero gradient can cost 2 lr), well
inside ``atol=1e-5``, while a missing gradient average moves weights by ~lr = 1e-4.
"""

from __future__ import annotations

import functools
import json

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import default_collate

import stage_fixture
from cospeech.diffusion import add_noise, shift_sigma, step_list_sigmas
from cospeech.errors import InputError
from cospeech.models import VideoDiT
from cospeech.models.i2v import ConditionedFlow, reference_slot
from cospeech.train.checkpoint import list_checkpoints, load_checkpoint
from cospeech.train.config import TrainConfig
from cospeech.train.loop import Trainer
from cospeech.train.objectives.dmd import critic_loss, dmd_loss
from cospeech.train.objectives.region_loss import (
    BACKGROUND,
    LOSS_REGIONS,
    REGIONS,
    VAEFeatureDistance,
    region_loss,
    region_pixel_masks,
)
from cospeech.train.stage import MAIN_MODULE
from cospeech.train.stages.distill import (
    SAMPLING_FILE,
    Config,
    DistillStage,
    check_distill_config,
    chunk_conditions,
    sample_generators,
)
from pipeline_fixture import COSPEECH, ENV
from resume_fixture import (
    assert_close_exports,
    assert_identical_runs,
    cut_back,
    kill_after_first_checkpoint,
    run_torchrun,
)
from stage_fixture import save_random_teacher, stage_args, train

corpus = stage_fixture.corpus  # the shared module-scoped fixtures
vae_dir = stage_fixture.vae_dir
STEPS = 6


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, vae_dir):
    return save_random_teacher(tmp_path_factory.mktemp("distill") / "teacher", vae_dir)


@pytest.fixture(scope="module")
def latents(tmp_path_factory):
    return tmp_path_factory.mktemp("distill-latents")


def make_stage(corpus, vae_dir, latents, teacher_dir, **options) -> DistillStage:
    config = dict(data=str(corpus), vae=str(vae_dir), latents=str(latents), model="tiny",
                  frames=9, size=64, teacher=str(teacher_dir), chunk_frames=1,
                  steps=[1000.0, 500.0])  # fmt: skip
    return DistillStage(Config(**{**config, **options}))


@pytest.fixture(scope="module")
def stage(corpus, vae_dir, latents, teacher_dir):
    return make_stage(corpus, vae_dir, latents, teacher_dir)


@pytest.fixture(scope="module")
def batch(stage):
    dataset = stage.build_dataset()
    return default_collate([dataset[0], dataset[1]])


def _args(corpus, vae, latents, run, teacher, steps, batch=2):
    return [
        *stage_args("distill", corpus, vae, latents, run, steps, batch),
        "--set", f"stage.teacher={teacher}", "--set", "stage.chunk_frames=1",
        "--set", "stage.steps=[1000, 500]", "--set", "stage.generator_every=2",
        "--set", "train.optim.lr=1e-4", "--set", "stage.critic_optim.lr=1e-4",
    ]  # fmt: skip


# --------------------------------------------------------------------------- DMD
def gaussian_score(mean: float, x_t: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Score of the noised marginal of x0 ~ N(mean, 1): x_t ~ N((1 - s) mean, (1-s)^2 + s^2)."""
    s = sigma.view(-1, 1, 1)
    return -(x_t - (1 - s) * mean) / ((1 - s) ** 2 + s**2)


def gaussian_x0(mean: float):
    """The posterior mean E[x0 | x_t] of x0 ~ N(mean, 1) under x_t = (1 - s) x0 + s eps."""

    def predict(x_t: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = sigma.view(-1, 1, 1)
        return mean + (1 - s) / ((1 - s) ** 2 + s**2) * (x_t - (1 - s) * mean)

    return predict


def test_dmd_gradient_is_the_normalised_score_difference():
    """Real data N(2, 1), student data N(-1, 1) given analytically: the gradient the DMD loss
    puts on the student's samples is ``(s_fake - s_real) * sigma^2 / (1 - sigma)`` (the
    x0-space difference), divided per sample by mean|x0 - x0_real| and by numel."""
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 4, 5, generator=generator, dtype=torch.float64).requires_grad_()
    noise = torch.randn(3, 4, 5, generator=generator, dtype=torch.float64)
    sigma = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    loss, _ = dmd_loss(x0, noise, sigma, gaussian_x0(2.0), gaussian_x0(-1.0))
    loss.backward()

    x_t = add_noise(x0.detach(), noise, sigma)
    s = sigma.view(-1, 1, 1)
    direction = (
        (gaussian_score(-1.0, x_t, sigma) - gaussian_score(2.0, x_t, sigma)) * s**2 / (1 - s)
    )
    x0_real = gaussian_x0(2.0)(x_t, sigma)
    normaliser = (x0.detach() - x0_real).abs().mean(dim=(1, 2), keepdim=True)
    want = direction / normaliser / x0.numel()
    torch.testing.assert_close(x0.grad, want, rtol=1e-9, atol=1e-12)
    assert loss.dtype == torch.float64
    # The update (minus the gradient) moves the samples toward the real data's mean.
    assert bool((x0.grad < 0).all())


def test_dmd_noise_levels_are_shifted_and_clamped(stage):
    """Per sample: t uniform integer in [0, 1000), t' = 1000 * 5u / (1 + 4u) with u = t/1000,
    clamped to [20, 980], sigma = t' / 1000; drawn from the sample's own generator."""
    keys = torch.arange(400)
    sigma, noise = stage._noise_levels(sample_generators(keys, 3), torch.zeros(400, 2))
    replay = sample_generators(keys, 3)
    t = torch.stack([torch.randint(0, 1000, (1,), generator=g)[0] for g in replay]).double()
    want = (1000 * 5 * (t / 1000) / (1 + 4 * t / 1000)).clamp(20, 980) / 1000
    torch.testing.assert_close(sigma.double(), want, rtol=1e-6, atol=1e-7)
    assert bool((sigma >= torch.tensor(0.02)).all() and (sigma <= torch.tensor(0.98)).all())
    assert float((sigma == 0.98).float().mean()) > 0.05  # the shift piles mass at the top
    assert noise.shape == (400, 2)


def test_critic_flow_matching_loss_and_no_gradient_to_the_student():
    generator = torch.Generator().manual_seed(1)
    x0 = torch.randn(2, 3, 4, generator=generator).requires_grad_()
    noise = torch.randn(2, 3, 4, generator=generator)
    sigma = torch.tensor([0.3, 0.7])
    exact = critic_loss(lambda x_t, s: noise - x0.detach(), x0, noise, sigma)
    assert exact.item() == 0.0
    off = critic_loss(lambda x_t, s: noise - x0.detach() + 0.5, x0, noise, sigma)
    assert off.item() == pytest.approx(0.25)
    x_t = add_noise(x0.detach(), noise, sigma)
    weight = torch.tensor(1.5, requires_grad=True)  # the critic's one parameter
    seen = critic_loss(lambda x, s: weight * x * s.view(-1, 1, 1), x0, noise, sigma)
    want = (1.5 * x_t * sigma.view(-1, 1, 1) - (noise - x0.detach())).square().mean()
    assert seen.item() == pytest.approx(want.item(), rel=1e-6)
    seen.backward()
    assert weight.grad is not None and weight.grad != 0
    assert x0.grad is None


# --------------------------------------------------------------------------- TTUR
def test_the_critic_steps_every_update_the_generator_every_nth(
    corpus, vae_dir, latents, teacher_dir, tmp_path
):
    stage = make_stage(corpus, vae_dir, latents, teacher_dir, generator_every=3, region_weight=0)
    config = TrainConfig(steps=4, batch_size=2, ema_decay=0.0)
    config.optim.lr, config.optim.warmup_steps = 1e-3, 0
    stage.config.critic_optim.lr = 1e-3
    trainer = Trainer(stage, config, tmp_path / "run")
    trainer._build()
    batches = iter(trainer._loader())
    critic = trainer.trained["critic"].module
    real = trainer.modules["real"].module
    real_before = {k: v.clone() for k, v in real.state_dict().items()}
    stepped = []
    for step in range(4):
        before = [
            {k: v.clone() for k, v in m.state_dict().items()} for m in (trainer.model, critic)
        ]
        metrics = trainer._update([next(batches)])
        after = [m.state_dict() for m in (trainer.model, critic)]
        changed = [
            any(not torch.equal(b[k], a[k]) for k in b) for b, a in zip(before, after, strict=True)
        ]
        stepped.append(changed)
        assert ("grad_norm" in metrics) == (step % 3 == 0)
        assert "grad_norm_critic" in metrics
    assert stepped == [[True, True], [False, True], [False, True], [True, True]]
    assert [list(stage.updates(s)) for s in (0, 1, 3)] == [[MAIN_MODULE, "critic"], ["critic"],
                                                          [MAIN_MODULE, "critic"]]  # fmt: skip
    assert all(torch.equal(v, real_before[k]) for k, v in real.state_dict().items())


# --------------------------------------------------------------------------- region loss
def test_region_loss_is_zero_for_equal_frames_and_blind_outside_the_masks(stage, batch):
    generator = torch.Generator().manual_seed(2)
    target = batch["video"]
    masks = region_pixel_masks(batch["keypoints"], (64, 64), 8)
    assert masks.shape == (2, len(LOSS_REGIONS), 9, 64, 64)
    distance = VAEFeatureDistance(stage.vae)
    distances = dict.fromkeys(LOSS_REGIONS, distance)
    weights = {"face": 2.0, "hands": 1.0, "body": 0.5}
    zero, _ = region_loss(target, target, masks, weights, distances)
    assert zero.item() == 0.0

    prediction = target + 0.3 * torch.randn(target.shape, generator=generator)
    loss, metrics = region_loss(prediction, target, masks, weights, distances)
    assert loss.item() > 0 and set(metrics) == {"region_face", "region_hands", "region_body"}
    weighted = sum(w for n, w in weights.items())
    assert loss.item() <= weighted * max(metrics.values()) + 1e-6

    used = masks[:, [REGIONS.index(n) for n in weights]].amax(dim=1, keepdim=True)
    # every pixel outside the weighted regions changes
    outside = prediction + (1 - used) * torch.randn(target.shape, generator=generator)
    assert (outside != prediction).any()
    moved, _ = region_loss(outside, target, masks, weights, distances)
    assert moved.item() == loss.item()  # same masked inputs: the same computation
    inside = prediction + used * 0.5
    changed, _ = region_loss(inside, target, masks, weights, distances)
    assert changed.item() != loss.item()


def test_region_lambdas_take_the_background_and_name_the_regions_on_a_typo():
    check_distill_config(Config(region_lambdas={"face": 1.0, BACKGROUND: 0.5}))
    with pytest.raises(InputError, match=r"unknown region.*backgrund.*'background'"):
        check_distill_config(Config(region_lambdas={"backgrund": 1.0}))


def test_background_mask_is_the_rest_of_the_frame_and_its_term_sees_it(stage, batch):
    masks = region_pixel_masks(batch["keypoints"], (64, 64), 8)
    person = masks[:, : len(REGIONS)].amax(dim=1)
    background = masks[:, LOSS_REGIONS.index(BACKGROUND)]
    assert person.any() and background.any()
    assert torch.equal(background, 1 - person)  # the complement, pixel for pixel

    distances = dict.fromkeys(LOSS_REGIONS, VAEFeatureDistance(stage.vae))
    target = batch["video"]
    noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(3))
    outside = target + background[:, None] * noise  # only background pixels differ
    paper = dict.fromkeys(REGIONS, 1.0)
    assert region_loss(outside, target, masks, paper, distances)[0].item() == 0.0
    loss, metrics = region_loss(outside, target, masks, {**paper, BACKGROUND: 1.0}, distances)
    assert loss.item() > 0 and metrics["region_background"] == pytest.approx(loss.item())


# --------------------------------------------------------------------------- rollout
def test_rollout_with_the_cache_equals_a_block_causal_forward(
    corpus, vae_dir, latents, teacher_dir, batch
):
    """One step (sigma 1): chunk k of the rollout is ``noise_k - flow`` where the flow attends
    the committed clean chunks ``0..k-1`` through the KV cache. With a time-independent model
    (zero time embedding: the clean commit at t = 0 and the denoising call see the same
    modulation) that is one block-causal forward over ``[rollout_0..k-1, noise_k]``."""
    stage = make_stage(corpus, vae_dir, latents, teacher_dir, attention="dense", steps=[1000.0],
                       chunk_frames=1, cache_window=0)  # fmt: skip
    model = stage.build_model().eval()
    with torch.no_grad():
        model.time_embedding[2].weight.zero_()
        model.time_embedding[2].bias.zero_()
    conditions = {
        "pose": batch["pose_maps"],
        "reference": reference_slot(batch["reference_latent"]),
        "ref_pose": batch["reference_pose_map"],
    }
    latents_ = batch["latents"]
    noise = torch.randn((2, 1, *latents_.shape[1:]), generator=torch.Generator().manual_seed(3))
    assert float(step_list_sigmas([1000.0], 5.0)[0]) == 1.0
    with torch.no_grad():
        video = stage.rollout(model, conditions, noise, None, 0, grad=False)
        causal = ConditionedFlow(functools.partial(model, attention="causal", chunk_frames=1))
        frames = latents_.shape[2]
        for k in range(frames):
            prefix = torch.cat([video[:, :, :k], noise[:, 0, :, k : k + 1]], dim=2)
            where = chunk_conditions(conditions, 0, k + 1)
            flow = causal(prefix, torch.full((2,), 1000.0), **where)[:, :, k]
            torch.testing.assert_close(
                video[:, :, k], noise[:, 0, :, k] - flow, rtol=1e-5, atol=1e-5
            )
    assert frames == 3


def test_rollout_gradient_reaches_only_the_exit_step(stage, batch, teacher_dir):
    model = VideoDiT.from_pretrained(teacher_dir)
    conditions = {
        "pose": batch["pose_maps"],
        "reference": reference_slot(batch["reference_latent"]),
        "ref_pose": batch["reference_pose_map"],
    }
    noise = torch.randn(
        (2, 2, *batch["latents"].shape[1:]), generator=torch.Generator().manual_seed(4)
    )
    video = stage.rollout(model, conditions, noise, None, 1, grad=True)
    assert video.requires_grad and video.shape == batch["latents"].shape
    plain = stage.rollout(model, conditions, noise, None, 1, grad=False)
    assert not plain.requires_grad
    # The same rollout with and without autograd: grad mode may pick other CPU kernels
    # (e.g. SDPA's backward-capable path), so fp32 rounding may differ; a different
    # computation (another step, other noise) differs by O(1).
    torch.testing.assert_close(video.detach(), plain, rtol=1e-5, atol=1e-5)
    assert shift_sigma(0.5, 5.0) == pytest.approx(stage.sigmas[1])


# --------------------------------------------------------------------------- runs
def test_distill_run_exports_a_student_folder(corpus, vae_dir, latents, teacher_dir, tmp_path):
    run = tmp_path / "run"
    train(*_args(corpus, vae_dir, latents, run, teacher_dir, 2))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert "dmd" in rows[0] and "region" in rows[0] and "dmd" not in rows[1]
    assert all("critic" in row and 0 < row["student_token_density"] < 1 for row in rows)
    sampling = json.loads((run / "final-ema" / SAMPLING_FILE).read_text())
    assert sampling["kind"] == "causal-student" and sampling["steps"] == [1000.0, 500.0]
    assert sampling["chunk_frames"] == 1 and sampling["cache_sink"] == 1
    student = VideoDiT.from_pretrained(run / "final-ema")
    teacher = load_file(str(teacher_dir / "model.safetensors"))
    assert any(not torch.equal(v, teacher[k]) for k, v in student.state_dict().items())


def test_sigkill_then_rerun_gives_identical_weights(
    corpus, vae_dir, latents, teacher_dir, tmp_path
):
    reference = tmp_path / "reference"
    train(*_args(corpus, vae_dir, latents, reference, teacher_dir, STEPS))
    killed = tmp_path / "killed"
    kill_after_first_checkpoint(
        [*COSPEECH, *_args(corpus, vae_dir, latents, killed, teacher_dir, STEPS)], killed, ENV,
        STEPS,
    )  # fmt: skip
    train(*_args(corpus, vae_dir, latents, killed, teacher_dir, STEPS))
    assert_identical_runs(reference, killed, STEPS)


def test_torchrun_two_processes_equal_one_with_double_batch(
    corpus, vae_dir, latents, teacher_dir, tmp_path
):
    eps = ["--set", "train.optim.eps=1e-6", "--set", "stage.critic_optim.eps=1e-6"]
    run_torchrun(
        ["-m", "cospeech.cli",
         *_args(corpus, vae_dir, latents, tmp_path / "ddp", teacher_dir, 3, batch=1), *eps],
        ENV,
    )  # fmt: skip
    train(*_args(corpus, vae_dir, latents, tmp_path / "single", teacher_dir, 3, batch=2), *eps)
    assert_close_exports(tmp_path / "ddp", tmp_path / "single")
    trained = load_file(str(tmp_path / "single" / "final" / "model.safetensors"))
    teacher = load_file(str(teacher_dir / "model.safetensors"))
    moved = max((trained[k] - teacher[k]).abs().max().item() for k in teacher)
    assert moved > 1e-4  # the runs trained: the comparison is not between two copies


def test_torchrun_fsdp2_equals_ddp_and_resumes_exactly(
    corpus, vae_dir, latents, teacher_dir, tmp_path
):
    """FSDP2 over the generator, the critic and the frozen real score (each block sharded)
    trains the same generator, EMA and critic as DDP-style averaging; a run cut back to its
    step-2 checkpoint and run again ends bit for bit where the uninterrupted run ended."""
    eps = ["--set", "train.optim.eps=1e-6", "--set", "stage.critic_optim.eps=1e-6",
           "--set", "train.checkpoint_every=2", "--set", "train.keep_last=0"]  # fmt: skip
    fsdp = ["--set", "train.fsdp=true"]
    runs = {name: tmp_path / name for name in ("ddp", "fsdp", "cut")}
    for name, extra in (("ddp", []), ("fsdp", fsdp), ("cut", fsdp)):
        if name == "cut":
            cut_back(runs["fsdp"], runs["cut"], 2)
        args = _args(corpus, vae_dir, latents, runs[name], teacher_dir, 4, batch=1)
        run_torchrun(["-m", "cospeech.cli", *args, *eps, *extra], ENV)
    assert_close_exports(runs["fsdp"], runs["ddp"])
    critics = [load_checkpoint(list_checkpoints(runs[n] / "checkpoints")[-1])
               for n in ("ddp", "fsdp")]  # fmt: skip
    ddp_critic, fsdp_critic = (c.trainer["modules"]["critic"]["weights"] for c in critics)
    for key in ddp_critic:
        torch.testing.assert_close(fsdp_critic[key], ddp_critic[key], rtol=1e-4, atol=1e-5)
    assert_identical_runs(runs["fsdp"], runs["cut"], 4)


def test_given_arcface_and_lpips_replace_the_substitute(stage, batch):
    """With networks given (random weights here: only the wiring is tested), the face term
    is the squared distance of unit ArcFace embeddings of the face crop and the other
    regions use LPIPS; equal frames give 0 and a frame without face pixels gives 0."""
    from cospeech.eval.networks.arcface import IResNet
    from cospeech.eval.networks.lpips import build_lpips
    from cospeech.train.objectives.region_loss import (
        ArcFaceDistance,
        LPIPSDistance,
        region_distances,
    )

    torch.manual_seed(0)
    arcface, lpips = IResNet((2, 2, 2, 2)), build_lpips("alex")
    distances = region_distances(stage.vae, arcface, lpips)
    assert isinstance(distances["face"], ArcFaceDistance)
    assert all(isinstance(distances[n], LPIPSDistance) for n in REGIONS if n != "face")
    frames = batch["video"][:1, :, :2].transpose(1, 2).flatten(0, 1)  # 2 frames [2, 3, H, W]
    mask = region_pixel_masks(batch["keypoints"][:1, :2], (64, 64), 8)[0, 0][:, None]
    assert mask[0].any()
    mask[1] = 0  # no face in the second frame
    face = distances["face"]
    with torch.no_grad():
        assert face(frames * mask, frames * mask, mask).abs().max().item() < 1e-6
        moved = face(frames * mask, (frames + 0.5) * mask, mask)
    assert moved[0] > 0 and moved[1] == 0
