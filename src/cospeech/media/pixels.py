"""uint8 pixels <-> the float range [-1, 1] the VAE, the DiT and the pose maps work in.

``v = p / 127.5 - 1`` and back ``p = round((v + 1) * 127.5)`` (``v`` clamped to [-1, 1]),
so every uint8 value survives the round trip exactly. Pixels are channels last (images,
decoded video), tensors channels first.
"""

from __future__ import annotations

import numpy as np
import torch


def pixels_to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """uint8 ``[..., H, W, 3]`` -> float32 ``[3, ..., H, W]`` in [-1, 1]."""
    values = torch.from_numpy(np.ascontiguousarray(pixels)).float().div_(127.5).sub_(1.0)
    return values.movedim(-1, 0)


def tensor_to_pixels(values: torch.Tensor) -> np.ndarray:
    """float ``[3, ..., H, W]`` in [-1, 1] (clamped) -> uint8 ``[..., H, W, 3]`` (on the CPU)."""
    pixels = ((values.detach().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.movedim(0, -1).cpu().numpy()
