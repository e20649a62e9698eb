"""Input-aware attention masks (paper Sec. 3.2, Eq. 1-3), as boolean "may attend" tensors.

``True`` means the pair is computed (mask value 0 in the paper), ``False`` means it is
suppressed (-inf). Frames are latent frames; tokens are numbered frame-major:
token ``t * N + i`` is token ``i`` of frame ``t``.

* :func:`global_frame_mask` -- Eq. 2: per query frame, itself plus the K past frames with
  the smallest pose distance S (a fixed budget: ties go to the most recent), plus the
  sink frames.
* :func:`input_aware_token_mask` -- Eq. 3 combined with the frame mask, per token pair:
  same frame always; other frames only if the frame pair is kept and the two tokens share
  a region ("exists r": their region bitmasks intersect, 0 = background). Dense
  ``[L, L]``: the reference for tests and small shapes;
  :class:`~cospeech.attention.plan.SparsePlan` never builds it.
"""

from __future__ import annotations

import numpy as np
import torch

from cospeech.errors import InputError
from cospeech.latent_geometry import TIME_STRIDE, latent_frame_ranges


def _as_tensor(value: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, torch.Tensor):
        return value
    raise InputError(f"{name}: expected a torch tensor or numpy array, got {type(value).__name__}")


def global_frame_mask(
    similarity: torch.Tensor | np.ndarray,
    k: int = 4,
    causal: bool = True,
    sink_frames: int = 1,
) -> torch.Tensor:
    """Frame-level mask of Eq. 2 from pose distances: a fixed budget of K frames per query.

    Args:
        similarity: ``[T, T]`` alignment errors S(t_q, t_k) (smaller = more similar;
            ``+inf`` = not comparable, e.g. a frame without a confident keypoint).
        k: K, the number of most similar past frames each query frame keeps. The
            candidates are ranked by S, ties (equal S, or ``+inf``) by recency, the most
            recent first, and exactly the first K are kept (all of them when there are
            K or fewer): K is a budget, so a still speaker or a poseless frame keeps its
            K most recent frames, never every past frame.
        causal: rank only past frames ``t_k < t_q`` (the paper). ``False`` ranks all
            other frames, for bidirectional models (ties: nearest in time, earlier first).
        sink_frames: the first ``sink_frames`` frames are always kept (in causal mode only
            by the frames at or after them: a sink never makes the mask look ahead). They
            are not candidates, so they do not use up the budget.

    Returns:
        ``[T, T]`` bool on the device of ``similarity``; ``[t_q, t_k]`` True = attend.
        The diagonal is always True; a row keeps at most ``K + sink_frames + 1`` frames.
    """
    sim = _as_tensor(similarity, "similarity")
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
        raise InputError(f"similarity: expected a square [T, T] matrix, got {list(sim.shape)}")
    if sim.shape[0] == 0:
        raise InputError("similarity: no frames")
    if sim.dtype == torch.bool or sim.is_complex():
        raise InputError(f"similarity: expected real values, got {sim.dtype}")
    sim = sim.to(torch.float64)
    _check_distances(sim)
    if int(k) != k or k < 0:
        raise InputError(f"k must be a non-negative integer, got {k}")
    if int(sink_frames) != sink_frames or sink_frames < 0:
        raise InputError(f"sink_frames must be a non-negative integer, got {sink_frames}")
    k, sink_frames = int(k), int(sink_frames)

    num_frames = sim.shape[0]
    idx = torch.arange(num_frames, device=sim.device)
    query, key = idx[:, None], idx[None, :]
    sinks = key < sink_frames
    candidate = (key < query if causal else key != query) & ~sinks
    keep = torch.eye(num_frames, dtype=torch.bool, device=sim.device)
    if k > 0:
        chosen = _top_k_by_recency(sim, candidate, k)
        valid = candidate.gather(1, chosen)
        keep[query.expand_as(chosen)[valid], chosen[valid]] = True
    keep |= sinks & (key <= query) if causal else sinks
    return keep


def _top_k_by_recency(sim: torch.Tensor, candidate: torch.Tensor, k: int) -> torch.Tensor:
    """``[T, min(k, T)]`` key frames per query row: candidates first, by S ascending, ties
    by distance in time ascending (then the earlier frame); non-candidates fill the rest
    (the caller drops them). Lexicographic order from stable sorts, least significant key
    first."""
    num_frames = sim.shape[0]
    idx = torch.arange(num_frames, device=sim.device)
    gap = (idx[None, :] - idx[:, None]).abs()
    order = torch.sort(gap, dim=1, stable=True).indices  # nearest in time first
    order = order.gather(1, sim.gather(1, order).sort(dim=1, stable=True).indices)
    rejected = (~candidate.gather(1, order)).to(torch.int8)
    order = order.gather(1, rejected.sort(dim=1, stable=True).indices)
    return order[:, : min(k, num_frames)]


def latent_frame_similarity(
    similarity: torch.Tensor | np.ndarray, time_stride: int = TIME_STRIDE
) -> torch.Tensor:
    """Video-frame distances ``[T, T]`` -> latent-frame distances ``[T_latent, T_latent]``.

    A causal video VAE maps video frame 0 to latent frame 0 and frames ``4i-3 .. 4i`` to
    latent frame ``i`` (:func:`cospeech.latent_geometry.latent_frame_ranges`); the distance of
    two latent frames is the mean distance over the pairs of video frames they cover.
    """
    sim = _as_tensor(similarity, "similarity")
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1] or sim.shape[0] == 0:
        raise InputError(f"similarity: expected a square [T, T] matrix, got {list(sim.shape)}")
    sim = sim.to(torch.float64)
    _check_distances(sim)
    ranges = latent_frame_ranges(sim.shape[0], int(time_stride))
    group = torch.zeros(len(ranges), sim.shape[0], dtype=torch.float64, device=sim.device)
    for i, (start, stop) in enumerate(ranges):
        group[i, start:stop] = 1.0
    # Mean over the pairs with a finite distance; +inf (no shared confident keypoint, see
    # pose.similarity) where no pair of the two latent frames has one.
    finite = torch.isfinite(sim)
    total = group @ torch.where(finite, sim, 0.0) @ group.T
    count = group @ finite.to(torch.float64) @ group.T
    return torch.where(count > 0, total / count.clamp_min(1.0), torch.inf)


def _check_distances(sim: torch.Tensor) -> None:
    """Distances are >= 0 or +inf ("not comparable": ranked last); NaN and -inf are errors."""
    if torch.isnan(sim).any() or (sim == -torch.inf).any():
        raise InputError("similarity: contains NaN or -inf values")


def flatten_regions(
    regions: torch.Tensor | np.ndarray, num_frames: int | None = None
) -> torch.Tensor:
    """Region bitmasks ``[T, N]`` or ``[T, h, w]`` as int64 ``[T, N]`` (validated)."""
    reg = _as_tensor(regions, "regions")
    if reg.ndim not in (2, 3):
        raise InputError(f"regions: expected [T, N] or [T, h, w], got {list(reg.shape)}")
    if reg.dtype == torch.bool or reg.is_floating_point() or reg.is_complex():
        raise InputError(f"regions: expected an integer bitmask tensor, got {reg.dtype}")
    reg = reg.reshape(reg.shape[0], -1).to(torch.int64)
    if num_frames is not None and reg.shape[0] != num_frames:
        raise InputError(
            f"regions: {reg.shape[0]} frames, but the frame mask has {num_frames} frames"
        )
    if reg.shape[1] == 0:
        raise InputError("regions: frames have no tokens")
    if reg.numel() and int(reg.min()) < 0:
        raise InputError("regions: region bitmasks must be >= 0 (0 = background)")
    return reg


def check_frame_mask(frame_mask: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A ``[T, T]`` bool frame mask (validated)."""
    mask = _as_tensor(frame_mask, "frame_mask")
    if mask.ndim != 2 or mask.shape[0] != mask.shape[1] or mask.shape[0] == 0:
        raise InputError(f"frame_mask: expected a square [T, T] matrix, got {list(mask.shape)}")
    if mask.dtype != torch.bool:
        raise InputError(f"frame_mask: expected a bool tensor, got {mask.dtype}")
    return mask


def pair_allowed(
    frame_q: torch.Tensor,
    regions_q: torch.Tensor,
    frame_k: torch.Tensor,
    regions_k: torch.Tensor,
    frame_mask: torch.Tensor,
) -> torch.Tensor:
    """Eq. 3 combined with the frame mask, for broadcastable token (frame, bitmask) tensors.

    Same frame: always; other frames: frame pair kept and a shared region
    (``regions_q & regions_k != 0``; background 0 shares none).
    """
    same_frame = frame_q == frame_k
    shared_region = (regions_q & regions_k) != 0
    return same_frame | (frame_mask[frame_q, frame_k] & shared_region)


def block_causal_frame_mask(num_frames: int, chunk_frames: int) -> torch.Tensor:
    """``[T, T]`` bool: a frame attends every frame of its own chunk and of earlier chunks
    (chunks of ``chunk_frames`` latent frames, as in CausVid / Self-Forcing)."""
    if num_frames <= 0 or chunk_frames <= 0:
        raise InputError(
            f"block_causal_frame_mask: need num_frames > 0 and chunk_frames > 0, "
            f"got {num_frames}, {chunk_frames}"
        )
    chunk = torch.arange(num_frames) // chunk_frames
    return chunk[None, :] <= chunk[:, None]


def input_aware_token_mask(
    frame_mask: torch.Tensor | np.ndarray, regions: torch.Tensor | np.ndarray
) -> torch.Tensor:
    """Dense token mask ``[T*N, T*N]`` bool, frame-major token order (Eq. 3 + Eq. 2).

    Args:
        frame_mask: ``[T, T]`` bool from :func:`global_frame_mask` (or any frame pattern).
        regions: ``[T, N]`` or ``[T, h, w]`` int region bitmasks
            (:func:`cospeech.pose.raster.region_token_masks`), 0 = background.
    """
    fmask = check_frame_mask(frame_mask)
    reg = flatten_regions(regions, fmask.shape[0]).to(fmask.device)
    num_frames, per_frame = reg.shape
    frame = torch.arange(num_frames, device=fmask.device).repeat_interleave(per_frame)
    flat = reg.reshape(-1)
    return pair_allowed(frame[:, None], flat[:, None], frame[None, :], flat[None, :], fmask)
