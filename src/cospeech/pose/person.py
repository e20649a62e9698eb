"""A real photo -> the one person in it and a square crop of their upper body.

Three steps, each ending in one clear line (:class:`InputError`) when the photo cannot be
used:

1. **Size first.** The header is read lazily (Pillow decodes nothing on ``open``) and a
   photo over :data:`MAX_PHOTO_PIXELS` is refused before a pixel is decoded; Pillow's own
   decompression-bomb warning and error become the same line.
2. **One person.** MediaPipe Holistic finds the main person (it finds one person only);
   BlazeFace then counts the faces of about that person's size or larger, on the whole
   photo and on overlapping tiles about five of the person's faces wide (BlazeFace shrinks
   its input to 192 px, so a small face in a large photo is found only in a tile). Faces
   under :attr:`PersonConfig.min_face_ratio` of the person's face are background people
   and are ignored; every other face must be found again on a square three times its size
   around it (tiling finds a few non-faces that this second look drops). Two or more
   people left is ``found 2 people; crop the photo to one person``.
3. **Upper-body crop.** A square around the head (the face landmarks, raised for the
   forehead and hair), the shoulders and the hands when they are visible, widened by a
   margin; where the square leaves the photo, the photo's border is repeated
   (:class:`UpperBodyCrop` says where and how much, for the contact sheet).

Building block of the real-photo teacher (issue 13); the pipeline does not use it yet.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from cospeech.errors import InputError
from cospeech.pose import schema as s
from cospeech.pose.extract import read_image

MAX_PHOTO_PIXELS = 40_000_000
"""Largest photo accepted (40 megapixels, e.g. 7744 x 5164): 120 MB decoded as RGB."""
MIN_CONFIDENCE = 0.3
FACE_BOX = 4  # one face box: x0, y0, x1, y1 (then the score)
CONFIRM_CONTEXT = 3.0  # a face found by tiling is looked at again in a square 3x its size
_HEAD_POINTS = (s.NOSE, s.LEFT_EYE, s.RIGHT_EYE, s.LEFT_EAR, s.RIGHT_EAR)

FaceDetector = Callable[[np.ndarray], list[tuple[float, float, float, float, float]]]
"""RGB frame -> face boxes ``(x0, y0, x1, y1, score)`` in its pixels."""


@dataclass(frozen=True)
class PersonConfig:
    """``min_face_score``: BlazeFace confidence for a face to count; ``min_face_ratio``: a
    face narrower than this fraction of the person's face is a background person, ignored;
    ``tile_faces``: tile side in widths of the person's face; ``max_tiles``: above this
    many tiles the person is too small in the photo; ``margin``: added to each side of the
    upper body's box, as a fraction of its longer side; ``forehead``: how far above the
    face landmarks (brows to chin) the head reaches, in face heights; ``max_pixels``."""

    min_face_score: float = 0.5
    min_face_ratio: float = 0.4
    tile_faces: float = 5.0
    max_tiles: int = 64
    margin: float = 0.15
    forehead: float = 0.5
    max_pixels: int = MAX_PHOTO_PIXELS


@dataclass(frozen=True)
class UpperBodyCrop:
    """The square crop in the photo's pixels: ``box`` ``(x0, y0, x1, y1)`` (x1, y1 exclusive;
    it may reach outside the photo), ``photo`` ``(width, height)``, and ``padding``
    ``(left, top, right, bottom)``: pixels of the square outside the photo, filled by
    repeating its border."""

    box: tuple[int, int, int, int]
    photo: tuple[int, int]
    padding: tuple[int, int, int, int]

    @property
    def side(self) -> int:
        return self.box[2] - self.box[0]

    def describe(self) -> str:
        """One line for a contact sheet, e.g. ``crop 412x412 at (50, 20) of a 512x512
        photo, no padding``."""
        x0, y0 = self.box[:2]
        width, height = self.photo
        text = f"crop {self.side}x{self.side} at ({x0}, {y0}) of a {width}x{height} photo"
        if not any(self.padding):
            return f"{text}, no padding"
        sides = zip(("left", "top", "right", "bottom"), self.padding, strict=True)
        return f"{text}, padded " + ", ".join(f"{n} {p} px" for n, p in sides if p)


@dataclass(frozen=True)
class PersonPhoto:
    """The cropped square ``image`` ``[S, S, 3]`` uint8, the person's ``keypoints``
    ``[133, 3]`` in its pixels, and the ``crop`` that made it."""

    image: np.ndarray
    keypoints: np.ndarray
    crop: UpperBodyCrop


def check_photo_size(path: str | Path, max_pixels: int = MAX_PHOTO_PIXELS) -> tuple[int, int]:
    """``(width, height)`` of an image file from its header, without decoding it;
    :class:`InputError` above ``max_pixels`` or when Pillow calls it a decompression bomb."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image {path}: no such file")
    try:
        with _bomb_is_an_error(path, max_pixels), Image.open(path) as image:
            width, height = image.size
    except UnidentifiedImageError:
        raise InputError(f"image {path}: not an image (or a format Pillow cannot read)") from None
    except OSError as exc:
        raise InputError(f"image {path}: cannot be read ({exc})") from None
    _check_pixels(width, height, max_pixels, f"image {path}")
    return width, height


def load_photo(path: str | Path, max_pixels: int = MAX_PHOTO_PIXELS) -> np.ndarray:
    """A photo as ``[H, W, 3]`` uint8 RGB, its size checked before it is decoded."""
    check_photo_size(path, max_pixels)
    with _bomb_is_an_error(Path(path), max_pixels):
        return read_image(path)


@contextlib.contextmanager
def _bomb_is_an_error(path: Path, max_pixels: int) -> Iterator[None]:
    """Turn Pillow's ``DecompressionBombWarning`` / ``Error`` (raised by ``Image.open`` from
    the header, before our own check can read the size) into one :class:`InputError`."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            pillow = int(Image.MAX_IMAGE_PIXELS or 0)
            # Over Pillow's limit is over ours only when ours is not higher.
            ours = f", over the {_megapixels(max_pixels)}-megapixel limit" * (pillow >= max_pixels)
            raise InputError(
                f"image {path}: more than {_megapixels(pillow)} megapixels (Pillow's "
                f"decompression-bomb limit){ours}; shrink it first"
            ) from None


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.3g}"


def _check_pixels(width: int, height: int, max_pixels: int, name: str) -> None:
    if width * height > max_pixels:
        raise InputError(
            f"{name}: {width}x{height} is {_megapixels(width * height)} megapixels, over the "
            f"{_megapixels(max_pixels)}-megapixel limit; shrink it first"
        )


def find_person(path: str | Path, config: PersonConfig = PersonConfig()) -> PersonPhoto:
    """Load a photo, check it shows exactly one person, and crop their upper body."""
    image = load_photo(path, config.max_pixels)
    keypoints = person_keypoints(image, config, f"image {path}")
    crop = upper_body_crop(keypoints, image.shape[1], image.shape[0], config)
    return PersonPhoto(apply_crop(image, crop), crop_keypoints(keypoints, crop), crop)


def person_keypoints(
    image: np.ndarray, config: PersonConfig = PersonConfig(), name: str = "photo"
) -> np.ndarray:
    """The one person's keypoints ``[133, 3]`` in ``image`` ``[H, W, 3]`` uint8 pixels;
    :class:`InputError` when the photo shows no person or several."""
    from cospeech.pose.extract.mediapipe_backend import MediaPipeFaceBoxes, MediaPipeHolistic

    _check_pixels(image.shape[1], image.shape[0], config.max_pixels, name)
    with MediaPipeHolistic(static_images=True) as holistic:
        keypoints = holistic(image)
    face = _face_box(keypoints)
    if face is None:
        raise InputError(f"{name}: no person found (no face visible); use a photo of one person")
    with MediaPipeFaceBoxes(config.min_face_score) as detector:
        boxes = _tiled_faces(image, detector, face, config, name)
        # The person's own face (score 1, first: the sort is stable) merges its detections.
        others = _distinct_faces([(*face, 1.0), *boxes])[1:]
        people = 1 + sum(_confirmed(image, detector, box) for box in others)
    if people > 1:
        raise InputError(f"{name}: found {people} people; crop the photo to one person")
    return keypoints


def _face_box(keypoints: np.ndarray) -> tuple[float, ...] | None:
    """The box of the person's confident face points (68 landmarks, else eyes/ears/nose),
    or None when there are fewer than 2."""
    for group in (s.FACE, _HEAD_POINTS):
        points = keypoints[list(group)]
        seen = points[points[:, 2] >= MIN_CONFIDENCE, :2]
        if len(seen) >= 2:
            (x0, y0), (x1, y1) = seen.min(axis=0), seen.max(axis=0)
            if max(x1 - x0, y1 - y0) > 1:
                return float(x0), float(y0), float(x1), float(y1)
    return None


def _tiled_faces(
    image: np.ndarray,
    detector: FaceDetector,
    face: tuple[float, ...],
    config: PersonConfig,
    name: str,
) -> list[tuple[float, ...]]:
    """Faces at least ``min_face_ratio`` as wide as ``face``, found on the whole photo and on
    overlapping tiles ``tile_faces`` of that face wide (half a tile apart): boxes in photo
    pixels with scores."""
    height, width = image.shape[:2]
    face_size = max(face[2] - face[0], face[3] - face[1])
    tile = max(1, round(config.tile_faces * face_size))
    xs, ys = _tile_starts(width, tile), _tile_starts(height, tile)
    if len(xs) * len(ys) > config.max_tiles:
        raise InputError(
            f"{name}: the person is too small in the photo (face about {face_size:.0f} px in "
            f"{width}x{height}); crop the photo around the person"
        )
    boxes = list(detector(image))
    if len(xs) * len(ys) > 1:
        for y in ys:
            for x in xs:
                found = detector(image[y : y + tile, x : x + tile])
                boxes += [(x0 + x, y0 + y, x1 + x, y1 + y, sc) for x0, y0, x1, y1, sc in found]
    return [b for b in boxes if b[2] - b[0] >= config.min_face_ratio * face_size]


def _confirmed(image: np.ndarray, detector: FaceDetector, box: tuple[float, ...]) -> bool:
    """Whether the detector finds the face of ``box`` again on a square
    :data:`CONFIRM_CONTEXT` times its size centred on it (a face at the scale BlazeFace sees
    best); tiling finds more faces, and a few non-faces that this second look drops."""
    height, width = image.shape[:2]
    half = CONFIRM_CONTEXT * max(box[2] - box[0], box[3] - box[1]) / 2
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    x0, y0 = max(0, round(cx - half)), max(0, round(cy - half))
    x1, y1 = min(width, round(cx + half)), min(height, round(cy + half))
    found = detector(np.ascontiguousarray(image[y0:y1, x0:x1]))
    moved = [(a + x0, b + y0, c + x0, d + y0, sc) for a, b, c, d, sc in found]
    return any(_overlap(box, other) > 1 / 3 for other in moved)


def _tile_starts(size: int, tile: int) -> list[int]:
    """Starts of tiles of ``tile`` pixels, half a tile apart, the last one flush with the
    end, covering ``[0, size)``; one tile (the whole side) when it fits."""
    if tile >= size:
        return [0]
    step = max(1, tile // 2)
    starts = list(range(0, size - tile, step))
    return starts + [size - tile]


def _distinct_faces(boxes: list[tuple[float, ...]]) -> list[tuple[float, ...]]:
    """Boxes ``(x0, y0, x1, y1, score)`` merged greedily by score: a box that covers more
    than a third of a kept (smaller or larger) box is the same face."""
    kept: list[tuple[float, ...]] = []
    for box in sorted(boxes, key=lambda b: -b[FACE_BOX]):
        if all(_overlap(box, other) <= 1 / 3 for other in kept):
            kept.append(box)
    return kept


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over the smaller box's area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / max(smaller, 1e-9)


def upper_body_crop(
    keypoints: np.ndarray, width: int, height: int, config: PersonConfig = PersonConfig()
) -> UpperBodyCrop:
    """The square around the head, shoulders and visible hands of ``keypoints`` ``[133, 3]``
    (pixels of a ``width x height`` photo), widened by ``config.margin`` on each side."""
    face = _face_box(keypoints)
    if face is None:
        raise InputError("no person found (no face visible); use a photo of one person")
    x0, y0, x1, y1 = face
    # The landmarks run from the brows to the chin: the head reaches higher (forehead, hair).
    points = [(x0, y0 - config.forehead * (y1 - y0)), (x1, y1)]
    body = list(s.LEFT_HAND + s.RIGHT_HAND) + [s.LEFT_SHOULDER, s.RIGHT_SHOULDER]
    seen = keypoints[body]
    points += [tuple(p[:2]) for p in seen if p[2] >= MIN_CONFIDENCE]
    box = np.array(points, dtype=np.float64)
    (lx, ly), (hx, hy) = box.min(axis=0), box.max(axis=0)
    side = math.ceil(max(hx - lx, hy - ly) * (1 + 2 * config.margin))
    left = round((lx + hx) / 2 - side / 2)
    top = round((ly + hy) / 2 - side / 2)
    square = (left, top, left + side, top + side)
    padding = (
        max(0, -left),
        max(0, -top),
        max(0, left + side - width),
        max(0, top + side - height),
    )
    return UpperBodyCrop(square, (int(width), int(height)), padding)


def apply_crop(image: np.ndarray, crop: UpperBodyCrop) -> np.ndarray:
    """The square of ``crop`` cut out of ``image`` ``[H, W, 3]``: ``[side, side, 3]``, the part
    outside the photo filled by repeating its border."""
    x0, y0, x1, y1 = crop.box
    left, top, right, bottom = crop.padding
    inside = image[y0 + top : y1 - bottom, x0 + left : x1 - right]
    if not any(crop.padding):
        return inside.copy()
    return cv2.copyMakeBorder(inside, top, bottom, left, right, cv2.BORDER_REPLICATE)


def crop_keypoints(keypoints: np.ndarray, crop: UpperBodyCrop) -> np.ndarray:
    """``keypoints`` ``[133, 3]`` moved into the pixels of the cropped square."""
    moved = np.array(keypoints, dtype=np.float32, copy=True)
    moved[:, 0] -= crop.box[0]
    moved[:, 1] -= crop.box[1]
    return moved
