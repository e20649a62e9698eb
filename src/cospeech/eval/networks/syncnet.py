"""SyncNet (Chung & Zisserman 2016, "Out of time") as joonson/syncnet_python evaluates it.

Network (``SyncNetModel.S``, the ``syncnet_v2.model`` key layout): an audio branch
``netcnnaud`` (2-D convolutions over MFCC ``[1, 13, 20]``: 13 coefficients x 0.2 s at
100 Hz) + ``netfcaud`` (512 -> 512 -> 1024), and a lip branch ``netcnnlip`` (3-D
convolutions over 5 colour frames ``[3, 5, 224, 224]``, 0.2 s at 25 fps) + ``netfclip``.
The Sequential indices (ReLUs and pools included) are syncnet_python's, so the parameter
names match the public file.

Measure (``SyncNetInstance.evaluate``): video at 25 fps, audio at 16 kHz (640 samples a
frame); ``n = min(frames, floor(samples / 640)) - 5`` windows; window ``i`` pairs frames
``i..i+4`` with MFCC rows ``4i..4i+19``. With ``v`` the lip and ``a`` the audio embeddings
``[n, 1024]`` and ``a`` zero-padded by ``K`` (15) rows at both ends:

```
dist[i, j] = ||v_i - a_{i + j - K} + 1e-6||        (torch pairwise_distance), j = 0..2K
mean[j]    = mean_i dist[i, j]
Sync-D     = min_j mean[j];   Sync-C = median_j mean[j] - Sync-D
AV offset  = K - argmin_j mean[j]
```

so a positive offset means the audio is *ahead* of the video (the sound of a mouth
movement comes that many frames before it), negative that it is late.

Input preparation (syncnet_python's ``run_pipeline.crop_video``): the face box of each
frame (here dlib's detector; syncnet_python uses S3FD, whose boxes are somewhat larger),
gaps filled by linear interpolation, then half-size ``s = max(w, h) / 2`` and centre
``(x, y)`` median-filtered over 13 frames (``scipy.signal.medfilt``, zero-padded ends as
there); the crop is rows ``y - s .. y + 1.8 s`` and columns ``x - 1.4 s .. x + 1.4 s`` of
the frame padded with grey 110, resized to 224x224 (bilinear), in BGR order (syncnet_python
reads its frames with OpenCV), values 0-255. Audio: mono 16 kHz in 16-bit units
(``python_speech_features.mfcc`` of the PCM, :mod:`cospeech.audio.mfcc`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cospeech.audio.mfcc import INT16_SCALE, mfcc
from cospeech.errors import InputError
from cospeech.eval.video.faces import FaceAnalyzer

FPS = 25
SAMPLE_RATE = 16000
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
WINDOW_FRAMES = 5
MFCC_PER_FRAME = 4
MFCC_WINDOW = WINDOW_FRAMES * MFCC_PER_FRAME  # 20 rows = 0.2 s
CROP_SIZE = 224
CROP_SCALE = 0.4
PAD_VALUE = 110
SMOOTH_FRAMES = 13
MIN_FRAMES = SMOOTH_FRAMES // 2 + 1  # fewer: the zero-padded median makes the box 0
MAX_OFFSET = 15
BATCH = 20
EMBEDDING = 1024
WEIGHTS_FILE = "syncnet_v2.model"
WEIGHTS_SOURCE = (
    "joonson/syncnet_python (download_model.sh: "
    "http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model)"
)


def _conv_bn_relu(conv: nn.Module, channels: int, norm: type[nn.Module]) -> list[nn.Module]:
    return [conv, norm(channels), nn.ReLU()]


def _fc(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, width))


class SyncNet(nn.Module):
    """``audio_embedding``: MFCC ``[B, 1, 13, 20]`` -> ``[B, 1024]``; ``lip_embedding``:
    frames ``[B, 3, 5, 224, 224]`` (BGR 0-255) -> ``[B, 1024]``."""

    def __init__(self, width: int = EMBEDDING) -> None:
        super().__init__()
        c2, c3 = nn.Conv2d, nn.Conv3d
        b2, b3 = nn.BatchNorm2d, nn.BatchNorm3d
        self.netcnnaud = nn.Sequential(
            *_conv_bn_relu(c2(1, 64, 3, padding=1), 64, b2),
            nn.MaxPool2d(1, stride=1),
            *_conv_bn_relu(c2(64, 192, 3, padding=1), 192, b2),
            nn.MaxPool2d(3, stride=(1, 2)),
            *_conv_bn_relu(c2(192, 384, 3, padding=1), 384, b2),
            *_conv_bn_relu(c2(384, 256, 3, padding=1), 256, b2),
            *_conv_bn_relu(c2(256, 256, 3, padding=1), 256, b2),
            nn.MaxPool2d(3, stride=2),
            *_conv_bn_relu(c2(256, 512, (5, 4)), 512, b2),
        )
        self.netfcaud = _fc(width)
        self.netfclip = _fc(width)
        self.netcnnlip = nn.Sequential(
            *_conv_bn_relu(c3(3, 96, (5, 7, 7), stride=(1, 2, 2)), 96, b3),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),
            *_conv_bn_relu(c3(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)), 256, b3),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            *_conv_bn_relu(c3(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, b3),
            *_conv_bn_relu(c3(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, b3),
            *_conv_bn_relu(c3(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, b3),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),
            *_conv_bn_relu(c3(256, 512, (1, 6, 6)), 512, b3),
        )
        self.eval()

    def audio_embedding(self, mfcc_windows: torch.Tensor) -> torch.Tensor:
        return self.netfcaud(self.netcnnaud(mfcc_windows).flatten(1))

    def lip_embedding(self, frames: torch.Tensor) -> torch.Tensor:
        return self.netfclip(self.netcnnlip(frames).flatten(1))


def load_syncnet(path: str | Path) -> SyncNet:
    """SyncNet with the weights of ``syncnet_v2.model`` (or a ``.safetensors`` copy)."""
    from cospeech.eval.networks.weights import load_state_dict_file

    return load_state_dict_file(path, SyncNet(), "SyncNet").eval()


@dataclass(frozen=True)
class SyncNetResult:
    """``mean_distances`` ``[2K + 1]`` for the audio shifts ``j - K``; ``distance`` (Sync-D),
    ``confidence`` (Sync-C), ``offset`` (AV offset, frames) and the ``windows`` compared."""

    mean_distances: np.ndarray
    distance: float
    confidence: float
    offset: int
    windows: int


def offset_search(
    video: torch.Tensor, audio: torch.Tensor, max_offset: int = MAX_OFFSET
) -> SyncNetResult:
    """syncnet_python's ``calc_pdist`` + the statistics of ``evaluate`` (module docstring) on
    embeddings ``[n, D]`` of one length."""
    if video.shape != audio.shape or video.ndim != 2 or video.shape[0] == 0:
        raise InputError(
            f"SyncNet: embeddings must be [n, D] alike, got {video.shape}, {audio.shape}"
        )
    k = max_offset
    padded = nn.functional.pad(audio, (0, 0, k, k))
    rows = [
        nn.functional.pairwise_distance(
            video[i : i + 1].expand(2 * k + 1, -1), padded[i : i + 2 * k + 1]
        )
        for i in range(video.shape[0])
    ]
    mean = torch.stack(rows, 1).mean(dim=1)
    low, best = torch.min(mean, 0)
    confidence = torch.median(mean) - low
    return SyncNetResult(
        mean.double().numpy(), float(low), float(confidence), k - int(best), video.shape[0]
    )


def fill_boxes(boxes: np.ndarray) -> np.ndarray:
    """Face boxes ``[T, 4]`` (x0, y0, x1, y1; NaN rows: no face) with the gaps linearly
    interpolated and the ends held at the nearest detection (``InputError`` if none)."""
    found = np.isfinite(boxes).all(axis=1)
    if not found.any():
        raise InputError("SyncNet: no face found in any frame")
    t = np.arange(len(boxes))
    return np.stack([np.interp(t, t[found], boxes[found, c]) for c in range(4)], axis=1)


def crop_tracks(boxes: np.ndarray) -> np.ndarray:
    """``[T, 3]`` smoothed (half-size s, centre x, centre y) of filled boxes ``[T, 4]``."""
    from scipy.signal import medfilt

    size = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) / 2
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
    centre_y = (boxes[:, 1] + boxes[:, 3]) / 2
    with warnings.catch_warnings():  # shorter tracks: zero-padded as in syncnet_python too
        warnings.filterwarnings("ignore", "kernel_size exceeds volume extent")
        smooth = [medfilt(v, SMOOTH_FRAMES) for v in (size, centre_x, centre_y)]
    return np.stack(smooth, axis=1)


def crop_face(frame: np.ndarray, half: float, centre_x: float, centre_y: float) -> np.ndarray:
    """syncnet_python's face crop of an RGB frame ``[H, W, 3]`` -> BGR uint8 ``[224, 224, 3]``."""
    import cv2

    pad = int(half * (1 + 2 * CROP_SCALE))
    padded = np.pad(frame[..., ::-1], ((pad, pad), (pad, pad), (0, 0)), constant_values=PAD_VALUE)
    y, x = centre_y + pad, centre_x + pad
    face = padded[
        int(y - half) : int(y + half * (1 + 2 * CROP_SCALE)),
        int(x - half * (1 + CROP_SCALE)) : int(x + half * (1 + CROP_SCALE)),
    ]
    if face.size == 0:
        raise InputError(f"SyncNet: empty face crop (face half-size {half:.1f} px)")
    return cv2.resize(np.ascontiguousarray(face), (CROP_SIZE, CROP_SIZE))


def frame_indices(frames: int, fps: float) -> np.ndarray:
    """Source frame shown at each 25 fps frame time (nearest in time, as a constant-rate
    conversion): ``round(t * fps / 25)`` for ``t`` up to the video's duration."""
    if fps <= 0:
        raise InputError(f"SyncNet: the video's frame rate must be > 0, got {fps}")
    count = max(1, round(frames * FPS / fps))
    return np.minimum(np.round(np.arange(count) * fps / FPS).astype(int), frames - 1)


def audio_mfcc(audio: np.ndarray) -> torch.Tensor:
    """MFCC of mono 16 kHz float audio ``[N]`` in 16-bit units -> ``[1, 1, 13, rows]``."""
    features = mfcc(np.asarray(audio, np.float64) * INT16_SCALE)
    return torch.from_numpy(features.T.copy()).float()[None, None]


def window_count(frames: int, samples: int) -> int:
    """syncnet_python's ``min(frames, floor(samples / 640)) - 5`` (at least 1 required)."""
    count = min(frames, samples // SAMPLES_PER_FRAME) - WINDOW_FRAMES
    if count < 1:
        raise InputError(
            f"SyncNet: {frames} frames and {samples / SAMPLE_RATE:.2f} s of audio are too short "
            f"(at least {WINDOW_FRAMES + 1} frames at 25 fps, and the audio as long)"
        )
    return count


@torch.no_grad()
def embeddings(
    model: SyncNet, crops: np.ndarray, audio: np.ndarray, progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lip and audio embeddings ``[n, 1024]`` of face crops ``[T, 224, 224, 3]`` (BGR uint8,
    25 fps) and mono 16 kHz audio ``[N]`` (float, full scale 1), ``n`` windows
    (:func:`window_count`) run :data:`BATCH` at a time."""
    from cospeech.progress import track

    n = window_count(len(crops), len(audio))
    cc = audio_mfcc(audio)
    lips, sounds = [], []
    for start in track(range(0, n, BATCH), "syncnet", unit="batch", enabled=progress):
        stop = min(n, start + BATCH)
        clips = np.stack([crops[i : i + WINDOW_FRAMES] for i in range(start, stop)])
        frames = torch.from_numpy(clips).float().permute(0, 4, 1, 2, 3)  # [B, 3, 5, 224, 224]
        windows = torch.cat([cc[..., 4 * i : 4 * i + MFCC_WINDOW] for i in range(start, stop)])
        lips.append(model.lip_embedding(frames))
        sounds.append(model.audio_embedding(windows))
    return torch.cat(lips), torch.cat(sounds)


def face_boxes(
    frames: Iterable[np.ndarray], wanted: set[int], analyzer: FaceAnalyzer
) -> dict[int, np.ndarray]:
    """dlib face box ``[4]`` (NaN: none) of each frame whose index is in ``wanted``."""
    boxes = {}
    for index, frame in enumerate(frames):
        if index in wanted:
            face = analyzer(frame)
            boxes[index] = np.full(4, np.nan) if face is None else np.array(face.box, np.float64)
    return boxes


def face_crops(video: str | Path, analyzer: FaceAnalyzer, progress: bool = False) -> np.ndarray:
    """The 25 fps face crops ``[T, 224, 224, 3]`` (BGR uint8) of a video, in two passes:
    faces of every used frame first (to smooth the track), then the crops."""
    from cospeech.media.video import iter_frames, probe
    from cospeech.progress import track

    info = probe(video)
    if info.frames == 0:
        raise InputError(f"video {video}: no frames")
    source = frame_indices(info.frames, info.fps)
    if len(source) < MIN_FRAMES:
        raise InputError(
            f"video {video}: {len(source)} frames at 25 fps are too short for SyncNet "
            f"(at least {MIN_FRAMES}: the 13-frame median smoothing needs 7 to keep a face)"
        )
    frames = track(iter_frames(video), "faces", info.frames, "frame", enabled=progress)
    found = face_boxes(frames, set(source.tolist()), analyzer)
    if not found:
        raise InputError(f"video {video}: no decodable frames")
    source = source[source <= max(found)]  # the header may count more frames than decode
    boxes = fill_boxes(np.stack([found[i] for i in source]))
    params = crop_tracks(boxes)
    crops = np.zeros((len(source), CROP_SIZE, CROP_SIZE, 3), np.uint8)
    for index, frame in enumerate(iter_frames(video)):
        for t in np.flatnonzero(source == index):
            crops[t] = crop_face(frame, *params[t])
    return crops
