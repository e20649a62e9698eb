"""Fixtures shared by several test files.

Thread count: the suite must pass with any ``OMP_NUM_THREADS``. Comparisons across two code
paths use fp32/fp64 tolerances and run on whatever thread count the environment gives. Tests
that compare the *same* computation repeated bit for bit pin torch to one thread with the
fixtures below, so that both runs use the same kernels with the same work split (CPU kernels
are then deterministic run to run); training subprocesses get ``OMP_NUM_THREADS=1``.

Precision: ``--precision auto`` resolves to float32 in every test process whatever the CPU
(:func:`cpu_flags_without_bfloat16`), so that no result depends on whether the CPU has
bfloat16 instructions; tests of bfloat16 name it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch


@contextlib.contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def single_thread() -> Iterator[None]:
    """One torch thread for one test: bit-exact repeats, and tiny shapes run fastest and
    steadiest on a shared CPU on one thread."""
    with _torch_threads(1):
        yield


@pytest.fixture(scope="module")
def single_thread_module() -> Iterator[None]:
    """One torch thread for a whole test module, for module-scoped fixtures whose results
    tests recompute bit for bit."""
    with _torch_threads(1):
        yield


@pytest.fixture(scope="session", autouse=True)
def cpu_flags_without_bfloat16() -> Iterator[None]:
    """``auto`` precision is float32 here on every CPU, from before the first fixture of
    any scope loads a model (tests/test_precision.py sets flags of its own)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("cospeech.precision.cpu_flags", lambda: frozenset())
        yield
