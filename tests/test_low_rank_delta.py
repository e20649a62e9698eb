"""Low-rank weight deltas (a LoRA fine-tune with a widened patch embedding shipped as its
difference to the model it started from): round trip within closed-form fp16 bounds,
full-rank changes kept, chains of delta folders, and bad files."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from cospeech.errors import CheckpointError
from cospeech.jsonfile import write_json
from cospeech.models import VideoDiT
from cospeech.models.checkpoint import wan_config_dict
from cospeech.models.i2v import expand_for_warp
from cospeech.models.weight_delta import (
    LOW_RANK_FORMAT,
    apply_low_rank_delta,
    delta_base,
    save_low_rank_delta,
    save_weight_delta,
)
from cospeech.pipeline.bundle import (
    DELTA_NAME,
    LOW_RANK_DELTA_NAME,
    load_dit,
    save_delta_dit,
)
from dit_fixture import random_tiny_dit

WARP_DIM = 17
RANK = 3
ADAPTED = ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "ffn.0", "ffn.2")
CHANGED_NORM = "blocks.1.norm3.weight"
FP16_UNIT = 2.0**-11  # float16 round-to-nearest: relative error <= 2^-11 (normal numbers)
FP16_TINY = 2.0**-25  # ... and <= 2^-25 absolute below 2^-14 (subnormals)
FP32_SLACK = 1e-6  # one float32 add of the difference to weights of magnitude < 4

# tiny shapes on a shared CPU: multi-threaded SVDs of 64x64 matrices take 100x longer
pytestmark = pytest.mark.usefixtures("single_thread")


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _warp_teacher(base: VideoDiT, rank: int = RANK, seed: int = 1) -> VideoDiT:
    """``base`` widened by WARP_DIM channels and fine-tuned as the warp teacher is: an exact
    rank-``rank`` change on every adapted linear weight, the whole patch embedding
    retrained (random warp channels), and one norm weight changed."""
    g = _generator(seed)
    tuned = expand_for_warp(base, WARP_DIM)
    with torch.no_grad():
        for name, param in tuned.named_parameters():
            if name.endswith(".weight") and name.rsplit(".", 1)[0].endswith(ADAPTED):
                out_dim, in_dim = param.shape
                up = torch.randn(out_dim, rank, generator=g) * 0.05
                down = torch.randn(rank, in_dim, generator=g) * 0.05
                param.add_(up @ down)
        tuned.patch_embedding.weight.add_(
            torch.randn(tuned.patch_embedding.weight.shape, generator=g) * 0.05
        )
        tuned.get_parameter(CHANGED_NORM).add_(torch.randn(64, generator=g) * 0.1)
    return tuned


def _inputs(model: VideoDiT, seed: int = 5) -> dict[str, torch.Tensor]:
    g, cfg, frames, side = _generator(seed), model.config, 3, 4
    return dict(
        x=torch.randn(1, cfg.in_dim, frames, side, side, generator=g),
        t=torch.tensor([600.0]),
        context=torch.randn(1, 5, cfg.text_dim, generator=g),
        clip_context=torch.randn(1, 3, cfg.image_dim, generator=g),
        pose=torch.rand(1, 3, 1 + 4 * (frames - 1), 8 * side, 8 * side, generator=g),
        ref_pose=torch.rand(1, 3, 8 * side, 8 * side, generator=g),
    )


def _folders(tmp_path: Path) -> tuple[VideoDiT, VideoDiT]:
    """``teacher/`` (the base, full weights) and ``teacher-warp/`` (the warp teacher as a
    low-rank delta to it) under ``tmp_path``; returns (base, warp teacher)."""
    base = random_tiny_dit()
    tuned = _warp_teacher(base)
    base.save_pretrained(tmp_path / "teacher")
    tuned.save_pretrained(tmp_path / "warp-run")
    save_delta_dit(tmp_path / "warp-run", tmp_path / "teacher", tmp_path / "teacher-warp", RANK)
    return base, tuned


def test_a_lora_fine_tune_with_a_widened_patch_embedding_round_trips(tmp_path):
    base = random_tiny_dit()
    tuned = _warp_teacher(base)
    summary = save_low_rank_delta(tuned, base, tmp_path / "d.safetensors", max_rank=8)
    adapted = {n for n in summary["stored"] if n.rsplit(".", 1)[0].endswith(ADAPTED)}
    assert len(adapted) == 6 * base.config.num_layers
    assert {summary["stored"][n] for n in adapted} == {"low-rank"}
    assert {summary["ranks"][n] for n in adapted} == {RANK}  # the smallest exact rank
    assert summary["stored"]["patch_embedding.weight"] == "full"  # shape changed
    assert summary["stored"][CHANGED_NORM] == "full"
    assert len(summary["stored"]) == len(adapted) + 2  # nothing else changed: nothing stored
    with safe_open(str(tmp_path / "d.safetensors"), "pt") as handle:
        assert handle.metadata()["format"] == LOW_RANK_FORMAT

    _folders(tmp_path)
    loaded = load_dit(tmp_path / "teacher-warp")
    assert loaded.config == tuned.config and loaded.config.in_dim == 36 + WARP_DIM
    base_params = dict(base.named_parameters())
    for name, param in loaded.named_parameters():
        got = param.detach()
        want = tuned.get_parameter(name).detach()
        kind = summary["stored"].get(name)
        if kind == "low-rank":
            # balanced float16 factors (up = U sqrt(S), down = sqrt(S) V^T, rows of norm
            # <= sqrt(s_max)): each element of up16 @ down16 is within
            # 2 * 2^-11 * sum_k |up_ik| |down_kj| <= 2^-10 s_max of the difference
            s_max = torch.linalg.matrix_norm(want - base_params[name].detach(), ord=2)
            bound = 2 * FP16_UNIT * float(s_max) * (1 + FP16_UNIT) + FP32_SLACK
            assert float((got - want).abs().max()) <= bound, name
        elif kind == "full":  # the float16 value of the new weight
            assert ((got - want).abs() <= want.abs() * FP16_UNIT + FP16_TINY).all(), name
        else:  # unchanged: the base's float32 weight, bit for bit (copied, nothing added)
            assert torch.equal(got, want), name
    # the file holds float16 factors + two float16 tensors: far below the model's float16 size
    model_fp16 = sum(p.numel() * 2 for p in tuned.parameters())
    assert (tmp_path / "teacher-warp" / LOW_RANK_DELTA_NAME).stat().st_size < model_fp16 / 4

    inputs = _inputs(tuned)
    with torch.no_grad():
        want_out, got_out = tuned(**inputs), loaded(**inputs)
        moved = float((want_out - base(**{**inputs, "x": inputs["x"][:, :36]})).norm())
    # weight errors are ~1e-3 of each change (float16), so the output's error is ~1e-3 of
    # what the fine-tune changed in it; 1e-2 leaves room for the few layers adding up
    assert float((got_out - want_out).norm()) < 1e-2 * moved


def test_a_full_rank_change_is_kept_as_int8_not_truncated(tmp_path):
    base = random_tiny_dit()
    tuned = copy.deepcopy(base)
    g = _generator(3)
    with torch.no_grad():
        full = torch.randn(128, 64, generator=g) * 0.01  # full rank (64) almost surely
        tuned.get_parameter("blocks.0.ffn.0.weight").add_(full)
        # rank 4 > max_rank, and rank 2 plus noise of 1% of its norm (> rtol 1e-3)
        over = torch.randn(64, 4, generator=g) @ torch.randn(4, 64, generator=g) * 0.01
        tuned.get_parameter("blocks.1.self_attn.q.weight").add_(over)
        low = torch.randn(64, 2, generator=g) @ torch.randn(2, 64, generator=g) * 0.01
        noisy = low + torch.randn(64, 64, generator=g) * (0.01 * float(low.norm()) / 64)
        tuned.get_parameter("blocks.1.ffn.2.weight")[:, :64].add_(noisy)
    summary = save_low_rank_delta(tuned, base, tmp_path / "d.safetensors", max_rank=3)
    changed = ("blocks.0.ffn.0.weight", "blocks.1.self_attn.q.weight", "blocks.1.ffn.2.weight")
    assert summary["stored"] == dict.fromkeys(changed, "int8")
    write_json(tmp_path / "config.json", wan_config_dict(tuned.config))  # beside the file
    restored = apply_low_rank_delta(base, tmp_path / "d.safetensors")
    errors = []
    for name in changed:
        want = tuned.get_parameter(name).detach()
        delta = want - base.get_parameter(name).detach()
        step = delta.abs().amax(dim=1, keepdim=True) / 127  # the int8 row scale
        error = (restored.get_parameter(name).detach() - want).abs()
        assert (error <= step / 2 + FP32_SLACK).all(), name
        errors.append(float(error.max()))
    assert max(errors) == pytest.approx(summary["max_error"], abs=FP32_SLACK)


def test_a_student_int8_delta_on_a_low_rank_teacher_loads_through_the_chain(tmp_path):
    _, warp = _folders(tmp_path)
    warp_loaded = load_dit(tmp_path / "teacher-warp")
    student = copy.deepcopy(warp_loaded)
    g = _generator(4)
    with torch.no_grad():
        for param in student.parameters():
            param.add_(torch.randn(param.shape, generator=g) * 0.01)
    student.save_pretrained(tmp_path / "student-run")
    worst = save_delta_dit(
        tmp_path / "student-run", tmp_path / "teacher-warp", tmp_path / "student"
    )
    assert delta_base(tmp_path / "student" / DELTA_NAME) == "teacher-warp"
    assert delta_base(tmp_path / "teacher-warp" / LOW_RANK_DELTA_NAME) == "teacher"
    loaded = load_dit(tmp_path / "student")  # student/ -> teacher-warp/ -> teacher/
    assert loaded.config == warp.config
    # int8 steps of N(0, 0.01) changes: <= 0.06 / 127 / 2 (+ one float32 add)
    assert 0 < worst < 0.06 / 254
    for got, want in zip(loaded.parameters(), student.parameters(), strict=True):
        torch.testing.assert_close(got, want.detach(), atol=worst + FP32_SLACK, rtol=0)


def test_an_int8_delta_naming_no_base_means_the_teacher_sibling(tmp_path):
    """Student folders shipped before the base field keep loading against ``../teacher``."""
    base = random_tiny_dit()
    student = copy.deepcopy(base)
    with torch.no_grad():
        student.get_parameter(CHANGED_NORM).add_(0.5)
    base.save_pretrained(tmp_path / "teacher")
    student.save_pretrained(tmp_path / "student")  # its config.json
    (tmp_path / "student" / "model.safetensors").unlink()
    save_weight_delta(student, base, tmp_path / "student" / DELTA_NAME)
    assert delta_base(tmp_path / "student" / DELTA_NAME) is None
    loaded = load_dit(tmp_path / "student")
    torch.testing.assert_close(loaded.get_parameter(CHANGED_NORM),
                               student.get_parameter(CHANGED_NORM).detach())  # fmt: skip
    # an int8 delta keeps the architecture: a base of another shape is refused
    expand_for_warp(base, WARP_DIM).save_pretrained(tmp_path / "teacher")
    with pytest.raises(CheckpointError, match="is not the one of"):
        load_dit(tmp_path / "student")


def _one_line_error(folder: Path, match: str) -> None:
    with pytest.raises(CheckpointError, match=match) as info:
        load_dit(folder)
    assert "\n" not in str(info.value)


def _rewrite_without(path: Path, key: str) -> None:
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(path)
    del tensors[key]
    save_file(tensors, str(path), metadata=metadata)


def test_bad_delta_folders_are_one_checkpoint_error_line(tmp_path):
    _folders(tmp_path)
    folder, file = tmp_path / "teacher-warp", tmp_path / "teacher-warp" / LOW_RANK_DELTA_NAME
    intact = file.read_bytes()

    _rewrite_without(file, "blocks.0.ffn.0.weight.down")
    _one_line_error(folder, r"does not fit the base model: bad blocks\.0\.ffn\.0\.weight")
    file.write_bytes(intact)
    _rewrite_without(file, "patch_embedding.weight.full")  # a new shape: the base can't give it
    _one_line_error(folder, r"missing patch_embedding\.weight")
    file.write_bytes(intact[: len(intact) // 2])
    _one_line_error(folder, "unreadable weight delta")
    save_file({"x": torch.zeros(2)}, str(file), metadata={"format": "pt"})
    _one_line_error(folder, "not a cospeech low-rank weight delta")
    file.write_bytes(intact)

    (tmp_path / "teacher").rename(tmp_path / "gone")
    _one_line_error(folder, "needs its base model in")
    (tmp_path / "gone").rename(tmp_path / "teacher")
    # a chain that loops: teacher/ made a delta whose base is teacher-warp/
    save_file({}, str(tmp_path / "teacher" / DELTA_NAME),
              metadata={"format": "cospeech-int8-delta", "base": "teacher-warp"})  # fmt: skip
    _one_line_error(folder, "loops back")
