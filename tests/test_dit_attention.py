"""Attention modes of the VideoDiT and chunked generation with the KV cache."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import cospeech
from cospeech.attention import SparsePlan, block_causal_frame_mask
from cospeech.errors import InputError
from cospeech.models import KVCache, VideoDiT
from cospeech.models.attention import block_causal_attention
from dit_fixture import random_tiny_dit

FRAMES, HEIGHT, WIDTH = 7, 4, 4  # latent frames; 2x2 tokens per frame
CHUNK = 3


@pytest.fixture(scope="module")
def model() -> VideoDiT:
    return random_tiny_dit()


@pytest.fixture(scope="module")
def inputs(model):
    generator = torch.Generator().manual_seed(1)
    cfg = model.config
    return dict(
        x=torch.randn(1, cfg.in_dim, FRAMES, HEIGHT, WIDTH, generator=generator),
        t=torch.tensor([600.0]),
        context=torch.randn(1, 5, cfg.text_dim, generator=generator),
        clip_context=torch.randn(1, 3, cfg.image_dim, generator=generator),
        pose=torch.rand(1, 3, 1 + 4 * (FRAMES - 1), 8 * HEIGHT, 8 * WIDTH, generator=generator),
        ref_pose=torch.rand(1, 3, 8 * HEIGHT, 8 * WIDTH, generator=generator),
    )


def chunk_inputs(inputs, start: int, stop: int) -> dict:
    """Latent frames [start, stop) and their video frames (frame 0 alone, then groups of 4)."""
    video_start = 0 if start == 0 else 4 * start - 3
    return dict(
        inputs,
        x=inputs["x"][:, :, start:stop],
        pose=inputs["pose"][:, :, video_start : 4 * stop - 3],
    )


def test_chunked_generation_with_kv_cache_equals_block_causal_forward(model, inputs):
    with torch.no_grad():
        whole = model(**inputs, attention="causal", chunk_frames=CHUNK)
        cache = KVCache(model.config.num_layers)
        for start in range(0, FRAMES, CHUNK):
            stop = min(start + CHUNK, FRAMES)
            part = chunk_inputs(inputs, start, stop)
            # a denoising step reads the cache without changing it ...
            step = model(**dict(part, t=torch.tensor([900.0])), kv_cache=cache)
            assert cache.frames_seen == start and step.shape[2] == stop - start
            # ... the final pass over the chunk commits its keys/values
            out = model(**part, kv_cache=cache, cache_update=True)
            torch.testing.assert_close(out, whole[:, :, start:stop], rtol=1e-5, atol=1e-5)
        assert cache.frames_seen == FRAMES and cache.num_chunks == 3
        full = model(**inputs)
    assert (full[:, :, :CHUNK] - whole[:, :, :CHUNK]).abs().max() > 1e-3  # modes differ


def test_block_causal_output_ignores_later_frames(model, inputs):
    """Causality tested structurally: the first chunk's output has exactly zero gradient
    with respect to the later frames (masked scores contribute exp(-inf) = 0, whatever
    kernel computes them), and a non-zero one with respect to its own frames."""
    x = inputs["x"].clone().requires_grad_(True)
    out = model(**dict(inputs, x=x), attention="causal", chunk_frames=CHUNK)
    (grad,) = torch.autograd.grad(out[:, :, :CHUNK].square().sum(), x, retain_graph=True)
    assert torch.count_nonzero(grad[:, :, CHUNK:]) == 0
    assert grad[:, :, :CHUNK].abs().max() > 0
    (later,) = torch.autograd.grad(out[:, :, CHUNK:].square().sum(), x)
    assert later[:, :, :CHUNK].abs().max() > 0  # later chunks do read the earlier frames


def test_full_attention_with_all_true_plan_equals_dense(model, inputs):
    tokens_per_frame = (HEIGHT // 2) * (WIDTH // 2)
    plan = SparsePlan.dense(FRAMES * tokens_per_frame, block_size=8, num_frames=FRAMES)
    assert bool(plan.token_mask().all())
    with torch.no_grad():
        dense = model(**inputs)
        for backend in ("dense", "gather"):
            sparse = model(**inputs, plan=plan, sparse_backend=backend)
            torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-5)


def test_block_causal_via_plan_equals_block_causal_mode(model, inputs):
    tokens_per_frame = (HEIGHT // 2) * (WIDTH // 2)
    plan = SparsePlan.from_frame_mask(
        block_causal_frame_mask(FRAMES, CHUNK), tokens_per_frame, block_size=8
    )
    with torch.no_grad():
        causal = model(**inputs, attention="causal", chunk_frames=CHUNK)
        planned = model(**inputs, plan=plan, sparse_backend="gather")
    torch.testing.assert_close(planned, causal, rtol=1e-5, atol=1e-5)


def test_block_causal_kernel_equals_sdpa_with_token_mask():
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 20, 3, 8, generator=generator) for _ in range(3))  # [B, L, H, D]
    chunk_tokens = 6
    chunk = torch.arange(20) // chunk_tokens
    mask = chunk[None, :] <= chunk[:, None]
    expected = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask
    ).transpose(1, 2)
    out = block_causal_attention(q, k, v, chunk_tokens)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def run_chunks(model, inputs, cache, chunk=1, frames=FRAMES):
    outputs = []
    with torch.no_grad():
        for start in range(0, frames, chunk):
            part = chunk_inputs(inputs, start, min(start + chunk, frames))
            outputs.append(model(**part, kv_cache=cache, cache_update=True))
    return outputs


def test_window_eviction_keeps_sink_and_latest_chunks(model, inputs, single_thread):
    # Exact: both caches are filled by the same computation on the same frames (one thread,
    # so the kernels take the same path); the windowed one only drops some of them.
    keep_all = KVCache(model.config.num_layers)
    windowed = KVCache(model.config.num_layers, sink_chunks=1, window_chunks=1)
    run_chunks(model, inputs, keep_all, frames=3)
    run_chunks(model, inputs, windowed, frames=3)
    tokens = (HEIGHT // 2) * (WIDTH // 2)
    assert windowed.cached_frames == 2 and windowed.frames_seen == 3
    for layer in range(model.config.num_layers):
        all_keys, all_values = keep_all.past(layer)
        keys, values = windowed.past(layer)
        keep = torch.cat([torch.arange(tokens), torch.arange(2 * tokens, 3 * tokens)])
        torch.testing.assert_close(keys, all_keys[:, keep], rtol=0, atol=0)
        torch.testing.assert_close(values, all_values[:, keep], rtol=0, atol=0)


def test_rolling_window_keeps_rope_positions_in_the_table(inputs):
    small = random_tiny_dit(rope_max_positions=4)
    config = small.config
    rolling = KVCache(config.num_layers, sink_chunks=1, window_chunks=2)
    outputs = run_chunks(small, inputs, rolling)  # 7 chunks of one frame, table of 4
    assert len(outputs) == FRAMES and rolling.cached_frames == 3
    assert all(torch.isfinite(o).all() for o in outputs)
    with pytest.raises(InputError, match="RoPE table"):
        run_chunks(small, inputs, KVCache(config.num_layers))


def test_cache_misuse_is_reported(model, inputs):
    cache = KVCache(model.config.num_layers)
    part = chunk_inputs(inputs, 0, 1)
    with torch.no_grad():
        model(**part, kv_cache=cache, cache_update=True)
        with pytest.raises(InputError, match="token grid"):
            model(**dict(part, x=part["x"][..., :2], pose=None, ref_pose=None), kv_cache=cache)
        with pytest.raises(InputError, match="layers"):
            model(**part, kv_cache=KVCache(model.config.num_layers + 1))
        with pytest.raises(InputError):
            model(**part, kv_cache=cache, attention="causal")
    assert cache.frames_seen == 1


def _cospeech_imports(path: Path) -> set[str]:
    """Every ``cospeech`` module a file imports, at module level or inside functions (and
    under ``TYPE_CHECKING``): ``from a import b`` counts as ``a`` and ``a.b``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("cospeech.")}


def test_no_import_cycle_between_model_modules():
    """The import graph of the ``cospeech.models`` modules (package ``__init__`` files
    aside), lazy imports included, has no cycle; in particular checkpoint <-> dit."""
    root = Path(cospeech.__file__).parent
    graph = {}
    for path in (root / "models").rglob("*.py"):
        if path.name != "__init__.py":
            name = ".".join(("cospeech", *path.relative_to(root).with_suffix("").parts))
            graph[name] = _cospeech_imports(path)
    assert "cospeech.models.dit" not in graph["cospeech.models.checkpoint"]
    assert "cospeech.models.checkpoint" in graph["cospeech.models.dit"]

    def reachable(start: str) -> set[str]:
        seen, stack = set(), [start]
        while stack:
            for dep in graph.get(stack.pop(), ()):
                if dep in graph and dep not in seen:
                    seen.add(dep)
                    stack.append(dep)
        return seen

    cycles = sorted(name for name in graph if name in reachable(name))
    assert not cycles, cycles


@pytest.mark.parametrize("module", ["cospeech.models.checkpoint", "cospeech.models.dit"])
def test_each_model_module_imports_alone_in_a_fresh_interpreter(module):
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
