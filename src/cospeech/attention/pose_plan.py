"""The sparse plan of a pose sequence: what a model runs with (paper Sec. 3.2).

pose -> per-point rigid distances (Eq. 1) -> latent-frame distances -> global mask
(K most similar past frames, Eq. 2) + region bitmasks on the token grid (Eq. 3) ->
:class:`~cospeech.attention.plan.SparsePlan`. Every plan built here is logged at INFO
with its realised density, so a plan that falls back to (nearly) dense shows in the log;
:meth:`SparsePlan.summary` gives the same numbers to a caller that reports them.
"""

from __future__ import annotations

import logging

import numpy as np

from cospeech.attention.masks import global_frame_mask, latent_frame_similarity
from cospeech.attention.plan import DEFAULT_BLOCK_SIZE, SparsePlan
from cospeech.errors import InputError
from cospeech.latent_geometry import SPACE_STRIDE, TIME_STRIDE
from cospeech.pose.raster import region_token_masks
from cospeech.pose.sequence import PoseSequence
from cospeech.pose.similarity import pose_frame_similarity

log = logging.getLogger(__name__)


def pose_plan(
    pose: PoseSequence,
    k: int = 4,
    block_size: int = DEFAULT_BLOCK_SIZE,
    exact: bool = False,
    *,
    time_stride: int = TIME_STRIDE,
    space_stride: int = SPACE_STRIDE,
    patch: tuple[int, int, int] = (1, 2, 2),
    causal: bool = True,
    sink_frames: int = 1,
    local: bool = True,
) -> SparsePlan:
    """The :class:`SparsePlan` of ``pose`` for a model's latent token grid.

    ``time_stride``/``space_stride``: the VAE's; ``patch``: the DiT's patch size. The plan
    covers ``1 + ceil((F - 1) / time_stride)`` latent frames of ``H / (space_stride *
    patch_h)`` x ``W / (space_stride * patch_w)`` tokens (checked against the model's
    input when it runs). ``k``, ``causal``, ``sink_frames``: :func:`global_frame_mask`.
    ``local``: also the region mask (Eq. 3); False keeps the global frame mask only (every
    token of a kept frame pair attends: the ablation without the local mask).
    """
    if patch[0] != 1:
        raise InputError(
            f"pose_plan: the global mask is per latent frame; patch_t must be 1, got {patch}"
        )
    similarity = latent_frame_similarity(pose_frame_similarity(pose), time_stride)
    frame_mask = global_frame_mask(similarity, k=k, causal=causal, sink_frames=sink_frames)
    if local:
        regions = region_token_masks(
            pose, time_stride=time_stride, space_stride=space_stride, patch=patch
        )
    else:  # one region covering every token: only the frame mask restricts attention
        cell_h, cell_w = space_stride * patch[1], space_stride * patch[2]
        shape = (len(frame_mask), pose.height // cell_h, pose.width // cell_w)
        regions = np.ones(shape, dtype=np.int64)
    plan = SparsePlan.build(frame_mask, regions, block_size=block_size, exact=exact)
    stats = plan.summary()
    log.info(
        "sparse attention plan (K=%d%s): %d latent frames x %d tokens, %.1f frames per query, "
        "block density %.3f, token density %.3f",
        k, "" if local else ", global only", stats["frames"], stats["tokens_per_frame"],
        stats["frames_per_query"], stats["block_density"], stats["token_density"],
    )  # fmt: skip
    return plan
