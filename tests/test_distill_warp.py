"""Distilling a warp-conditioned teacher (issue 13) and sampling the warp student.

The distill stage with a teacher that has warp channels: the widened student start, the
warp condition in the cache, the rollout and guidance, a run that resumes exactly; the
student sampler's per-chunk warp frames against an uncached reference, and its errors.

Tolerances: a widened model sums the same fp32 products with zero-weight terms added
(~1e-7 on outputs of order 1, so 1e-5); the rollout and the sampler against their uncached
references are the tolerances of test_stage_distill / test_student_pipeline (attention
over a concatenated cache sums in another order: ~1e-6 per call, compounded over levels).
Guidance against its formula: the same model calls, combined in another order (1e-5).
"""

from __future__ import annotations

import functools
import json

import pytest
import torch
from torch.utils.data import default_collate

import stage_fixture
import test_student_pipeline
from cospeech.cli import main
from cospeech.errors import InputError
from cospeech.jsonfile import write_json
from cospeech.models import VideoDiT
from cospeech.models.checkpoint import CONFIG_NAME, wan_config_dict
from cospeech.models.i2v import (
    ConditionedFlow,
    chunk_conditions,
    expand_for_warp,
    reference_slot,
)
from cospeech.models.vae import TinyVideoVAE
from cospeech.models.weight_delta import save_weight_delta
from cospeech.pipeline.bundle import DELTA_NAME, load_dit
from cospeech.pipeline.student import ChunkConditions, StudentNoise, StudentSampler
from cospeech.train.stages.distill import SAMPLING_FILE, Config, DistillStage
from pipeline_fixture import COSPEECH, ENV, tiny_models
from resume_fixture import assert_identical_runs, kill_after_first_checkpoint
from stage_fixture import save_random_teacher, stage_args, train
from test_student_pipeline import (
    SIZE,
    Recording,
    conditions_of,
    moving_keypoints,
    sampling,
    student_dit,
    uncached_reference,
)

corpus = stage_fixture.corpus  # the shared module-scoped fixtures
vae_dir = stage_fixture.vae_dir
reference = test_student_pipeline.reference  # the example photo and its pose

WARP_DIM = 17  # the tiny VAE's 16 latent channels + validity
STEPS = 4
TOL = dict(rtol=1e-5, atol=1e-5)


def _warp_weights_random(model: VideoDiT, seed: int, std: float) -> VideoDiT:
    """``model`` with the patch-embedding weights of its warp channels drawn from
    ``std`` N(0, 1) (widening leaves them zero: the warp condition would change nothing)."""
    generator = torch.Generator().manual_seed(seed)
    weight = model.patch_embedding.weight
    with torch.no_grad():
        weight[:, -WARP_DIM:] = torch.randn(weight[:, -WARP_DIM:].shape, generator=generator) * std
    return model


@pytest.fixture(scope="module")
def models(tmp_path_factory, vae_dir):
    """``warp``: a warp-conditioned tiny teacher; ``shipped/student``: a plain tiny student
    stored as the shipped one is, an int8 delta over ``shipped/teacher``."""
    root = tmp_path_factory.mktemp("distill-warp-models")
    plain = VideoDiT.from_pretrained(save_random_teacher(root / "plain", vae_dir, seed=2))
    _warp_weights_random(expand_for_warp(plain, WARP_DIM), 5, 0.02).save_pretrained(root / "warp")
    base = VideoDiT.from_pretrained(save_random_teacher(root / "shipped/teacher", vae_dir))
    student = VideoDiT.from_pretrained(save_random_teacher(root / "student", vae_dir, seed=1))
    save_weight_delta(student, base, root / "shipped/student" / DELTA_NAME)
    write_json(root / "shipped/student" / CONFIG_NAME, wan_config_dict(student.config))
    return root


@pytest.fixture(scope="module")
def latents(tmp_path_factory):
    return tmp_path_factory.mktemp("distill-warp-latents")


def make_stage(corpus, vae_dir, latents, teacher, **options) -> DistillStage:
    config = dict(data=str(corpus), vae=str(vae_dir), latents=str(latents), model="tiny",
                  frames=9, size=64, cache_frames=17, teacher=str(teacher), chunk_frames=1,
                  steps=[1000.0, 500.0], attention="dense")  # fmt: skip
    return DistillStage(Config(**{**config, **options}))


@pytest.fixture(scope="module")
def stage(corpus, vae_dir, latents, models):
    return make_stage(corpus, vae_dir, latents, models / "warp",
                      init=str(models / "shipped/student"))  # fmt: skip


@pytest.fixture(scope="module")
def batch(stage):
    dataset = stage.build_dataset()
    return default_collate([dataset[0], dataset[1]])


def _conditions(batch: dict) -> dict[str, torch.Tensor]:
    return {
        "pose": batch["pose_maps"],
        "reference": reference_slot(batch["reference_latent"]),
        "ref_pose": batch["reference_pose_map"],
        "warped": batch["warped"],
    }


# --------------------------------------------------------------------------- the stage
def test_widened_student_starts_as_the_student_and_the_scores_as_the_teacher(stage, models, batch):
    assert stage.warp and batch["warped"].shape == (2, WARP_DIM, 3, 8, 8)
    assert (batch["warped"][:, -1] > 0).any()  # the validity channel: the warp knows pixels
    model = stage.build_model()
    plain = load_dit(models / "shipped/student")
    assert model.config.warp_dim == WARP_DIM and plain.config.warp_dim == 0
    conditions = _conditions(batch)
    without = {k: v for k, v in conditions.items() if k != "warped"}
    x = torch.randn(batch["latents"].shape, generator=torch.Generator().manual_seed(6))
    t = torch.tensor([700.0, 300.0])
    with torch.no_grad():
        torch.testing.assert_close(
            ConditionedFlow(model)(x, t, **conditions), ConditionedFlow(plain)(x, t, **without),
            **TOL,
        )  # fmt: skip
    warp_teacher = VideoDiT.from_pretrained(models / "warp").state_dict()
    for name, module in stage.build_modules(model).items():
        state = module.module.state_dict()
        assert all(torch.equal(v, warp_teacher[k]) for k, v in state.items()), name


def test_guidance_drops_the_warp_condition_with_the_others(stage, models, batch):
    """``cond + g (cond - uncond)`` where uncond has zeros for every condition, warped too."""
    teacher = VideoDiT.from_pretrained(models / "warp")
    conditions = _conditions(batch)
    x = torch.randn(batch["latents"].shape, generator=torch.Generator().manual_seed(7))
    sigma = torch.tensor([0.7, 0.3])
    flow = ConditionedFlow(teacher)
    with torch.no_grad():
        got = stage._flow(teacher, None, conditions, guidance=2.0)(x, sigma)
        cond = flow(x, sigma * 1000, **conditions)
        uncond = flow(x, sigma * 1000, **{k: torch.zeros_like(v) for k, v in conditions.items()})
        no_warp = flow(
            x, sigma * 1000, **conditions | {"warped": torch.zeros_like(batch["warped"])}
        )
    torch.testing.assert_close(got, cond + 2.0 * (cond - uncond), **TOL)
    assert (cond - no_warp).abs().max() > 1e-3  # the teacher does read the warp condition


def test_rollout_gives_each_chunk_its_own_warp_frames(corpus, vae_dir, latents, models, batch):
    """One step (sigma 1) with a time-independent student: chunk k is ``noise_k - flow`` of
    one block-causal forward over ``[rollout_0..k-1, noise_k]`` and warp frames ``0..k``."""
    stage = make_stage(corpus, vae_dir, latents, models / "warp", steps=[1000.0])
    model = _warp_weights_random(stage.build_model().eval(), 8, 0.05)
    with torch.no_grad():
        model.time_embedding[2].weight.zero_()
        model.time_embedding[2].bias.zero_()
    conditions = _conditions(batch)
    latents_ = batch["latents"]
    noise = torch.randn((2, 1, *latents_.shape[1:]), generator=torch.Generator().manual_seed(3))
    assert stage.sigmas == [1.0]
    with torch.no_grad():
        video = stage.rollout(model, conditions, noise, None, 0, grad=False)
    causal = ConditionedFlow(functools.partial(model, attention="causal", chunk_frames=1))
    with torch.no_grad():
        for k in range(latents_.shape[2]):
            prefix = torch.cat([video[:, :, :k], noise[:, 0, :, k : k + 1]], dim=2)
            where = chunk_conditions(conditions, 0, k + 1)
            assert torch.equal(where["warped"], batch["warped"][:, :, : k + 1])
            flow = causal(prefix, torch.full((2,), 1000.0), **where)[:, :, k]
            torch.testing.assert_close(
                video[:, :, k], noise[:, 0, :, k] - flow, rtol=1e-5, atol=1e-5
            )


def test_a_plain_teacher_with_stage_warp_is_an_error(corpus, vae_dir, latents, models):
    with pytest.raises(InputError, match="has no warp channels"):
        make_stage(corpus, vae_dir, latents, models / "plain", warp=True)


def test_init_of_another_model_is_one_error_line(corpus, vae_dir, models, tmp_path, capsys):
    argv = [
        *_args(corpus, vae_dir, tmp_path / "latents", tmp_path / "run", models, 1),
        "--set",
        f"stage.init={models / 'warp'}",
        "--set",
        f"stage.teacher={models / 'plain'}",
    ]
    code = main(argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code != 0 and len(err) == 1, err
    assert err[0].startswith("cospeech: error: stage.init: ") and "17 vs 0 warp" in err[0], err


# --------------------------------------------------------------------------- runs
def _args(corpus, vae, latents, run, models, steps) -> list[str]:
    return [
        *stage_args("distill", corpus, vae, latents, run, steps),
        "--set", f"stage.teacher={models / 'warp'}",
        "--set", f"stage.init={models / 'shipped/student'}", "--set", "stage.cache_frames=17",
        "--set", "stage.chunk_frames=1", "--set", "stage.steps=[1000, 500]",
        "--set", "stage.generator_every=2", "--set", "train.optim.lr=1e-4",
        "--set", "stage.critic_optim.lr=1e-4",
    ]  # fmt: skip


def test_warp_distill_runs_and_resumes_after_sigkill(corpus, vae_dir, latents, models, tmp_path):
    reference_run, killed = tmp_path / "reference", tmp_path / "killed"
    train(*_args(corpus, vae_dir, latents, reference_run, models, STEPS))
    kill_after_first_checkpoint(
        [*COSPEECH, *_args(corpus, vae_dir, latents, killed, models, STEPS)], killed, ENV, STEPS
    )
    train(*_args(corpus, vae_dir, latents, killed, models, STEPS))
    assert_identical_runs(reference_run, killed, STEPS)
    rows = [json.loads(line) for line in (reference_run / "metrics.jsonl").read_text().splitlines()]
    assert "dmd" in rows[0] and all("critic" in row for row in rows)
    student = VideoDiT.from_pretrained(reference_run / "final-ema")
    assert student.config.warp_dim == WARP_DIM
    assert (reference_run / "final-ema" / SAMPLING_FILE).is_file()
    start = load_dit(models / "shipped/student")
    moved = student.patch_embedding.weight[:, -WARP_DIM:].abs().max()
    assert moved > 0  # the warp channels, zero at the start, trained
    assert any(
        not torch.equal(v, start.state_dict()[k])
        for k, v in student.state_dict().items()
        if k != "patch_embedding.weight"
    )


# --------------------------------------------------------------------------- the sampler
@pytest.fixture(scope="module")
def vae(tmp_path_factory):
    return TinyVideoVAE.from_pretrained(tiny_models(tmp_path_factory.getbasetemp()) / "vae")


def warp_student(layers: int) -> VideoDiT:
    """:func:`student_dit` widened, with random warp weights (time-independent blocks)."""
    return _warp_weights_random(expand_for_warp(student_dit(layers, seed=layers), WARP_DIM),
                                9, 0.1).eval()  # fmt: skip


@pytest.mark.parametrize("layers, window", [(2, 8), (1, 1)])  # no eviction / sink + 1 chunk
def test_cached_warp_sampler_equals_an_uncached_reference(vae, reference, layers, window):
    model, spec = warp_student(layers), sampling(cache_window=window, attention="dense")
    keypoints = moving_keypoints(reference.keypoints, 33)  # 9 latent frames: 5 chunks
    slot, ref_pose = conditions_of(vae, reference)
    warped = torch.randn((1, WARP_DIM, 9, 8, 8), generator=torch.Generator().manual_seed(10))
    noise = Recording((1, vae.latent_channels, 8, 8), 0)
    sampler = StudentSampler(model, spec, ChunkConditions(keypoints, SIZE, slot, ref_pose, warped),
                             9, levels=3, shift=spec.shift, noise=noise)  # fmt: skip
    got = torch.cat([c.latents for c in sampler], dim=2)
    with torch.no_grad():
        want = uncached_reference(model, spec, keypoints, slot, ref_pose, 9, noise.draws, 3,
                                  warped=warped)  # fmt: skip
        other = uncached_reference(model, spec, keypoints, slot, ref_pose, 9, noise.draws, 3,
                                   warped=warped.roll(1, dims=2))  # fmt: skip
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert (got - other).abs().max() > 1e-3  # each chunk's own warp frames matter


@pytest.mark.parametrize(
    "warp, warped_shape, message",
    [
        (True, None, "needs the reference warped to every frame's pose"),
        (False, (1, WARP_DIM, 3, 8, 8), "warped given, but this model has no warp channels"),
        (True, (1, WARP_DIM, 2, 8, 8), "warped: expected [1, 17, 3, 8, 8], got [1, 17, 2, 8, 8]"),
        (True, (1, 16, 3, 8, 8), "warped: expected [1, 17, 3, 8, 8], got [1, 16, 3, 8, 8]"),
    ],
)
def test_sampler_errors_for_missing_extra_or_misshapen_warped(
    vae,
    reference,
    warp,
    warped_shape,
    message,
):
    model = warp_student(1) if warp else student_dit(1)
    slot, ref_pose = conditions_of(vae, reference)
    keypoints = moving_keypoints(reference.keypoints, 9)
    warped = None if warped_shape is None else torch.zeros(warped_shape)
    with pytest.raises(InputError) as error:
        StudentSampler(model, sampling(), ChunkConditions(keypoints, SIZE, slot, ref_pose, warped),
                       3, levels=1, shift=5.0, noise=StudentNoise((1, 16, 8, 8), 0))  # fmt: skip
    assert message in str(error.value)
