"""Contact sheets of generated motion: one row per method, the same frames in every row."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cospeech.atomic import atomic_path
from cospeech.pose.draw import draw_pose

LABEL_HEIGHT = 18
LABEL_SCALE = 0.45
WHITE = (255, 255, 255)


def motion_sheet(
    rows: dict[str, np.ndarray], width: int, height: int, columns: int, zoom: float = 2.0
) -> np.ndarray:
    """Keypoints ``[T, 133, 3]`` by row label -> an RGB sheet ``[H, W, 3]`` of ``columns``
    evenly spaced frames per row, each drawn ``zoom`` times larger, with labels."""
    import cv2

    frames = min(len(k) for k in rows.values())
    picks = np.linspace(0, frames - 1, columns).round().astype(int)
    w, h = round(width * zoom), round(height * zoom)
    lines = []
    for label, keypoints in rows.items():
        scaled = keypoints.copy()
        scaled[..., :2] *= zoom
        tiles = [draw_pose(scaled[t], w, h) for t in picks]
        for t, tile in zip(picks, tiles, strict=True):
            cv2.putText(tile, f"{t}", (3, h - 5), cv2.FONT_HERSHEY_SIMPLEX, LABEL_SCALE, WHITE)
        strip = np.concatenate(tiles, axis=1)
        title = np.zeros((LABEL_HEIGHT, strip.shape[1], 3), np.uint8)
        cv2.putText(title, label, (3, LABEL_HEIGHT - 5), cv2.FONT_HERSHEY_SIMPLEX, LABEL_SCALE,
                    WHITE)  # fmt: skip
        lines += [title, strip]
    return np.concatenate(lines, axis=0)


def save_png(image: np.ndarray, path: str | Path) -> None:
    """Write an RGB image as PNG (atomically)."""
    from PIL import Image

    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(image).save(tmp, format="PNG", optimize=True)
