"""VideoDiT with sparse plans: one plan per sample, the KV cache, and grid checks.

Tolerances: the paths compared run the same fp32 model with the attention summed in a
different order (other batch composition, gathered key subsets vs a masked dense SDPA)
over 2 layers of a 64-wide model with outputs of order 1: agreement to ~1e-6 is expected,
so ``rtol = atol = 1e-5``.
"""

from __future__ import annotations

import pytest
import torch

from cospeech.attention import SparsePlan, global_frame_mask
from cospeech.errors import InputError
from cospeech.models import KVCache, VideoDiT
from dit_fixture import random_tiny_dit

FRAMES, HEIGHT, WIDTH = 7, 4, 6  # latent frames; 2 x 3 tokens per frame
GRID = (HEIGHT // 2, WIDTH // 2)
CHUNK = 3
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def model() -> VideoDiT:
    return random_tiny_dit()


@pytest.fixture(scope="module")
def inputs(model):
    generator = torch.Generator().manual_seed(1)
    cfg = model.config
    return dict(
        x=torch.randn(2, cfg.in_dim, FRAMES, HEIGHT, WIDTH, generator=generator),
        t=torch.tensor([500.0, 800.0]),
        context=torch.randn(2, 5, cfg.text_dim, generator=generator),
        clip_context=torch.randn(2, 3, cfg.image_dim, generator=generator),
    )


def make_plan(seed: int, frames: int = FRAMES, grid=GRID, exact: bool = True) -> SparsePlan:
    """A random pose-like plan: random distances (K = 2 past frames + sink) and random
    region bitmasks over 3 regions (overlaps included)."""
    generator = torch.Generator().manual_seed(seed)
    sim = torch.rand(frames, frames, generator=generator)
    regions = torch.randint(0, 8, (frames, *grid), generator=generator)
    return SparsePlan.build(global_frame_mask(sim + sim.T, k=2), regions, 4, exact=exact)


def sample(inputs: dict, b: int) -> dict:
    return {name: value[b : b + 1] for name, value in inputs.items()}


@pytest.mark.parametrize("backend", ["dense", "gather"])
def test_two_samples_with_their_own_plans_equal_each_run_alone(model, inputs, backend):
    plans = [make_plan(1), make_plan(2)]
    assert not torch.equal(plans[0].token_mask(), plans[1].token_mask())
    with torch.no_grad():
        batched = model(**inputs, plan=plans, sparse_backend=backend)
        alone = [model(**sample(inputs, b), plan=plans[b], sparse_backend=backend) for b in (0, 1)]
        swapped = model(**inputs, plan=plans[::-1], sparse_backend=backend)
    for b in (0, 1):
        torch.testing.assert_close(batched[b : b + 1], alone[b], **TOL)
    assert (swapped - batched).abs().max() > 1e-3  # the plans do matter


def test_a_shared_plan_equals_the_plan_repeated(model, inputs):
    plan = make_plan(3)
    with torch.no_grad():
        shared = model(**inputs, plan=plan, sparse_backend="gather")
        listed = model(**inputs, plan=[plan, make_plan(3)], sparse_backend="gather")
    torch.testing.assert_close(listed, shared, **TOL)


@pytest.mark.parametrize("backend", ["dense", "gather"])
@pytest.mark.parametrize("per_sample", [False, True])
def test_sparse_kv_cache_chunk_by_chunk_equals_one_masked_forward(
    model, inputs, backend, per_sample
):
    """Chunks of 3 frames, each attending the cached frames the plan keeps (and its own
    frames per the plan), equal one forward with the plan's exact mask."""
    plans = [make_plan(4), make_plan(5)] if per_sample else make_plan(4)
    with torch.no_grad():
        whole = model(**inputs, plan=plans, sparse_backend=backend)
        cache = KVCache(model.config.num_layers)
        outputs = []
        for start in range(0, FRAMES, CHUNK):
            part = dict(inputs, x=inputs["x"][:, :, start : start + CHUNK])
            step = model(**dict(part, t=torch.tensor([900.0, 950.0])), plan=plans, kv_cache=cache)
            assert step.shape[2] == min(CHUNK, FRAMES - start) and cache.frames_seen == start
            outputs.append(model(**part, plan=plans, kv_cache=cache, cache_update=True))
            assert cache.frame_indices == list(range(min(start + CHUNK, FRAMES)))
        dense_cache = model(**inputs, attention="causal", chunk_frames=CHUNK)
    torch.testing.assert_close(torch.cat(outputs, dim=2), whole, **TOL)
    assert (whole - dense_cache).abs().max() > 1e-3  # the sparse mask did restrict the chunks


def test_cache_frame_indices_follow_eviction(model, inputs):
    cache = KVCache(model.config.num_layers, sink_chunks=1, window_chunks=1)
    plan = make_plan(6)
    with torch.no_grad():
        for start in range(0, FRAMES, 2):
            part = dict(inputs, x=inputs["x"][:, :, start : start + 2])
            out = model(**part, plan=plan, kv_cache=cache, cache_update=True)
            assert torch.isfinite(out).all()
    assert cache.frame_indices == [0, 1, 6]  # sink chunk 0-1, then the last chunk (frame 6)


@pytest.mark.parametrize(
    "plan",
    [
        make_plan(7, frames=FRAMES + 1),  # another frame count
        make_plan(7, grid=GRID[::-1]),  # same token count, transposed grid
        make_plan(7, grid=(2, 2)),  # another token count
        [make_plan(7)],  # one plan for a batch of two
        [make_plan(7), make_plan(7), make_plan(7)],
    ],
)
def test_a_plan_for_another_grid_is_an_input_error(model, inputs, plan):
    with torch.no_grad(), pytest.raises(InputError, match="plan"):
        model(**inputs, plan=plan, sparse_backend="gather")


def test_a_cached_chunk_outside_the_plan_is_an_input_error(model, inputs):
    short = make_plan(8, frames=2)
    cache = KVCache(model.config.num_layers)
    part = dict(inputs, x=inputs["x"][:, :, :CHUNK])
    with torch.no_grad(), pytest.raises(InputError, match="plan covers 2"):
        model(**part, plan=short, kv_cache=cache, cache_update=True)
    assert cache.frames_seen == 0
    with torch.no_grad(), pytest.raises(InputError, match="plan"):
        model(**part, plan=make_plan(8, grid=GRID[::-1]), kv_cache=cache)
    with torch.no_grad(), pytest.raises(InputError, match="sparse plan replaces"):
        model(**inputs, plan=make_plan(8), attention="causal")
