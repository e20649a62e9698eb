"""Per-latent weights of a training loss from the pose: more weight on chosen body regions.

A flow-matching loss averaged over the latent grid spends almost nothing on the mouth: at
128 x 128 the face covers about a tenth of the 16 x 16 latent grid and the mouth lies
inside one latent cell. Weighting the tokens of a region (the paper's pose-masked region
terms, method.md §3) makes the model spend its capacity where the eye looks.

``weights = {"face": 4.0}`` gives every latent element inside the face region weight
``1 + 4``, every other weight 1; :func:`weighted_mse` normalises by the weights' sum so the
loss keeps the scale of a plain MSE. Regions come from :func:`cospeech.pose.raster.
region_token_masks` with :data:`~cospeech.pose.regions.BODY_REGIONS` (each hand its own
region) on the latent grid (one token per latent pixel); where regions overlap (a hand
in front of the face) the largest of their weights applies.

Besides the body regions, ``"mouth"`` names the latents around the lips (the hull of the
lip keypoints, dilated by one token; :func:`cospeech.pose.raster.keypoint_token_mask`):
the lip gap is a pixel or three at demo scale, so even a face weight leaves it a sliver of
the loss. The mouth weight replaces the face weight where both apply.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from cospeech.errors import InputError
from cospeech.models.vae.loss import weighted_mean
from cospeech.pose.raster import keypoint_token_mask, region_token_masks
from cospeech.pose.regions import BODY_REGIONS, region_bits
from cospeech.pose.schema import MOUTH
from cospeech.pose.sequence import PoseSequence

WEIGHT_REGIONS = (*BODY_REGIONS, "mouth")
"""Names a region weight may take: the body regions and the mouth."""


def check_region_weights(weights: Mapping[str, float], where: str) -> dict[str, float]:
    """``weights`` as ``{region: extra weight >= 0}``, or an :class:`InputError`."""
    if not isinstance(weights, Mapping):
        raise InputError(f"{where}: region weights must be a mapping region -> weight")
    unknown = sorted(set(weights) - set(WEIGHT_REGIONS))
    if unknown:
        raise InputError(f"{where}: unknown region(s) {unknown}; regions: {list(WEIGHT_REGIONS)}")
    out = {}
    for name, value in weights.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise InputError(f"{where}: the weight of {name} must be a number >= 0, got {value!r}")
        out[name] = float(value)
    return out


def region_weight_maps(
    keypoints: torch.Tensor,
    size: tuple[int, int],
    weights: Mapping[str, float],
    time_stride: int,
    space_stride: int,
) -> torch.Tensor:
    """Loss weights ``[B, 1, T_latent, h, w]`` for windows of keypoints ``[B, F, 133, 3]``.

    ``size`` = ``(height, width)`` of the frames the keypoints live in (pixels); ``h =
    height / space_stride``, ``w = width / space_stride``, ``T_latent = 1 + ceil((F - 1) /
    time_stride)`` (latent 0 is frame 0, latent ``i`` frames ``4i-3 .. 4i``). A latent
    element gets ``1 + weights[region]`` where its token lies in that region (the largest
    such weight where regions overlap), 1 elsewhere (``1 + weights["mouth"]`` around the
    lips).
    """
    height, width = size
    bits = region_bits(BODY_REGIONS)
    maps = []
    for window in keypoints.detach().cpu().numpy().astype(np.float32):
        pose = PoseSequence(window, fps=25.0, width=width, height=height)
        regions = region_token_masks(
            pose,
            time_stride=time_stride,
            space_stride=space_stride,
            patch=(1, 1, 1),
            regions=BODY_REGIONS,
        )
        window_map = np.ones(regions.shape, np.float32)
        for name, extra in weights.items():
            if name in bits:
                inside = (regions & bits[name]) != 0
                window_map[inside] = np.maximum(window_map[inside], 1.0 + extra)
        if "mouth" in weights:
            mouth = keypoint_token_mask(
                pose, MOUTH, time_stride=time_stride, space_stride=space_stride, patch=(1, 1, 1)
            )
            window_map[mouth] = 1.0 + weights["mouth"]
        maps.append(window_map)
    return torch.from_numpy(np.stack(maps))[:, None].to(keypoints.device)


def weighted_mse(
    prediction: torch.Tensor, target: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """``sum(w (p - t)^2) / sum(w)`` with ``weights`` broadcast to the shape of ``prediction``."""
    return weighted_mean((prediction - target).square(), weights.to(prediction.dtype))
