"""Still images: grids of tiles (every contact sheet is one) and atomic PNG / JPEG writes."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from cospeech.atomic import atomic_path
from cospeech.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
JPEG_SUFFIXES = (".jpg", ".jpeg")
JPEG_QUALITY = 90


def evenly_spaced(count: int, picks: int) -> np.ndarray:
    """``picks`` indices ``[picks]`` spread evenly over ``range(count)``, the first and the last
    included (rounded, so they repeat when ``picks > count``)."""
    return np.linspace(0, count - 1, picks).round().astype(int)


def tile_height(width: int, height: int, tile_width: int) -> int:
    """Height of a ``tile_width`` wide copy of a ``width x height`` image (aspect ratio
    kept, at least 1)."""
    return max(1, round(tile_width * height / width))


def image_grid(
    tiles: Iterable[np.ndarray | None], columns: int, tile_width: int | None = None
) -> np.ndarray:
    """Tiles ``[h, w, 3]`` uint8 of one size -> one image ``[rows * h', columns * w', 3]``,
    ``columns`` tiles a row, filled left to right, then top to bottom.

    A ``None`` tile, and every place after the last tile, is black. ``tile_width`` resizes
    each tile as it arrives (area filter, ``h' =`` :func:`tile_height`), so a long stream
    of large frames is never held at full size.
    """
    import cv2

    def shrink(tile: np.ndarray | None) -> np.ndarray | None:
        if tile is None or tile_width is None:
            return tile
        size = (tile_width, tile_height(tile.shape[1], tile.shape[0], tile_width))
        return cv2.resize(tile, size, interpolation=cv2.INTER_AREA)

    cells = [shrink(tile) for tile in tiles]
    shown = [cell for cell in cells if cell is not None]
    if columns < 1:
        raise InputError(f"an image grid needs columns >= 1, got {columns}")
    if not shown:
        raise InputError("an image grid needs at least one tile")
    blank = np.zeros_like(shown[0])
    cells = [blank if cell is None else cell for cell in cells]
    cells += [blank] * (-len(cells) % columns)
    rows = [np.concatenate(cells[i : i + columns], axis=1) for i in range(0, len(cells), columns)]
    return np.concatenate(rows, axis=0)


def pad_to_even(image: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` with a black row / column added where ``H`` / ``W`` is odd (H.264 in
    yuv420p needs even sizes); ``image`` itself when both are even."""
    height, width = image.shape[:2]
    if height % 2 == 0 and width % 2 == 0:
        return image
    return np.pad(image, ((0, height % 2), (0, width % 2), (0, 0)))


def write_image(image: np.ndarray, path: str | Path, colours: int | None = None) -> None:
    """Write an RGB image ``[H, W, 3]`` uint8 atomically: JPEG (quality
    :data:`JPEG_QUALITY`) when ``path`` ends in ``.jpg`` / ``.jpeg``, else PNG.

    ``colours``: store a PNG with a palette of that many colours (a preview stays small).
    """
    from PIL import Image

    picture = Image.fromarray(image)
    with atomic_path(path, suffix=".tmp") as tmp:
        if Path(path).suffix.lower() in JPEG_SUFFIXES:
            picture.save(tmp, format="JPEG", quality=JPEG_QUALITY)
        else:
            picture = picture.quantize(colours) if colours else picture
            picture.save(tmp, format="PNG", optimize=True)
