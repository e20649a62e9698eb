"""Input-aware sparse attention (paper Sec. 3.2): masks, the block-sparse plan, kernels.

sim = pose_frame_similarity(pose)                 # [T, T]   (cospeech.pose.similarity)
frame_mask = global_frame_mask(sim, k=4)          # Eq. 2
regions = region_token_masks(pose)                # [T, h, w] bitmasks (cospeech.pose.raster)
plan = SparsePlan.build(frame_mask, regions)      # region sort + 128-blocks
out = sparse_attention(q, k, v, plan)             # [B, H, L, D], original order

``pose_plan(pose, k=4)`` (:mod:`cospeech.attention.pose_plan`) does the first four lines
at video -> latent frame resolution and logs the plan's density.
"""

from cospeech.attention.kernels import (
    BACKENDS,
    flashinfer_available,
    resolve_backend,
    sparse_attention,
)
from cospeech.attention.masks import (
    block_causal_frame_mask,
    global_frame_mask,
    input_aware_token_mask,
)
from cospeech.attention.plan import DEFAULT_BLOCK_SIZE, SparsePlan

__all__ = [
    "BACKENDS",
    "DEFAULT_BLOCK_SIZE",
    "SparsePlan",
    "block_causal_frame_mask",
    "flashinfer_available",
    "global_frame_mask",
    "input_aware_token_mask",
    "resolve_backend",
    "sparse_attention",
]
