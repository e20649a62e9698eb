"""Sparse stage: the teacher's loss with per-sample pose plans, and a short run that exports.

Tolerance: the all-true plan runs the same fp32 tiny model with attention summed by the
gather kernel (kept key blocks, SDPA per group) instead of one dense SDPA; over 2 layers
of a 64-wide model the outputs agree to ~1e-6 (as in test_dit_sparse_batch), so the loss
(a mean of squares of order 1) agrees to ``rel=1e-5``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

import stage_fixture
from cospeech.attention import SparsePlan
from cospeech.attention.pose_plan import pose_plan
from cospeech.models import VideoDiT
from cospeech.pose.sequence import PoseSequence
from cospeech.train.stages.sparse import Config, SparseTeacherStage
from cospeech.train.stages.teacher import TeacherStage
from stage_fixture import save_random_teacher, stage_args, train

corpus = stage_fixture.corpus  # the shared module-scoped fixtures
vae_dir = stage_fixture.vae_dir


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, vae_dir):
    return save_random_teacher(tmp_path_factory.mktemp("sparse") / "teacher", vae_dir)


@pytest.fixture(scope="module")
def setup(corpus, vae_dir, teacher_dir, tmp_path_factory):
    """The sparse stage (K = 1), a teacher stage on the same data, a mixed batch of both
    training clips and the random teacher."""
    latents = tmp_path_factory.mktemp("sparse-latents")
    options = dict(data=str(corpus), vae=str(vae_dir), latents=str(latents), model="tiny",
                   frames=9, size=64, cond_dropout=0.0)  # fmt: skip
    stage = SparseTeacherStage(Config(**options, init=str(teacher_dir), k=1))
    dense = TeacherStage(Config(**options))
    dataset = stage.build_dataset()
    batch = default_collate([dataset[0], dataset[1]])
    return stage, dense, batch, stage.build_model()


def test_init_loads_the_teacher(setup, teacher_dir):
    _, _, _, model = setup
    loaded = VideoDiT.from_pretrained(teacher_dir)
    want = loaded.state_dict()
    for name, value in model.state_dict().items():
        assert torch.equal(value, want[name]), name


def test_all_true_plan_gives_the_dense_teachers_loss(setup, monkeypatch):
    stage, dense, batch, model = setup
    tokens = model.config.patch_size  # 64 px / 8 (VAE) / 2 (patch) = 4 x 4 tokens per frame
    frames = batch["latents"].shape[2]
    per_frame = (64 // 8 // tokens[1]) * (64 // 8 // tokens[2])
    monkeypatch.setattr(
        stage, "plans",
        lambda model, batch: [SparsePlan.dense(frames * per_frame, num_frames=frames)] * 2,
    )  # fmt: skip
    torch.manual_seed(5)
    sparse_loss, metrics = stage.loss(model, batch, 0)
    torch.manual_seed(5)
    dense_loss, _ = dense.loss(model, batch, 0)
    assert sparse_loss.item() == pytest.approx(dense_loss.item(), rel=1e-5)
    assert metrics["token_density"] == 1.0 and metrics["block_density"] == 1.0


def test_each_window_gets_the_plan_of_its_own_pose(setup):
    """The two windows of a mixed batch get different plans, each the plan built from that
    window's keypoints alone; the loss reports their mean density. (At 64 x 64 pixels a
    frame has 4 x 4 tokens and the two synthetic speakers stand alike, so the second
    window's speaker is moved 16 pixels to the right to make the poses differ.)"""
    stage, _, batch, model = setup
    batch = dict(batch, keypoints=batch["keypoints"].clone())
    batch["keypoints"][1, :, :, 0] += 16.0
    plans = stage.plans(model, batch)
    assert len(plans) == 2
    assert not torch.equal(plans[0].token_mask(), plans[1].token_mask())
    for window, plan in zip(batch["keypoints"].numpy(), plans, strict=True):
        alone = pose_plan(PoseSequence(window.astype(np.float32), fps=25.0, width=64, height=64),
                          k=1, exact=True, causal=False)  # fmt: skip
        assert torch.equal(plan.token_mask(), alone.token_mask())
    torch.manual_seed(0)
    _, metrics = stage.loss(model, batch, 0)
    want = (plans[0].token_density + plans[1].token_density) / 2
    assert metrics["token_density"] == pytest.approx(want) and want < 1.0


def test_sparse_run_logs_density_and_exports(corpus, vae_dir, teacher_dir, tmp_path):
    run = tmp_path / "run"
    train(*stage_args("sparse", corpus, vae_dir, tmp_path / "latents", run, 3),
          "--set", f"stage.init={teacher_dir}", "--set", "stage.k=1")  # fmt: skip
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3]
    assert all(0 < row["token_density"] < 1 for row in rows)
    exported = VideoDiT.from_pretrained(run / "final-ema")
    start = VideoDiT.from_pretrained(teacher_dir)
    before = start.state_dict()
    assert any(not torch.equal(v, before[k]) for k, v in exported.state_dict().items())
