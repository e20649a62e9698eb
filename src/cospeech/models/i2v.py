"""How the teacher is conditioned: Wan-style I2V channels, pose maps, condition dropout.

The video DiT's input is the noisy latent followed by ``in_dim - out_dim`` conditioning
channels (Wan2.1 I2V): :data:`MASK_CHANNELS` mask channels, 1 on the latent frame that
carries the reference image, then the reference image's latent in that frame. Here the
reference is an *appearance* reference (the identity's photo, in its own pose), so it sits
in the slot of latent frame 0 whatever frame the window starts at; the DiT adds the
encoded reference pose map to the same slot, and the pose maps of the window say where
every body part goes.

The three conditions are named as :class:`cospeech.diffusion.Guidance` sees them:
``pose`` (pose maps of the window), ``reference`` (the frame-0 conditioning slot) and
``ref_pose`` (pose map of the reference). Their null value is zeros, both for the
condition dropout of training and for the unconditional branch of guidance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from cospeech.errors import InputError
from cospeech.latent_geometry import TIME_STRIDE
from cospeech.media.pixels import pixels_to_tensor
from cospeech.pose.draw import draw_pose

MASK_CHANNELS = 4
CONDITION_NAMES = ("pose", "reference", "ref_pose")
STUDENT_KIND = "causal-student"


@dataclass
class StudentSampling:
    """``sampling.json`` of a student folder: how the pipeline runs it (written by the
    ``distill`` stage, read by :mod:`cospeech.pipeline`).

    ``kind``: :data:`STUDENT_KIND`; ``steps`` / ``shift``: the step list and its warp
    (:func:`cospeech.diffusion.step_list_sigmas`, sampled by
    :func:`cospeech.diffusion.sample_few_step`, no guidance); ``chunk_frames``: latent
    frames per chunk; ``cache_sink`` / ``cache_window``: KV-cache chunks (window 0 = all);
    ``attention``, ``k``, ``block_size``: the causal sparse plan of the pose (``dense``:
    none); ``window``: latent frames per training window; ``size``, ``fps``: frames.
    """

    kind: str
    steps: list[float]
    shift: float
    chunk_frames: int
    cache_sink: int
    cache_window: int
    attention: str
    k: int
    block_size: int
    window: int
    size: int
    fps: float = 25.0


def chunk_video_range(start: int, stop: int) -> tuple[int, int]:
    """Video frames ``[first, last)`` whose pose maps condition latent frames ``start ..
    stop - 1`` of a causal chunk: ``1 + 4(n-1)`` frames from frame 0, ``4n`` later (the
    VAE's grouping: latent ``i >= 1`` covers video frames ``4i-3 .. 4i``)."""
    return max(0, TIME_STRIDE * start - (TIME_STRIDE - 1)), TIME_STRIDE * (stop - 1) + 1


def chunk_conditions(
    conditions: Mapping[str, Tensor], start: int, stop: int, first_frame: int = 0
) -> dict[str, Tensor]:
    """The conditions of latent frames ``start .. stop - 1``: the pose maps of the video
    frames they cover (:func:`chunk_video_range`; ``conditions["pose"]`` holds the maps
    from video frame ``first_frame`` on), the reference slot on the first chunk only (zeros
    later: no reference mask on later frames)."""
    first, last = chunk_video_range(start, stop)
    reference = conditions["reference"]
    return {
        "pose": conditions["pose"][:, :, first - first_frame : last - first_frame],
        "reference": reference if start == 0 else torch.zeros_like(reference),
        "ref_pose": conditions["ref_pose"],
    }


def reference_slot(reference_latent: Tensor) -> Tensor:
    """Reference latent ``[B, C, 1, h, w]`` -> frame-0 conditioning ``[B, 4 + C, 1, h, w]``
    (mask channels of ones, then the latent)."""
    if reference_latent.ndim != 5 or reference_latent.shape[2] != 1:
        raise InputError(
            f"reference latent: expected [B, C, 1, h, w], got {list(reference_latent.shape)}"
        )
    b, _, _, h, w = reference_latent.shape
    mask = reference_latent.new_ones(b, MASK_CHANNELS, 1, h, w)
    return torch.cat([mask, reference_latent], dim=1)


def condition_channels(reference: Tensor, frames: int) -> Tensor:
    """Frame-0 slot ``[B, 4 + C, 1, h, w]`` -> conditioning ``[B, 4 + C, frames, h, w]``
    (zeros on every later latent frame)."""
    pad = reference.new_zeros(*reference.shape[:2], frames - 1, *reference.shape[3:])
    return torch.cat([reference, pad], dim=2)


class ConditionedFlow:
    """The flow model as the samplers call it: ``flow(x, t, pose=, reference=, ref_pose=)``.

    ``x`` ``[B, C, T, h, w]`` noisy latents; ``t`` ``[B]`` timesteps in [0, 1000];
    ``pose`` ``[B, 3, 1 + 4(T - 1), 8h, 8w]`` pose maps in [-1, 1]; ``reference``
    ``[B, 4 + C, 1, h, w]`` (:func:`reference_slot`); ``ref_pose`` ``[B, 3, 8h, 8w]``.
    Returns the flow ``[B, C, T, h, w]`` (float32).
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __call__(
        self, x: Tensor, t: Tensor, *, pose: Tensor, reference: Tensor, ref_pose: Tensor
    ) -> Tensor:
        channels = condition_channels(reference.to(x.dtype), x.shape[2])
        return self.model(torch.cat([x, channels], dim=1), t, pose=pose, ref_pose=ref_pose)


def drop_conditions(
    conditions: Mapping[str, Tensor], probability: float, generator: torch.Generator | None = None
) -> dict[str, Tensor]:
    """Condition dropout for guidance: each sample loses all its conditions (zeros) with
    ``probability``, drawn per sample from ``generator`` (torch's global RNG if None)."""
    out = dict(conditions)
    if probability <= 0:
        return out
    first = next(iter(conditions.values()))
    keep = torch.rand(first.shape[0], generator=generator) >= probability
    for name in CONDITION_NAMES:
        value = conditions[name]
        shape = (value.shape[0],) + (1,) * (value.ndim - 1)
        out[name] = value * keep.to(device=value.device, dtype=value.dtype).view(shape)
    return out


def window_frame_indices(start: int, latents: int, num_frames: int) -> np.ndarray:
    """Video frames whose pose maps condition the window of ``latents`` latent frames that
    starts at latent ``start``: ``4 start .. 4 (start + latents - 1)`` (the first latent of
    the window gets the last frame of its group), clamped to the last of ``num_frames``."""
    first = TIME_STRIDE * start
    indices = np.arange(first, first + TIME_STRIDE * (latents - 1) + 1)
    return np.minimum(indices, num_frames - 1)


def pose_maps(keypoints: np.ndarray, size: int) -> Tensor:
    """Keypoints ``[F, 133, 3]`` in output pixels -> pose maps ``[1, 3, F, size, size]`` in
    [-1, 1] (:func:`cospeech.pose.draw.draw_pose`, as the training data draws them)."""
    maps = np.stack([draw_pose(k, size, size) for k in keypoints])
    return pixels_to_tensor(maps)[None]


def reference_pose_map(keypoints: np.ndarray, size: int) -> Tensor:
    """Reference keypoints ``[133, 3]`` -> pose map ``[1, 3, size, size]`` in [-1, 1]."""
    return pose_maps(keypoints[None], size)[:, :, 0]
