"""Contact sheets of generated motion: one row per method, the same frames in every row."""

from __future__ import annotations

import numpy as np

from cospeech.media.image import evenly_spaced, image_grid
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
    picks = evenly_spaced(frames, columns)
    w, h = round(width * zoom), round(height * zoom)
    lines = []
    for label, keypoints in rows.items():
        scaled = keypoints.copy()
        scaled[..., :2] *= zoom
        tiles = [draw_pose(scaled[t], w, h) for t in picks]
        for t, tile in zip(picks, tiles, strict=True):
            cv2.putText(tile, f"{t}", (3, h - 5), cv2.FONT_HERSHEY_SIMPLEX, LABEL_SCALE, WHITE)
        strip = image_grid(tiles, columns)
        title = np.zeros((LABEL_HEIGHT, strip.shape[1], 3), np.uint8)
        cv2.putText(title, label, (3, LABEL_HEIGHT - 5), cv2.FONT_HERSHEY_SIMPLEX, LABEL_SCALE,
                    WHITE)  # fmt: skip
        lines += [title, strip]
    return np.concatenate(lines, axis=0)
