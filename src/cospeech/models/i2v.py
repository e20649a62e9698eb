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

A warp-conditioned model (``warp_dim > 0``, :func:`expand_for_warp`) takes a fourth,
``warped``: the reference warped to every frame's pose, as latents plus a validity channel
(:func:`cospeech.models.warp_condition.warp_condition`), concatenated after the
conditioning channels of every latent frame and dropped (zeros) with the others
(:func:`condition_names`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor, nn

from cospeech.errors import InputError
from cospeech.latent_geometry import TIME_STRIDE
from cospeech.media.pixels import pixels_to_tensor
from cospeech.models.dit import VideoDiT
from cospeech.models.warp_condition import warp_window
from cospeech.pose.draw import draw_pose

MASK_CHANNELS = 4
CONDITION_NAMES = ("pose", "reference", "ref_pose")
WARP_CONDITION = "warped"
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


def condition_names(warp: bool = False) -> tuple[str, ...]:
    """The conditions that condition dropout and guidance's unconditional branch zero:
    :data:`CONDITION_NAMES`, plus :data:`WARP_CONDITION` for a warp-conditioned model."""
    return (*CONDITION_NAMES, WARP_CONDITION) if warp else CONDITION_NAMES


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
    later: no reference mask on later frames), and ``warped`` latent frames ``start ..
    stop - 1`` when given (it holds the whole clip from latent frame 0)."""
    first, last = chunk_video_range(start, stop)
    reference = conditions["reference"]
    chunk = {
        "pose": conditions["pose"][:, :, first - first_frame : last - first_frame],
        "reference": reference if start == 0 else torch.zeros_like(reference),
        "ref_pose": conditions["ref_pose"],
    }
    if WARP_CONDITION in conditions:
        chunk[WARP_CONDITION] = warp_window(conditions[WARP_CONDITION], start, stop)
    return chunk


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
    """The flow model as the samplers call it: ``flow(x, t, pose=, reference=, ref_pose=)``
    (and ``warped=`` for a warp-conditioned model).

    ``x`` ``[B, C, T, h, w]`` noisy latents; ``t`` ``[B]`` timesteps in [0, 1000];
    ``pose`` ``[B, 3, 1 + 4(T - 1), 8h, 8w]`` pose maps in [-1, 1]; ``reference``
    ``[B, 4 + C, 1, h, w]`` (:func:`reference_slot`); ``ref_pose`` ``[B, 3, 8h, 8w]``;
    ``warped`` ``[B, warp_dim, T, h, w]`` (the model's input is then ``x``, the
    conditioning channels, ``warped``). Returns the flow ``[B, C, T, h, w]`` (float32).
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __call__(
        self,
        x: Tensor,
        t: Tensor,
        *,
        pose: Tensor,
        reference: Tensor,
        ref_pose: Tensor,
        warped: Tensor | None = None,
    ) -> Tensor:
        inputs = [x, condition_channels(reference.to(x.dtype), x.shape[2])]
        if warped is not None:
            batch, _, frames, height, width = x.shape
            if warped.ndim != 5 or (warped.shape[0], *warped.shape[2:]) != (
                batch, frames, height, width
            ):  # fmt: skip
                raise InputError(
                    f"warped: expected [{batch}, warp_dim, {frames}, {height}, {width}] (the "
                    f"latents' grid), got {list(warped.shape)}"
                )
            inputs.append(warped.to(x.dtype))
        return self.model(torch.cat(inputs, dim=1), t, pose=pose, ref_pose=ref_pose)


def drop_conditions(
    conditions: Mapping[str, Tensor], probability: float, generator: torch.Generator | None = None
) -> dict[str, Tensor]:
    """Condition dropout for guidance: each sample loses all its conditions (zeros) with
    ``probability``, drawn per sample from ``generator`` (torch's global RNG if None);
    ``warped`` goes with the others when present (:func:`condition_names`)."""
    out = dict(conditions)
    if probability <= 0:
        return out
    first = next(iter(conditions.values()))
    keep = torch.rand(first.shape[0], generator=generator) >= probability
    for name in condition_names(WARP_CONDITION in conditions):
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


def expand_for_warp(model: VideoDiT, warp_dim: int) -> VideoDiT:
    """A copy of ``model`` (no warp channels yet) that takes ``warp_dim`` more input channels
    after its conditioning channels, their patch-embedding weights zero: for any input its
    output equals ``model``'s on the input without those channels (fine-tuning starts from
    the trained model). Same dtype, device and train/eval mode as ``model``."""
    config = model.config
    if config.warp_dim:
        raise InputError(f"the model already has {config.warp_dim} warp channels")
    if warp_dim < 1:
        raise InputError(f"warp_dim must be >= 1, got {warp_dim}")
    wide_config = replace(config, in_dim=config.in_dim + warp_dim, warp_dim=warp_dim)
    state = {name: value.detach().clone() for name, value in model.state_dict().items()}
    weight = state["patch_embedding.weight"]  # [dim, in_dim, pt, ph, pw]
    zeros = weight.new_zeros(weight.shape[0], warp_dim, *weight.shape[2:])
    state["patch_embedding.weight"] = torch.cat([weight, zeros], dim=1)
    with torch.device("meta"):
        wide = VideoDiT(wide_config)
    wide.load_state_dict(state, assign=True)
    return wide.train(model.training)
