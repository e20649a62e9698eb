"""The attention benchmark: pose source, density forcing, table, and the CLI front end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cospeech.attention.bench import (
    SHAPES,
    BenchRow,
    bench_pose,
    force_density,
    format_table,
    motion_rules_available,
    pose_plan,
    run_bench,
    synthetic_pose,
)
from cospeech.cli import main
from cospeech.pose import schema as s


def test_synthetic_pose_moves_smoothly_inside_the_frame():
    pose = synthetic_pose(40, 512, 512, seed=1)
    assert len(pose) == 40 and (pose.width, pose.height) == (512, 512)
    pts = pose.points[:, [s.LEFT_WRIST, s.RIGHT_WRIST, s.NOSE]]
    step = np.linalg.norm(np.diff(pts, axis=0), axis=-1)
    assert step.max() > 1.0  # it moves
    assert step.max() < 0.1 * 512  # smoothly (25 fps)
    assert (pose.points >= 0).all() and (pose.points[..., 0] <= 511).all()
    assert (pose.confidence[:, 13:23] == 0).all() and (pose.confidence[:, :13] > 0).all()


def test_pose_plan_matches_shape_and_pose_file_is_rescaled(tmp_path):
    shape = SHAPES["quick"]
    pose, note = bench_pose(shape, source="synthetic")
    assert "synthetic" in note and len(pose) == shape.video_frames
    plan = pose_plan(pose, k=2)
    assert plan.num_frames == shape.latent_frames
    assert plan.tokens_per_frame == shape.tokens_per_frame
    assert 0 < plan.density < 1
    half = synthetic_pose(5, 256, 256)
    half.save(tmp_path / "p.npz")
    loaded, note = bench_pose(shape, str(tmp_path / "p.npz"))
    assert "cycled" in note and len(loaded) == shape.video_frames
    np.testing.assert_allclose(loaded.points[6], half.points[1] * 2, rtol=1e-6)


@pytest.mark.parametrize("grouped", [True, False])
@pytest.mark.parametrize("target", [0.3, 0.6])
def test_force_density_hits_the_target_and_keeps_same_frame_blocks(target, grouped):
    plan = pose_plan(bench_pose(SHAPES["quick"], source="synthetic")[0])
    forced = force_density(plan, target, grouped=grouped)
    want = round(target * plan.num_blocks**2)
    if grouped:  # a unit adds a whole query-block group: at most one group too many
        assert want <= forced.nnz < want + plan.num_blocks
    else:
        assert forced.nnz == want
    assert torch.all(forced.block_mask() >= plan.block_mask().diagonal().diag())
    assert torch.all(forced.block_mask() >= plan.block_mask()) == (target > plan.density)
    # every token still attends its whole frame
    same_frame = plan.token_frame[:, None] == plan.token_frame[None, :]
    assert torch.all(forced.sorted_token_mask() >= same_frame)


def test_run_bench_rows_and_table():
    shape = SHAPES["quick"]
    plan = pose_plan(bench_pose(shape)[0])
    rows = run_bench(shape, plan, ["gather", "flashinfer"], 1, torch.device("cpu"), check=True)
    assert [r.backend for r in rows][1:] == ["gather", "flashinfer"]
    assert rows[1].seconds > 0 and "max |err|" in rows[1].note
    assert float(rows[1].note.split()[-1]) < 1e-4
    assert rows[2].seconds is None and "flashinfer" in rows[2].note
    table = format_table(rows)
    assert "efficiency" in table and table.count("\n") == 4
    row = BenchRow("x", 0.5, 0.25, 2.0)
    assert row.ideal == 4.0 and row.efficiency == 0.5


def test_cli_quick(capsys):
    args = ["bench", "attention", "--quick", "--source", "synthetic", "--repeats", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "synthetic upper body" in out and "gather" in out and "speedup" in out
    assert "flex" not in out  # --quick on CPU skips the ~20 s compile


@pytest.mark.skipif(not motion_rules_available(), reason="needs cospeech.motion.rules + espeak-ng")
def test_rules_pose_source():
    shape = SHAPES["quick"]
    pose, note = bench_pose(shape, source="rules")
    assert "motion rules" in note and len(pose) == shape.video_frames
    lips = pose.points[:, s.INNER_LIP_BOTTOM, 1] - pose.points[:, s.INNER_LIP_TOP, 1]
    assert np.ptp(lips) > 0  # the mouth moves with the speech


@pytest.mark.parametrize(
    "args",
    [
        ["--k", "-1"],
        ["--backends", "gather,nope"],
        ["--density", "0"],
        ["--repeats", "0"],
        ["--pose", "/nonexistent/pose.npz"],
    ],
)
def test_cli_bad_input_exits_2(args, capsys):
    assert main(["bench", "attention", "--quick", *args]) == 2
    assert "cospeech: error:" in capsys.readouterr().err
