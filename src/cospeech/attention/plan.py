"""``SparsePlan``: the input-aware mask turned into what block-sparse kernels run.

Building a plan (once per pose sequence, shared by every layer and head):

1. **Permutation.** Inside each frame, tokens are stably sorted by region bitmask (the
   set of regions a token lies in), background last. Same-region tokens of different
   frames then form contiguous runs, so the cross-frame pairs Eq. 3 allows fill whole
   blocks. Frames stay contiguous (token ``t * N + i`` moves only inside
   ``[t * N, (t + 1) * N)``). Attention is equivariant
   to a permutation applied to queries, keys and values alike, so running on permuted
   tensors and un-permuting the output is exact.
2. **Block pooling.** The permuted sequence is cut into blocks of ``block_size`` tokens
   (the last one may be shorter; blocks may straddle frames and regions). A block is a
   bag of (frame, bitmask) *segments*; a block pair is kept iff some segment pair is
   allowed (same frame, or frame pair kept and a shared region: ``mask_q & mask_k != 0``).
   This is computed as ``C @ G @ C^T`` with ``C [blocks, segments]`` token counts and
   ``G [segments, segments]`` the allowed-pair indicator, so the ``[L, L]`` token mask
   never exists. The
   same product counts the allowed token pairs, which says whether a kept block pair is
   *full* (every token pair allowed) or *partial*.
3. **Block map.** CSR over query blocks: ``kv_indptr [num_blocks + 1]``, ``kv_indices
   [nnz]`` (ascending per row), ``block_full [nnz]``.

``exact=False`` computes every kept block fully (the paper's pooling: the effective mask is
a superset of the token mask). ``exact=True`` additionally masks the partial blocks inside
the kernels, rebuilding the token mask on the fly from ``token_frame``/``token_regions``
and ``frame_mask``; the effective mask then equals the token mask.

Every build logs its realised density (logger ``cospeech.attention.plan``, DEBUG), so a
plan that silently keeps every block shows; :meth:`SparsePlan.summary` returns it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from cospeech.attention.masks import (
    check_frame_mask,
    flatten_regions,
    input_aware_token_mask,
    pair_allowed,
)
from cospeech.errors import InputError

log = logging.getLogger(__name__)

DEFAULT_BLOCK_SIZE = 128


@dataclass(eq=False)
class SparsePlan:
    """A region-sorted token permutation and the block map of the input-aware mask.

    All tensors live on the CPU; kernels keep device copies in :meth:`cached`.
    Token order: "original" = frame-major as the model lays tokens out; "sorted" =
    after :attr:`perm` (``x_sorted = x[..., perm, :]``, ``x = x_sorted[..., inv_perm, :]``).
    """

    num_frames: int
    tokens_per_frame: int
    block_size: int
    exact: bool
    perm: torch.Tensor  # [L] int64: sorted position -> original token index
    inv_perm: torch.Tensor  # [L] int64: original token index -> sorted position
    frame_mask: torch.Tensor  # [T, T] bool (the diagonal is implied, see pair_allowed)
    token_frame: torch.Tensor  # [L] int64, sorted order
    token_regions: torch.Tensor  # [L] int64 region bitmask, sorted order
    kv_indptr: torch.Tensor  # [num_blocks + 1] int64
    kv_indices: torch.Tensor  # [nnz] int64, kept key blocks of each query block
    block_full: torch.Tensor  # [nnz] bool, every token pair of the block pair allowed
    grid: tuple[int, int] | None = None  # (h, w) token grid of a frame, when known
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    # ----------------------------------------------------------------- construction
    @classmethod
    def build(
        cls,
        frame_mask: torch.Tensor | np.ndarray,
        regions: torch.Tensor | np.ndarray,
        block_size: int = DEFAULT_BLOCK_SIZE,
        exact: bool = False,
    ) -> SparsePlan:
        """Plan for a frame mask ``[T, T]`` bool and region bitmasks ``[T, N]`` / ``[T, h, w]``
        (:func:`cospeech.pose.raster.region_token_masks`; ``[T, h, w]`` also records the
        token grid, checked against the model's input)."""
        fmask = check_frame_mask(frame_mask).cpu()
        reg = flatten_regions(regions, fmask.shape[0]).cpu()
        grid = tuple(int(n) for n in regions.shape[1:]) if len(regions.shape) == 3 else None
        if int(block_size) != block_size or block_size <= 0:
            raise InputError(f"block_size must be a positive integer, got {block_size}")
        block_size = int(block_size)
        num_frames, per_frame = reg.shape
        num_tokens = num_frames * per_frame

        # Segment rank of each token: bitmask order with background last.
        values = torch.unique(reg[reg != 0])
        rank = torch.where(reg == 0, len(values), torch.searchsorted(values, reg))
        frame = torch.arange(num_frames).repeat_interleave(per_frame)
        perm = torch.argsort(frame * (len(values) + 1) + rank.reshape(-1), stable=True)
        inv_perm = torch.empty_like(perm)
        inv_perm[perm] = torch.arange(num_tokens)
        token_regions = reg.reshape(-1)[perm]

        allowed_pairs, block_len = _block_pair_counts(frame, token_regions, fmask, block_size)
        full = allowed_pairs == block_len[:, None] * block_len[None, :]
        kv_indptr, kv_indices, block_full = _csr(allowed_pairs > 0, full)
        plan = cls(
            num_frames=num_frames,
            tokens_per_frame=per_frame,
            block_size=block_size,
            exact=bool(exact),
            perm=perm,
            inv_perm=inv_perm,
            frame_mask=fmask.clone(),
            token_frame=frame,
            token_regions=token_regions,
            kv_indptr=kv_indptr,
            kv_indices=kv_indices,
            block_full=block_full,
            grid=grid,  # type: ignore[arg-type]
        )
        log.debug(
            "sparse plan: %d frames x %d tokens, block %d: block density %.3f (%d of %d pairs)",
            num_frames, per_frame, block_size, plan.density, plan.nnz, plan.num_blocks**2,
        )  # fmt: skip
        return plan

    @classmethod
    def dense(
        cls, num_tokens: int, block_size: int = DEFAULT_BLOCK_SIZE, num_frames: int = 1
    ) -> SparsePlan:
        """Full attention over ``num_tokens`` tokens (identity permutation, every block)."""
        if num_frames <= 0 or num_tokens <= 0 or num_tokens % num_frames:
            raise InputError(
                f"dense plan: {num_tokens} tokens do not split into {num_frames} frame(s)"
            )
        regions = torch.ones(num_frames, num_tokens // num_frames, dtype=torch.int64)
        frame_mask = torch.ones(num_frames, num_frames, dtype=torch.bool)
        return cls.build(frame_mask, regions, block_size=block_size)

    @classmethod
    def from_frame_mask(
        cls,
        frame_mask: torch.Tensor | np.ndarray,
        tokens_per_frame: int,
        block_size: int = DEFAULT_BLOCK_SIZE,
    ) -> SparsePlan:
        """A frame-level pattern only (e.g. ``block_causal_frame_mask``): every token of a
        kept frame pair attends, no region restriction; partial blocks masked exactly."""
        fmask = check_frame_mask(frame_mask)
        if tokens_per_frame <= 0:
            raise InputError(f"tokens_per_frame must be positive, got {tokens_per_frame}")
        regions = torch.ones(fmask.shape[0], tokens_per_frame, dtype=torch.int64)
        return cls.build(fmask, regions, block_size=block_size, exact=True)

    # ----------------------------------------------------------------- properties
    @property
    def num_tokens(self) -> int:
        """L = T * N."""
        return self.num_frames * self.tokens_per_frame

    @property
    def num_blocks(self) -> int:
        """Blocks along the (sorted) sequence; the last one may be shorter."""
        return len(self.kv_indptr) - 1

    @property
    def nnz(self) -> int:
        """Kept block pairs."""
        return len(self.kv_indices)

    @property
    def density(self) -> float:
        """Kept block pairs / all block pairs (work relative to dense, at block level)."""
        return self.nnz / float(self.num_blocks**2)

    @property
    def token_density(self) -> float:
        """Allowed token pairs of Eq. 3 / L^2 (from segment counts, no ``[L, L]`` mask)."""
        allowed, _ = _block_pair_counts(
            self.token_frame, self.token_regions, self.frame_mask, self.num_tokens
        )
        return float(allowed.sum()) / float(self.num_tokens) ** 2

    def summary(self) -> dict[str, float | int]:
        """What the plan does, for logs and reports: sizes, block and token densities,
        and the mean number of key frames a query frame keeps (diagonal included)."""
        return {
            "frames": self.num_frames,
            "tokens_per_frame": self.tokens_per_frame,
            "block_size": self.block_size,
            "block_density": self.density,
            "token_density": self.token_density,
            "frames_per_query": float(self.frame_mask.sum()) / self.num_frames,
        }

    def block_rows(self) -> torch.Tensor:
        """``[nnz]`` int64: the query block of each kept block pair."""
        return torch.repeat_interleave(
            torch.arange(self.num_blocks), self.kv_indptr[1:] - self.kv_indptr[:-1]
        )

    def block_mask(self) -> torch.Tensor:
        """``[num_blocks, num_blocks]`` bool, kept block pairs."""
        mask = torch.zeros(self.num_blocks, self.num_blocks, dtype=torch.bool)
        mask[self.block_rows(), self.kv_indices] = True
        return mask

    def with_block_mask(self, block_mask: torch.Tensor) -> SparsePlan:
        """The same permutation with another set of kept block pairs (``[NB, NB]`` bool).

        For experiments (e.g. forcing a block density in benchmarks). The result computes
        every kept block fully (``exact=False``); each query block must keep some key block.
        """
        block_mask = torch.as_tensor(block_mask).cpu()
        nb = self.num_blocks
        if block_mask.shape != (nb, nb) or block_mask.dtype != torch.bool:
            raise InputError(
                f"block mask: expected [{nb}, {nb}] bool, got {list(block_mask.shape)}"
            )
        if not block_mask.any(dim=1).all():
            raise InputError("block mask: every query block must keep at least one key block")
        allowed_pairs, block_len = _block_pair_counts(
            self.token_frame, self.token_regions, self.frame_mask, self.block_size
        )
        full = allowed_pairs == block_len[:, None] * block_len[None, :]
        kv_indptr, kv_indices, block_full = _csr(block_mask, full)
        return replace(
            self,
            exact=False,
            kv_indptr=kv_indptr,
            kv_indices=kv_indices,
            block_full=block_full,
            _cache={},
        )

    def sorted_token_mask(self) -> torch.Tensor:
        """Effective ``[L, L]`` bool mask in sorted order (dense: tests / small shapes)."""
        block = torch.arange(self.num_tokens) // self.block_size
        mask = self.block_mask()[block[:, None], block[None, :]]
        if self.exact:
            f, reg = self.token_frame, self.token_regions
            mask &= pair_allowed(
                f[:, None], reg[:, None], f[None, :], reg[None, :], self.frame_mask
            )
        return mask

    def token_mask(self) -> torch.Tensor:
        """Effective ``[L, L]`` bool mask in original token order: what the kernels compute.

        Equals :func:`input_aware_token_mask` when ``exact``, a block-pooled superset of it
        otherwise. Dense: for tests and small shapes.
        """
        return self.sorted_token_mask()[self.inv_perm[:, None], self.inv_perm[None, :]]

    def frame_regions(self) -> torch.Tensor:
        """``[T, N]`` int64 region bitmasks in original token order."""
        return self.token_regions[self.inv_perm].reshape(self.num_frames, self.tokens_per_frame)

    def reference_token_mask(self) -> torch.Tensor:
        """:func:`input_aware_token_mask` of the plan's inputs, original order (dense)."""
        return input_aware_token_mask(self.frame_mask, self.frame_regions())

    # ----------------------------------------------------------------- kernel support
    def check_length(self, length: int) -> None:
        """Raise :class:`InputError` unless tensors of ``length`` tokens fit this plan."""
        if length != self.num_tokens:
            raise InputError(
                f"sparse attention: the plan is for {self.num_tokens} tokens "
                f"({self.num_frames} frames x {self.tokens_per_frame}), got {length}"
            )

    def check_grid(self, frames: int, height: int, width: int, where: str = "plan") -> None:
        """Raise :class:`InputError` unless the plan is for ``frames`` latent frames of an
        ``height x width`` token grid (a plan built from ``[T, N]`` regions checks ``N``)."""
        shape = self.grid if self.grid is not None else (self.tokens_per_frame,)
        wanted = (height, width) if self.grid is not None else (height * width,)
        if frames != self.num_frames or shape != wanted:
            raise InputError(
                f"{where}: the sparse plan is for {self.num_frames} frames of "
                f"{' x '.join(map(str, shape))} tokens, the input has {frames} frames of "
                f"{' x '.join(map(str, wanted))}"
            )

    def chunk_mask(
        self, query_frames: Sequence[int], key_frames: Sequence[int], device: torch.device
    ) -> torch.Tensor:
        """The plan's exact mask for queries of some frames against keys of others,
        ``[len(query_frames) * N, len(key_frames) * N]`` bool (cached per frame lists and
        device).

        Queries: the tokens of ``query_frames`` (absolute frame indices), frame after frame
        in original token order; keys likewise for ``key_frames`` (e.g. the frames a KV
        cache holds, then the chunk's own). Query token ``i`` attends key token ``j`` iff
        Eq. 3 with the frame mask allows it (:func:`pair_allowed`).
        """
        key = ("chunk_mask", tuple(query_frames), tuple(key_frames), torch.device(device))
        return self.cached(key, lambda: self._chunk_mask(query_frames, key_frames).to(device))

    def _chunk_mask(self, query_frames: Sequence[int], key_frames: Sequence[int]) -> torch.Tensor:
        queries = torch.tensor(list(query_frames), dtype=torch.int64)
        keys = torch.tensor(list(key_frames), dtype=torch.int64)
        frames = torch.cat([queries, keys])
        if len(frames) == 0 or int(frames.min()) < 0 or int(frames.max()) >= self.num_frames:
            raise InputError(
                f"sparse plan: frames {frames.tolist()} outside the plan's {self.num_frames}"
            )
        regions = self.frame_regions()
        per_frame = self.tokens_per_frame
        q_frame, k_frame = (f.repeat_interleave(per_frame) for f in (queries, keys))
        q_regions, k_regions = regions[queries].reshape(-1), regions[keys].reshape(-1)
        return pair_allowed(
            q_frame[:, None], q_regions[:, None], k_frame[None, :], k_regions[None, :],
            self.frame_mask,
        )  # fmt: skip

    def cached(self, key: Any, make: Callable[[], Any]) -> Any:
        """Per-plan memo for derived kernel data (schedules, device copies, block masks)."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def on(self, device: torch.device | str) -> dict[str, torch.Tensor]:
        """The plan's tensors on ``device`` (cached)."""
        device = torch.device(device)
        names = ("perm", "inv_perm", "frame_mask", "token_frame", "token_regions", "kv_indptr",
                 "kv_indices", "block_full")  # fmt: skip
        return self.cached(
            ("tensors", device), lambda: {n: getattr(self, n).to(device) for n in names}
        )


def _block_pair_counts(
    token_frame: torch.Tensor,
    token_regions: torch.Tensor,
    frame_mask: torch.Tensor,
    block_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Allowed token pairs per block pair ``[NB, NB]`` and tokens per block ``[NB]`` (float64).

    Works on (frame, region bitmask) segments: with ``C [NB, S]`` the token count of each segment in
    each block and ``G [S, S]`` whether a segment pair is allowed, the allowed token pairs
    of block pair (a, b) are ``(C @ G @ C^T)[a, b]``; no ``[L, L]`` tensor is formed.
    """
    num_tokens = len(token_frame)
    segments, segment = torch.unique(
        torch.stack([token_frame, token_regions], dim=1), dim=0, return_inverse=True
    )
    num_blocks = -(-num_tokens // block_size)
    block = torch.arange(num_tokens) // block_size
    counts = torch.bincount(
        block * len(segments) + segment, minlength=num_blocks * len(segments)
    ).reshape(num_blocks, len(segments))
    seg_frame, seg_regions = segments[:, 0], segments[:, 1]
    allowed = pair_allowed(
        seg_frame[:, None], seg_regions[:, None], seg_frame[None, :], seg_regions[None, :],
        frame_mask,
    )  # fmt: skip
    counts = counts.to(torch.float64)
    return counts @ allowed.to(torch.float64) @ counts.T, counts.sum(dim=1)


def _csr(kept: torch.Tensor, full: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Kept block pairs ``[NB, NB]`` -> ``kv_indptr [NB + 1]``, ``kv_indices [nnz]``
    (row-major, ascending per row) and the ``full`` flag of each kept pair ``[nnz]``."""
    rows, cols = kept.nonzero(as_tuple=True)
    kv_indptr = torch.zeros(len(kept) + 1, dtype=torch.int64)
    kv_indptr[1:] = torch.cumsum(kept.sum(dim=1), dim=0)
    return kv_indptr, cols, full[rows, cols]
