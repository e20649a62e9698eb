"""ArcFace identity embeddings: insightface's iResNet (``arcface_torch``) on aligned faces.

Network (Deng et al. 2019; ``recognition/arcface_torch/backbones/iresnet.py``): a 3x3
stem (conv, BN, PReLU) at 112x112, four stages of "improved" basic blocks
``BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN (+ shortcut)`` with 64, 128, 256, 512
channels, each stage halving the size (the first block's shortcut a 1x1 conv + BN), then
BN, flatten (512 x 7 x 7), linear to 512 and a BatchNorm1d (``features``): the embedding.
Blocks per stage: r18 (2, 2, 2, 2), r34 (3, 4, 6, 3), r50 (3, 4, 14, 3), r100 (3, 13, 30, 3).
Parameter names follow ``backbone.pth`` (``conv1.weight``, ``layer3.13.bn2.running_mean``,
``fc.weight``, ``features.weight`` ...); the depth is read from the file's keys.

Input: RGB ``[B, 3, 112, 112]`` scaled ``(pixel / 255 - 0.5) / 0.5``, the face aligned by
the similarity transform that maps five landmarks (eye centres, nose tip, mouth corners)
onto insightface's template :data:`TEMPLATE` (least squares, Umeyama 1991). Identity
similarity is the cosine of two embeddings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cospeech.errors import CheckpointError, InputError
from cospeech.eval.video.faces import FaceAnalyzer

SIZE = 112
EMBEDDING = 512
WIDTHS = (64, 128, 256, 512)
DEPTHS = {
    "r18": (2, 2, 2, 2),
    "r34": (3, 4, 6, 3),
    "r50": (3, 4, 14, 3),
    "r100": (3, 13, 30, 3),
}
BN_EPS = 1e-5
BATCH = 16
# insightface's ``arcface_dst`` (112x112): the eye on the image's left, the other eye, the
# nose tip, the mouth corner on the image's left, the other corner; (x, y) pixels.
TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ]
)
WEIGHTS_FILE = "backbone.pth"
WEIGHTS_SOURCE = (
    "insightface's arcface_torch model zoo (github.com/deepinsight/insightface/tree/master/"
    "recognition/arcface_torch, e.g. ms1mv3_arcface_r50_fp16/backbone.pth)"
)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """``[B, cin, H, W]`` -> ``[B, cout, H / stride, W / stride]``."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=BN_EPS)
        self.conv1 = _conv3x3(cin, cout)
        self.bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.prelu = nn.PReLU(cout)
        self.conv2 = _conv3x3(cout, cout, stride)
        self.bn3 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                nn.BatchNorm2d(cout, eps=BN_EPS),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.bn1(x))
        out = self.bn3(self.conv2(self.prelu(self.bn2(out))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut


class IResNet(nn.Module):
    """Aligned faces ``[B, 3, 112, 112]`` (normalised, see the module docstring) ->
    embeddings ``[B, 512]``."""

    def __init__(self, depths: Sequence[int]) -> None:
        super().__init__()
        self.conv1 = _conv3x3(3, WIDTHS[0])
        self.bn1 = nn.BatchNorm2d(WIDTHS[0], eps=BN_EPS)
        self.prelu = nn.PReLU(WIDTHS[0])
        cin = WIDTHS[0]
        for index, (width, count) in enumerate(zip(WIDTHS, depths, strict=True)):
            blocks = [IBasicBlock(cin if i == 0 else width, width, 2 if i == 0 else 1)
                      for i in range(count)]  # fmt: skip
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))
            cin = width
        self.bn2 = nn.BatchNorm2d(WIDTHS[-1], eps=BN_EPS)
        self.fc = nn.Linear(WIDTHS[-1] * (SIZE // 16) ** 2, EMBEDDING)
        self.features = nn.BatchNorm1d(EMBEDDING, eps=BN_EPS)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, SIZE, SIZE):
            raise InputError(f"ArcFace: faces must be [B, 3, 112, 112], got {list(x.shape)}")
        x = self.prelu(self.bn1(self.conv1(x)))
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
        return self.features(self.fc(self.bn2(x).flatten(1)))


def depths_of(state: Mapping[str, torch.Tensor]) -> tuple[int, ...]:
    """Blocks per stage in a state dict's keys (``layer{s}.{i}.``)."""
    depths = []
    for stage in range(1, 5):
        indices = {int(k.split(".")[1]) for k in state if k.startswith(f"layer{stage}.")}
        depths.append(max(indices) + 1 if indices else 0)
    return tuple(depths)


def load_arcface(path: str | Path) -> IResNet:
    """The iResNet of an ``arcface_torch`` ``backbone.pth`` (or ``.safetensors``), its
    depth taken from the file (r18/r34/r50/r100)."""
    from cospeech.eval.networks.weights import load_state_dict_file, read_state_dict

    depths = depths_of(read_state_dict(path, "ArcFace"))
    if depths not in DEPTHS.values():
        known = ", ".join(f"{k} {list(v)}" for k, v in DEPTHS.items())
        raise CheckpointError(
            f"ArcFace weights {path}: blocks per stage {list(depths)} are no iResNet ({known})"
        )
    return load_state_dict_file(path, IResNet(depths), "ArcFace").eval()


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 matrix ``[[a, -b, tx], [b, a, ty]]`` (rotation, uniform scale, shift) that
    maps points ``source`` ``[N, 2]`` onto ``target`` ``[N, 2]`` with least squared error."""
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 2:
        raise InputError(
            f"alignment points must be [N, 2] alike, got {source.shape}, {target.shape}"
        )
    rows = np.zeros((2 * len(source), 4))
    rows[0::2] = np.column_stack(
        [source[:, 0], -source[:, 1], np.ones(len(source)), np.zeros(len(source))]
    )
    rows[1::2] = np.column_stack(
        [source[:, 1], source[:, 0], np.zeros(len(source)), np.ones(len(source))]
    )
    (a, b, tx, ty), *_ = np.linalg.lstsq(rows, target.reshape(-1), rcond=None)
    return np.array([[a, -b, tx], [b, a, ty]])


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """Template-ordered five points ``[5, 2]`` from dlib's 68 landmarks ``[68, 2]``
    (0-based): the eye centres (36-41, 42-47), the nose tip 30, the mouth corners 48, 54."""
    landmarks = np.asarray(landmarks, np.float64)
    if landmarks.shape != (68, 2):
        raise InputError(f"landmarks must be [68, 2], got {list(landmarks.shape)}")
    return np.stack([
        landmarks[36:42].mean(axis=0), landmarks[42:48].mean(axis=0),
        landmarks[30], landmarks[48], landmarks[54],
    ])  # fmt: skip


def align_face(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The 112x112 RGB uint8 crop of ``image`` ``[H, W, 3]`` in which the five ``points``
    ``[5, 2]`` land on :data:`TEMPLATE` (bilinear, black outside the image)."""
    import cv2

    matrix = similarity_transform(points, TEMPLATE)
    return cv2.warpAffine(
        np.ascontiguousarray(image), matrix, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderValue=0
    )


def faces_to_input(faces: np.ndarray) -> torch.Tensor:
    """Aligned uint8 RGB faces ``[B, 112, 112, 3]`` -> the network input ``[B, 3, 112, 112]``."""
    return (
        torch.from_numpy(np.ascontiguousarray(faces))
        .permute(0, 3, 1, 2)
        .float()
        .div(127.5)
        .sub(1.0)
    )


@torch.no_grad()
def embed(model: IResNet, faces: np.ndarray, batch: int = BATCH) -> np.ndarray:
    """Embeddings ``[B, 512]`` (float64) of aligned faces ``[B, 112, 112, 3]``."""
    out = [
        model(faces_to_input(faces[i : i + batch])).double() for i in range(0, len(faces), batch)
    ]
    return torch.cat(out).numpy() if out else np.zeros((0, EMBEDDING))


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of rows ``[N, D]`` with a vector ``[D]`` -> ``[N]``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a @ b) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b) + 1e-12)


def aligned_face(analyzer: FaceAnalyzer, image: np.ndarray) -> np.ndarray | None:
    """The aligned 112x112 face (largest dlib face) of an RGB image, None without a face."""
    face = analyzer(image)
    return None if face is None else align_face(image, five_points(face.landmarks))


def reference_embedding(model: IResNet, analyzer: FaceAnalyzer, path: str | Path) -> np.ndarray:
    """The embedding ``[512]`` of the face in a reference photo (``InputError`` if none)."""
    from cospeech.pose.extract import read_image

    face = aligned_face(analyzer, read_image(path))
    if face is None:
        raise InputError(f"reference {path}: no face found by dlib's frontal face detector")
    return embed(model, face[None])[0]


def video_similarities(
    model: IResNet,
    analyzer: FaceAnalyzer,
    video: str | Path,
    reference: np.ndarray,
    progress: bool = False,
) -> np.ndarray:
    """Cosine similarity to ``reference`` ``[512]`` of each frame's face ``[F]`` (NaN:
    no face), faces embedded :data:`BATCH` at a time."""
    from cospeech.media.video import iter_frames, probe
    from cospeech.progress import track

    frames = track(iter_frames(video), "arcface", probe(video).frames, "frame", enabled=progress)
    similarity: list[float] = []
    pending: list[tuple[int, np.ndarray]] = []
    for index, frame in enumerate(frames):
        similarity.append(float("nan"))
        face = aligned_face(analyzer, frame)
        if face is not None:
            pending.append((index, face))
        if len(pending) == BATCH:
            _score(model, pending, reference, similarity)
    _score(model, pending, reference, similarity)
    if not similarity:
        raise InputError(f"video {video}: no decodable frames")
    return np.array(similarity)


def _score(
    model: IResNet,
    pending: list[tuple[int, np.ndarray]],
    reference: np.ndarray,
    similarity: list[float],
) -> None:
    """Embed the pending faces, write their similarities, empty ``pending``."""
    if pending:
        values = cosine_similarity(embed(model, np.stack([f for _, f in pending])), reference)
        for (index, _), value in zip(pending, values, strict=True):
            similarity[index] = float(value)
        pending.clear()
