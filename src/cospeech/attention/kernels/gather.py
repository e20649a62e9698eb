"""``gather`` backend: gather the kept key/value blocks, run SDPA per group of query blocks.

Pure PyTorch (``index_select`` + ``scaled_dot_product_attention``), so it runs on any
device and supports autograd; the CPU default.

The schedule (built once per plan and device, cached) groups query blocks by their *set*
of kept key blocks: region sorting makes many query blocks share one set (all background
blocks of a frame attend exactly their own frame), so one key/value gather serves many
query blocks and each SDPA call is large. Groups with the same query and key lengths are
batched into one call (as extra heads). The permutation is folded into the gather
indices: queries, keys and values are gathered straight from the original order, and one
final ``index_select`` puts the outputs back in original order.

With an ``exact`` plan, groups that touch a partial block pair get the token mask of
their (query, key) tokens as an SDPA boolean mask (rebuilt from token frames/regions).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cospeech.attention.masks import pair_allowed
from cospeech.attention.plan import SparsePlan

CALL_BYTES = 4 << 20
"""Batching limit: gathered keys + values of one SDPA call (bytes)."""


@dataclass
class GatherCall:
    """One SDPA call: ``groups`` query groups of ``q_len`` tokens, each with ``kv_len`` keys."""

    q_index: torch.Tensor  # [groups * q_len] original token indices of the queries
    kv_index: torch.Tensor  # [groups * kv_len] original token indices of keys/values
    groups: int
    q_len: int
    kv_len: int
    mask: torch.Tensor | None  # [q_len, kv_len] bool (exact plans, groups == 1), or None


@dataclass
class GatherSchedule:
    """All calls of one plan; together their queries cover every token exactly once."""

    calls: list[GatherCall]
    out_index: torch.Tensor  # [L]: original token -> row of the concatenated call outputs


def _block_positions(blocks: list[int], block_size: int, num_tokens: int) -> torch.Tensor:
    """Sorted-order token positions of ``blocks`` (the last block may be short)."""
    starts = torch.tensor(blocks, dtype=torch.int64)[:, None] * block_size
    pos = (starts + torch.arange(block_size)).reshape(-1)
    return pos[pos < num_tokens]


def build_schedule(plan: SparsePlan) -> GatherSchedule:
    """Group query blocks by key-block set; batch same-shaped unmasked groups."""
    indptr = plan.kv_indptr.tolist()
    groups: dict[tuple[int, ...], list[int]] = {}
    for qb in range(plan.num_blocks):
        key = tuple(plan.kv_indices[indptr[qb] : indptr[qb + 1]].tolist())
        groups.setdefault(key, []).append(qb)
    partial_rows = set(plan.block_rows()[~plan.block_full].tolist()) if plan.exact else set()

    batched: dict[tuple[int, int], list[tuple[torch.Tensor, torch.Tensor]]] = {}
    calls: list[GatherCall] = []
    L, bs = plan.num_tokens, plan.block_size
    for kv_blocks, q_blocks in groups.items():
        q_pos = _block_positions(q_blocks, bs, L)
        kv_pos = _block_positions(list(kv_blocks), bs, L)
        if partial_rows.isdisjoint(q_blocks):
            batched.setdefault((len(q_pos), len(kv_pos)), []).append((q_pos, kv_pos))
            continue
        f, reg = plan.token_frame, plan.token_regions
        mask = pair_allowed(
            f[q_pos, None], reg[q_pos, None], f[None, kv_pos], reg[None, kv_pos], plan.frame_mask
        )
        calls.append(
            GatherCall(plan.perm[q_pos], plan.perm[kv_pos], 1, len(q_pos), len(kv_pos), mask)
        )
    for (q_len, kv_len), members in batched.items():
        q_index = plan.perm[torch.cat([q for q, _ in members])]
        kv_index = plan.perm[torch.cat([kv for _, kv in members])]
        calls.append(GatherCall(q_index, kv_index, len(members), q_len, kv_len, None))

    out_index = torch.empty(L, dtype=torch.int64)
    out_index[torch.cat([c.q_index for c in calls])] = torch.arange(L)
    return GatherSchedule(calls, out_index)


def _schedule_on(plan: SparsePlan, device: torch.device) -> GatherSchedule:
    def make() -> GatherSchedule:
        base = plan.cached(("gather_schedule", torch.device("cpu")), lambda: build_schedule(plan))
        calls = [
            GatherCall(
                c.q_index.to(device),
                c.kv_index.to(device),
                c.groups,
                c.q_len,
                c.kv_len,
                None if c.mask is None else c.mask.to(device),
            )
            for c in base.calls
        ]
        return GatherSchedule(calls, base.out_index.to(device))

    return plan.cached(("gather_schedule", device), make)


@dataclass
class _Task:
    """A slice of a call's groups ``[first, first + groups)``: one SDPA invocation."""

    call: GatherCall
    first: int
    groups: int

    @property
    def cost(self) -> int:
        return self.groups * self.call.q_len * self.call.kv_len


def _tasks(schedule: GatherSchedule, row_bytes: int) -> list[_Task]:
    """Calls cut so gathered keys + values of a task stay within :data:`CALL_BYTES`."""
    tasks = []
    for call in schedule.calls:
        step = max(1, min(call.groups, CALL_BYTES // (row_bytes * call.kv_len)))
        tasks += [
            _Task(call, first, min(step, call.groups - first))
            for first in range(0, call.groups, step)
        ]
    return tasks


def _attend(
    task: _Task, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None
) -> torch.Tensor:
    """SDPA of one task: ``[B, H, groups * q_len, Dv]`` (queries in the call's order)."""
    batch, heads, _, head_dim = q.shape
    call, g = task.call, task.groups
    q_index = call.q_index[task.first * call.q_len : (task.first + g) * call.q_len]
    kv_index = call.kv_index[task.first * call.kv_len : (task.first + g) * call.kv_len]
    qg = q.index_select(2, q_index).view(batch, heads * g, call.q_len, head_dim)
    kg = k.index_select(2, kv_index).view(batch, heads * g, call.kv_len, head_dim)
    vg = v.index_select(2, kv_index).view(batch, heads * g, call.kv_len, v.shape[-1])
    out = F.scaled_dot_product_attention(qg, kg, vg, attn_mask=call.mask, scale=scale)
    return out.view(batch, heads, g * call.q_len, v.shape[-1])


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _pool(workers: int) -> ThreadPoolExecutor:
    """Worker threads that each run torch single-threaded (created once per size)."""
    if workers not in _POOLS:
        _POOLS[workers] = ThreadPoolExecutor(
            workers, thread_name_prefix="cospeech-gather", initializer=torch.set_num_threads,
            initargs=(1,),
        )  # fmt: skip
    return _POOLS[workers]


def run(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: SparsePlan, scale: float | None
) -> torch.Tensor:
    """``[B, H, L, D]`` x3 (original token order) -> ``[B, H, L, D]``.

    On CPU with ``torch.get_num_threads() > 1`` the tasks run on that many worker threads,
    each single-threaded, largest first: independent mid-sized SDPA calls parallelise
    better across calls than inside each (one barrier per call stalls when other jobs
    share the cores). The caller's grad/inference mode is carried into the workers; autograd
    records the graph as usual.
    """
    schedule = _schedule_on(plan, q.device)
    batch, heads, _, head_dim = q.shape
    row_bytes = batch * heads * (head_dim + v.shape[-1]) * k.element_size()
    tasks = _tasks(schedule, row_bytes)
    workers = torch.get_num_threads() if q.device.type == "cpu" else 1
    if workers == 1 or len(tasks) == 1:
        outs = [_attend(task, q, k, v, scale) for task in tasks]
    else:
        grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()

        def work(task: _Task) -> torch.Tensor:
            with torch.inference_mode(inference), torch.set_grad_enabled(grad):
                return _attend(task, q, k, v, scale)

        order = sorted(range(len(tasks)), key=lambda i: tasks[i].cost, reverse=True)
        futures = {i: _pool(workers).submit(work, tasks[i]) for i in order}
        outs = [futures[i].result() for i in range(len(tasks))]
    return torch.cat(outs, dim=2).index_select(2, schedule.out_index)
