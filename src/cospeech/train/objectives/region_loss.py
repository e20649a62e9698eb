"""The input-aware region loss of the paper (Eq. 5):

    L_region = sum_r lambda_r L_r(m_r * x, m_r * x_hat)

``x``: the ground-truth frames, ``x_hat``: the student's frames (its latents decoded by the
VAE, with gradient), ``m_r``: the pixel mask of region ``r`` in each frame, from that
frame's pose (:func:`region_pixel_masks`). The paper's ``L_r``: the L2 distance of ArcFace
embeddings on the face, LPIPS on the other regions. Neither network's weights can be
downloaded here; with weight files given (:func:`cospeech.eval.networks.arcface.
load_arcface`, :func:`cospeech.eval.networks.lpips.load_lpips`) they are used
(:class:`ArcFaceDistance`, :class:`LPIPSDistance`). Without them every region uses
:class:`VAEFeatureDistance`, a substitute that exists here: an LPIPS-style distance over
the activations of the project's own VAE encoder (no learned layer weights, no face
identity network). It is a perceptual feature distance, not a face-identity measure.

**Background** (an extension, off by default): the paper's regions cover the person only.
``background`` (:data:`LOSS_REGIONS`) is the pixels outside every region; with a weight it
adds the perceptual term there, which the few-step student otherwise learns only through
DMD (on the synthetic corpus most of its SSIM gap to the teacher is in the background).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cospeech.models.vae import TinyVideoVAE
from cospeech.pose.raster import region_token_masks
from cospeech.pose.regions import ATTENTION_REGIONS, region_bits
from cospeech.pose.sequence import PoseSequence

REGIONS = tuple(ATTENTION_REGIONS)
"""The person's regions of Eq. 5: the paper's R (face, hands, arms, shoulders, body)."""

BACKGROUND = "background"
LOSS_REGIONS = (*REGIONS, BACKGROUND)
"""The regions the loss can weight, in mask order: :data:`REGIONS`, then the pixels outside
all of them."""

ARCFACE_SIZE = 112

ImageDistance = Callable[[Tensor, Tensor, Tensor], Tensor]
"""``distance(x, y, mask)``: masked images ``[N, 3, H, W]`` in [-1, 1] and their mask
``[N, 1, H, W]`` -> per-image distances ``[N]``."""


def region_pixel_masks(keypoints: Tensor, size: tuple[int, int], space_stride: int) -> Tensor:
    """Region masks ``[B, R + 1, F, H, W]`` (float 0/1, in :data:`LOSS_REGIONS` order: the
    person's regions, then the background) of windows of keypoints ``[B, F, 133, 3]`` in
    pixels of frames of ``size`` = (H, W).

    Each frame's regions are rasterised on the latent grid (``space_stride`` pixels per
    cell, the attention masks' margins, :func:`cospeech.pose.raster.region_token_masks`)
    and repeated to pixels, so the loss masks match the attention regions.
    """
    height, width = size
    bits = region_bits(ATTENTION_REGIONS)
    masks = []
    for window in keypoints.detach().cpu().numpy().astype(np.float32):
        pose = PoseSequence(window, fps=25.0, width=width, height=height)
        regions = region_token_masks(
            pose, time_stride=1, space_stride=space_stride, patch=(1, 1, 1),
            regions=ATTENTION_REGIONS,
        )  # fmt: skip
        person = [(regions & bits[name]) != 0 for name in REGIONS]
        masks.append(np.stack([*person, regions == 0]))
    grid = torch.from_numpy(np.stack(masks)).float()
    pixels = grid.repeat_interleave(space_stride, dim=-2).repeat_interleave(space_stride, dim=-1)
    return pixels.to(keypoints.device)


def region_loss(
    prediction: Tensor,
    target: Tensor,
    masks: Tensor,
    weights: Mapping[str, float],
    distances: Mapping[str, ImageDistance],
) -> tuple[Tensor, dict[str, float]]:
    """Eq. 5 for videos ``[B, 3, F, H, W]`` in [-1, 1] and masks ``[B, R + 1, F, H, W]``
    (:func:`region_pixel_masks`): ``sum_r weights[r] * mean over frames of distances[r](
    m_r * prediction, m_r * target)``. Regions without a weight (or weight 0) are skipped.
    Returns the loss and each region's mean distance (``region_<name>``)."""
    total = prediction.new_zeros(())
    metrics: dict[str, float] = {}
    for index, name in enumerate(LOSS_REGIONS):
        weight = weights.get(name, 0.0)
        if weight == 0:
            continue
        mask = _frames(masks[:, index : index + 1])
        distance = distances[name](_frames(prediction) * mask, _frames(target) * mask, mask)
        total = total + weight * distance.mean()
        metrics[f"region_{name}"] = distance.mean().item()
    return total, metrics


def _frames(video: Tensor) -> Tensor:
    """``[B, C, F, H, W]`` -> ``[B * F, C, H, W]``."""
    return video.transpose(1, 2).flatten(0, 1)


class VAEFeatureDistance(nn.Module):
    """Perceptual substitute: LPIPS's formula without its learned weights, over the frozen
    activations of a :class:`TinyVideoVAE` encoder (after its stem and both spatial
    down-samplings): at each tap, unit-normalise the channels, square the difference,
    sum over channels, average over positions; sum over taps. Zero for equal images."""

    def __init__(self, vae: TinyVideoVAE) -> None:
        super().__init__()
        self.vae = vae.eval().requires_grad_(False)
        encoder = vae.encoder
        self.taps = (encoder.stem, encoder.down0, encoder.down1)

    def features(self, images: Tensor) -> list[Tensor]:
        """Activations ``[N, C, h, w]`` of ``images`` ``[N, 3, H, W]`` at each tap."""
        found: list[Tensor] = []
        hooks = [tap.register_forward_hook(lambda m, i, o: found.append(o)) for tap in self.taps]
        try:
            self.vae.encode_posterior(images[:, :, None])  # each image a 1-frame video
        finally:
            for hook in hooks:
                hook.remove()
        return [f.permute(0, 3, 1, 2) for f in found]  # channels-last -> [N, C, h, w]

    def forward(self, x: Tensor, y: Tensor, mask: Tensor) -> Tensor:
        both = self.features(torch.cat([x, y]))
        terms = []
        for maps in both:
            fx, fy = F.normalize(maps.float(), dim=1, eps=1e-10).chunk(2)
            terms.append((fx - fy).square().sum(dim=1).mean(dim=(1, 2)))
        return torch.stack(terms).sum(dim=0)


class LPIPSDistance(nn.Module):
    """LPIPS (:class:`cospeech.eval.networks.lpips.LPIPS`, loaded from the user's weight
    files): ``lpips(x, y)`` -> ``[N]``."""

    def __init__(self, lpips: nn.Module) -> None:
        super().__init__()
        self.lpips = lpips.eval().requires_grad_(False)

    def forward(self, x: Tensor, y: Tensor, mask: Tensor) -> Tensor:
        return self.lpips(x, y)


class ArcFaceDistance(nn.Module):
    """Squared L2 distance of unit ArcFace embeddings of the face crops: the bounding box of
    each face mask, made square and resized to 112 x 112 (not landmark-aligned). Frames
    without face pixels count 0."""

    def __init__(self, arcface: nn.Module) -> None:
        super().__init__()
        self.arcface = arcface.eval().requires_grad_(False)

    def forward(self, x: Tensor, y: Tensor, mask: Tensor) -> Tensor:
        out = x.new_zeros(x.shape[0])
        for n in range(x.shape[0]):
            box = _square_box(mask[n, 0])
            if box is None:
                continue
            top, left, side = box
            crops = torch.stack([x[n], y[n]])[:, :, top : top + side, left : left + side]
            crops = F.interpolate(crops, size=(ARCFACE_SIZE, ARCFACE_SIZE), mode="bilinear")
            embeddings = F.normalize(self.arcface(crops).float(), dim=1)
            out[n] = (embeddings[0] - embeddings[1]).square().sum()
        return out


def _square_box(mask: Tensor) -> tuple[int, int, int] | None:
    """``(top, left, side)`` of the smallest square inside the image around the nonzero
    pixels of ``mask`` ``[H, W]``, or None when it is empty."""
    rows, cols = torch.nonzero(mask > 0, as_tuple=True)
    if rows.numel() == 0:
        return None
    height, width = mask.shape
    top, bottom = int(rows.min()), int(rows.max()) + 1
    left, right = int(cols.min()), int(cols.max()) + 1
    side = min(max(bottom - top, right - left), height, width)
    top = min(max(0, (top + bottom - side) // 2), height - side)
    left = min(max(0, (left + right - side) // 2), width - side)
    return top, left, side


def region_distances(
    vae: TinyVideoVAE, arcface: nn.Module | None = None, lpips: nn.Module | None = None
) -> dict[str, ImageDistance]:
    """``{region: distance}`` for :data:`LOSS_REGIONS`: ArcFace on the face and LPIPS
    elsewhere (the background included) when given, else the VAE-feature substitute."""
    substitute = VAEFeatureDistance(vae)
    rest = LPIPSDistance(lpips) if lpips is not None else substitute
    face = ArcFaceDistance(arcface) if arcface is not None else substitute
    return {name: face if name == "face" else rest for name in LOSS_REGIONS}
