"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a
Perceptual Metric"), version 0.1, as the ``lpips`` package computes it.

For images ``x, y`` in ``[-1, 1]``:

```
s(x)       = (x - shift) / scale,  shift = (-.030, -.088, -.188), scale = (.458, .448, .450)
f_l        = the l-th feature map of the backbone on s(x), [C_l, H_l, W_l]
f^_l       = f_l / (sqrt(sum_c f_l[c]^2) + 1e-10)        (unit length along the channels)
d(x, y)    = sum_l mean_{h,w} sum_c w_l[c] (f^_l(x) - f^_l(y))[c, h, w]^2
```

``w_l`` are the learned non-negative "lin" weights (1x1 convolutions without bias, the
lpips file's ``lin{l}.model.1.weight`` ``[1, C_l, 1, 1]``). Backbones (torchvision's
``features`` layout, ``features.N.weight``/``bias``; the rest of a torchvision file, the
classifier, is not used):

- AlexNet: features after the ReLUs 1, 4, 7, 9, 11 (channels 64, 192, 384, 256, 256);
- VGG16: after the ReLUs 3, 8, 15, 22, 29 (relu1_2 ... relu5_3; 64, 128, 256, 512, 512).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cospeech.errors import InputError

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
NORM_EPS = 1e-10
CLASSIFIER_PREFIX = "classifier."  # the rest of a torchvision AlexNet/VGG file


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone: ``layers`` of torchvision's ``features`` (``("conv", in, out, kernel,
    stride, padding)``, ``("relu",)``, ``("pool", kernel, stride)``), the indices after which
    a feature map is taken, the public file names (torchvision backbone, lpips lin layers)
    and the smallest image side it accepts."""

    name: str
    layers: tuple[tuple, ...]
    taps: tuple[int, ...]
    backbone_file: str
    lin_file: str
    min_side: int


def _vgg16_layers() -> tuple[tuple, ...]:
    plan = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
    layers: list[tuple] = []
    channels = 3
    for item in plan:
        if item == "M":
            layers.append(("pool", 2, 2))
        else:
            layers += [("conv", channels, item, 3, 1, 1), ("relu",)]
            channels = item
    return tuple(layers)


ALEXNET = BackboneSpec(
    name="alex",
    layers=(
        ("conv", 3, 64, 11, 4, 2), ("relu",), ("pool", 3, 2),
        ("conv", 64, 192, 5, 1, 2), ("relu",), ("pool", 3, 2),
        ("conv", 192, 384, 3, 1, 1), ("relu",),
        ("conv", 384, 256, 3, 1, 1), ("relu",),
        ("conv", 256, 256, 3, 1, 1), ("relu",),
    ),
    taps=(1, 4, 7, 9, 11),
    backbone_file="alexnet-owt-7be5be79.pth",
    lin_file="alex.pth",
    min_side=31,
)  # fmt: skip
VGG16 = BackboneSpec(
    name="vgg",
    layers=_vgg16_layers(),
    taps=(3, 8, 15, 22, 29),
    backbone_file="vgg16-397923af.pth",
    lin_file="vgg.pth",
    min_side=16,
)
BACKBONES = {"alex": ALEXNET, "vgg": VGG16}


def _layer(spec: tuple) -> nn.Module:
    kind = spec[0]
    if kind == "conv":
        _, cin, cout, kernel, stride, padding = spec
        return nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding)
    if kind == "relu":
        return nn.ReLU()
    return nn.MaxPool2d(spec[1], stride=spec[2])


def tap_channels(spec: BackboneSpec) -> list[int]:
    """Channels of each tapped feature map (the last convolution before the tap)."""
    channels, out = 3, []
    for index, layer in enumerate(spec.layers):
        if layer[0] == "conv":
            channels = layer[2]
        if index in spec.taps:
            out.append(channels)
    return out


class Backbone(nn.Module):
    """torchvision's ``features`` Sequential (same indices, so the same state-dict keys);
    ``forward`` returns the tapped feature maps ``[B, C_l, H_l, W_l]``."""

    def __init__(self, spec: BackboneSpec) -> None:
        super().__init__()
        self.taps = spec.taps
        self.min_side = spec.min_side
        self.features = nn.Sequential(*[_layer(layer) for layer in spec.layers])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if min(x.shape[-2:]) < self.min_side:
            raise InputError(
                f"LPIPS: images of {x.shape[-1]}x{x.shape[-2]} px are too small for this "
                f"backbone (at least {self.min_side} px a side)"
            )
        maps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.taps:
                maps.append(x)
                if len(maps) == len(self.taps):
                    break
        return maps


class LinLayer(nn.Module):
    """lpips' ``NetLinLayer``: ``model`` = (dropout, 1x1 conv to 1 channel, no bias), so the
    weight's key is ``model.1.weight``. Dropout is the identity in evaluation."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))


class LinLayers(nn.Module):
    """The lpips lin file's modules ``lin0 .. lin{L-1}``."""

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        for index, count in enumerate(channels):
            self.add_module(f"lin{index}", LinLayer(count))

    def layer(self, index: int) -> LinLayer:
        return getattr(self, f"lin{index}")


def unit_normalize(features: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` divided by its channel norm plus 1e-10 at each position."""
    norm = features.pow(2).sum(dim=1, keepdim=True).sqrt()
    return features / (norm + NORM_EPS)


class LPIPS(nn.Module):
    """``forward(x, y)``: images ``[B, 3, H, W]`` in ``[-1, 1]`` -> distances ``[B]``."""

    def __init__(self, backbone: nn.Module, lins: LinLayers) -> None:
        super().__init__()
        self.backbone = backbone
        self.lins = lins
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def layer_distances(self, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        """Each layer's term ``[B]`` of the distance."""
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise InputError(f"LPIPS: images must be [B, 3, H, W] alike, got {x.shape}, {y.shape}")
        both = torch.cat([x, y]).sub(self.shift).div(self.scale)
        terms = []
        for index, maps in enumerate(self.backbone(both)):
            fx, fy = unit_normalize(maps).chunk(2)
            weighted = self.lins.layer(index).model((fx - fy).pow(2))
            terms.append(weighted.mean(dim=(1, 2, 3)))
        return terms

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.stack(self.layer_distances(x, y)).sum(dim=0)


def build_lpips(name: str = "alex") -> LPIPS:
    """Randomly initialised LPIPS with backbone ``"alex"`` or ``"vgg"``."""
    if name not in BACKBONES:
        raise InputError(f"LPIPS backbone {name!r}: choose from {sorted(BACKBONES)}")
    spec = BACKBONES[name]
    return LPIPS(Backbone(spec), LinLayers(tap_channels(spec)))


def load_lpips(name: str, lin_path: str | Path, backbone_path: str | Path) -> LPIPS:
    """LPIPS with the lpips lin weights and the torchvision backbone weights (of a whole
    torchvision file only the ``features.*`` keys are read; the classifier is not used)."""
    from cospeech.eval.networks.weights import (
        check_state_dict,
        load_state_dict_file,
        read_state_dict,
    )

    model = build_lpips(name)
    load_state_dict_file(lin_path, model.lins, f"LPIPS {name} lin")
    where = f"LPIPS {name} backbone weights {backbone_path}"
    state = read_state_dict(backbone_path, f"LPIPS {name} backbone")
    state = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIX)}
    check_state_dict(state, model.backbone, where)
    model.backbone.load_state_dict(state, strict=True)
    return model.eval()


def images_to_input(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 RGB ``[B, H, W, 3]`` -> ``[B, 3, H, W]`` float in ``[-1, 1]``."""
    return pixels.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def is_image(path: str | Path) -> bool:
    """Whether ``path`` names a still image (by its suffix); anything else is read as video."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def check_pair(a: str | Path, b: str | Path) -> int:
    """Frames to compare in two images or two videos of one size and length (checked from
    the headers, before any pixel is compared); ``InputError`` otherwise."""
    from cospeech.media.video import probe
    from cospeech.pose.extract import read_image

    if is_image(a) != is_image(b):
        raise InputError(f"LPIPS compares two images or two videos, got {a} and {b}")
    if is_image(a):
        shapes = [read_image(path).shape for path in (a, b)]
        frames = [1, 1]
    else:
        infos = [probe(path) for path in (a, b)]
        shapes = [(info.height, info.width, 3) for info in infos]
        frames = [info.frames for info in infos]
    if shapes[0] != shapes[1]:
        raise InputError(
            f"LPIPS: {a} is {shapes[0][1]}x{shapes[0][0]} and {b} is "
            f"{shapes[1][1]}x{shapes[1][0]}; compare media of one size"
        )
    if frames[0] != frames[1]:
        raise InputError(f"LPIPS: {a} has {frames[0]} frames and {b} {frames[1]}; they must match")
    return frames[0]


def _frames(path: str | Path) -> Iterator[np.ndarray]:
    from cospeech.media.video import iter_frames
    from cospeech.pose.extract import read_image

    return iter([read_image(path)]) if is_image(path) else iter_frames(path)


@torch.no_grad()
def lpips_of_media(
    model: LPIPS, a: str | Path, b: str | Path, progress: bool = False
) -> np.ndarray:
    """LPIPS of each frame pair ``[F]`` (float64) of two images (``F = 1``) or videos."""
    from cospeech.progress import track

    total = check_pair(a, b)
    pairs = track(
        zip(_frames(a), _frames(b), strict=False), "lpips", total, "frame", enabled=progress
    )
    values = [
        float(model(*images_to_input(torch.from_numpy(np.stack([x, y]))).chunk(2)))
        for x, y in pairs
    ]
    if len(values) != total:
        raise InputError(f"LPIPS: {a} and {b} decoded to different numbers of frames")
    return np.array(values)


LIN_SOURCE = (
    "richzhang/PerceptualSimilarity (lpips/weights/v0.1/{file}; also inside the PyPI package lpips)"
)
BACKBONE_SOURCE = "torchvision's model zoo (https://download.pytorch.org/models/{file})"
