"""3D rotary position embedding (Wan2.1 layout).

The head dimension is split into three groups of channel pairs rotated by the token's
latent frame index, row and column (44/42/42 channels for head dim 128: ``h = w =
2 * (head_dim // 6)``, ``t`` takes the rest). Pairs are adjacent channels ``(2i, 2i+1)``,
each group with frequencies ``theta ** (-2j / group_dim)``.
"""

from __future__ import annotations

import torch

from cospeech.errors import InputError


def _axis_angles(positions: torch.Tensor, axis_dim: int, theta: float) -> torch.Tensor:
    """``[N] -> [N, axis_dim / 2]`` rotation angles (float64)."""
    exponents = torch.arange(0, axis_dim, 2, dtype=torch.float64, device=positions.device)
    inv_freq = theta ** (-exponents / axis_dim)
    return positions.to(torch.float64)[:, None] * inv_freq[None, :]


def rope_freqs(
    frame_positions: torch.Tensor,
    height: int,
    width: int,
    axis_dims: tuple[int, int, int],
    theta: float,
    max_positions: int,
) -> torch.Tensor:
    """Rotations ``exp(i * angle)`` for a ``[F, height, width]`` token grid, tokens in
    (f, h, w) order: complex64 ``[F * height * width, head_dim / 2]`` (angles in float64).

    ``frame_positions`` ``[F]`` holds the (absolute) latent frame index of each frame.
    """
    if frame_positions.numel() and (
        int(frame_positions.max()) >= max_positions or int(frame_positions.min()) < 0
    ):
        raise InputError(
            f"latent frame positions {int(frame_positions.min())}..{int(frame_positions.max())} "
            f"outside the RoPE table [0, {max_positions}); use a KV cache window or reset"
        )
    if max(height, width) > max_positions:
        raise InputError(f"token grid {height}x{width} exceeds the RoPE table ({max_positions})")
    device = frame_positions.device
    dim_t, dim_h, dim_w = axis_dims
    angle_t = _axis_angles(frame_positions, dim_t, theta)
    angle_h = _axis_angles(torch.arange(height, device=device), dim_h, theta)
    angle_w = _axis_angles(torch.arange(width, device=device), dim_w, theta)
    frames = angle_t.shape[0]
    angles = torch.cat(
        [
            angle_t[:, None, None, :].expand(frames, height, width, -1),
            angle_h[None, :, None, :].expand(frames, height, width, -1),
            angle_w[None, None, :, :].expand(frames, height, width, -1),
        ],
        dim=-1,
    ).reshape(frames * height * width, -1)
    return torch.polar(torch.ones_like(angles), angles).to(torch.complex64)


def apply_rope(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs of ``x`` ``[B, L, H, D]`` by ``freqs`` ``[L, D/2]``
    (:func:`rope_freqs`): each pair is a complex number, multiplied by its rotation.

    Computed in float32 (one complex product) and returned in ``x``'s dtype.
    """
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)).contiguous())
    rotated = torch.view_as_real(pairs * freqs[None, :, None, :]).flatten(-2)
    return rotated.to(x.dtype)
