"""Warp a reference photo to another pose: one rigid MLS per body region, soft-blended.

For every target pixel (backward mapping) the warp finds where it comes from in the
reference: each region of :data:`WARP_REGIONS` (torso, each arm, face, each hand) has its
own rigid MLS (:func:`cospeech.pose.mls.rigid_mls`) from the target pose's keypoints of the
region to the reference pose's; the regions' masks are the hulls of
:mod:`cospeech.pose.raster` (rasterised from the *target* pose, dilated by a margin,
softened by a Gaussian) composited back to front (a hand covers the face it is in front
of), and what no region covers is background (identity, or the torso's motion); missing
hips get stand-ins below the shoulders, so the chest moves with them. The
displacements are blended with those weights on a coarse grid, upsampled, and the image is
sampled once (``cv2.remap``).

The validity mask marks what the warp cannot know: a target pixel whose source lies outside
the reference, a background pixel whose source is covered by the person in the reference
(a hand moved away uncovers background that the photo never showed), or a pixel inside the
target's open mouth (the inner-lip polygon) whose source is not inside the reference's
(stretched lips are not teeth or a mouth interior).

The generation pipeline's photo layer (:mod:`cospeech.pipeline.photo_layer`) warps the
photo with it and lets the model paint what is not valid. docs/pose.md has the rules, the
speed and the limits.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import cv2
import numpy as np

from cospeech.errors import InputError
from cospeech.pose import schema as s
from cospeech.pose.mls import grid_points, pixel_centres, rigid_mls, upsample_field
from cospeech.pose.raster import region_token_masks
from cospeech.pose.regions import BODY_REGIONS, RegionSet
from cospeech.pose.sequence import PoseSequence

WARP_REGIONS: RegionSet = {
    "torso": BODY_REGIONS["shoulders"] + BODY_REGIONS["body"],
    "left_arm": BODY_REGIONS["arms"][:2],
    "right_arm": BODY_REGIONS["arms"][2:],
    "face": BODY_REGIONS["face"],
    "left_hand": BODY_REGIONS["left_hand"],
    "right_hand": BODY_REGIONS["right_hand"],
}
"""Regions warped rigidly on their own, **back to front** (a later region covers an
earlier one where both claim a pixel): the parts of
:data:`~cospeech.pose.regions.BODY_REGIONS`, with the arms split into left and right and
the shoulders joined to the torso."""

FrozenRegions = tuple[tuple[str, tuple[tuple[int, ...], ...]], ...]
"""A region set as a hashable tuple of ``(name, parts)`` (``tuple(regions.items())``), for
the per-photo caches."""
BACKGROUNDS = ("identity", "torso")
HIP_DROP = 1.5
"""Stand-in hips lie this many shoulder widths below the shoulders (:func:`warp_map`)."""
OCCLUSION_MARGIN = 0.02
"""Margin of the photo's regions when judging what hides what (:func:`_photo_regions`), as a
fraction of the image's shorter side: tighter than the warp's own, the flesh, not the slack."""
MIN_MOUTH_AREA = 2.0
"""Pixels²: a photo's inner-lip polygon smaller than this shows no mouth interior."""
BATCH = 16
"""Frames whose regions :func:`warp_maps` rasterises in one call."""
_MIN_WEIGHT = 1e-3  # a region's MLS is evaluated only where its weight exceeds this


@dataclass(frozen=True)
class WarpConfig:
    """``grid``: pixels between MLS evaluations (1 = every pixel); ``margin``, ``feather``:
    dilation of each region's hull and the Gaussian sigma that softens its mask, as
    fractions of the image's shorter side; ``region_margins``: ``(name, margin)`` pairs
    that replace ``margin`` for those regions (the face's landmarks stop at the brows: a
    larger margin takes the forehead and hair along); ``alpha``: MLS weight falloff;
    ``background``: ``identity`` (a static backdrop) or ``torso`` (moves with the torso);
    ``min_confidence``: keypoints below it (in either pose) are not used; ``new_mouth``:
    mark the inside of a mouth opened wider than in the photo not valid (else the stretched
    lips stand for it); ``occlusion``: mark a pixel not valid where it samples a part of
    the photo that another region hides there (a hand that rested on the chest in the
    photo and has moved away leaves the chest under it unknown)."""

    grid: int = 4
    margin: float = 0.04
    feather: float = 0.015
    region_margins: tuple[tuple[str, float], ...] = (("face", 0.08),)
    alpha: float = 1.0
    background: str = "identity"
    min_confidence: float = 0.3
    new_mouth: bool = True
    occlusion: bool = True

    def __post_init__(self) -> None:
        if not 1 <= int(self.grid) <= 64:
            raise InputError(f"warp grid must be 1-64 pixels, got {self.grid}")
        named = [(f"{region} margin", m) for region, m in self.region_margins]
        for name, value in [("margin", self.margin), ("feather", self.feather), *named]:
            if not (math.isfinite(value) and 0 <= value <= 1):
                raise InputError(f"warp {name} must be in [0, 1], got {value}")
        if self.background not in BACKGROUNDS:
            raise InputError(
                f"warp background must be one of {list(BACKGROUNDS)}, got {self.background!r}"
            )

    def margins(self, regions: RegionSet, size: int) -> dict[str, float]:
        """Each region's margin in pixels for an image whose shorter side is ``size``."""
        special = dict(self.region_margins)
        return {name: special.get(name, self.margin) * size for name in regions}


@dataclass(frozen=True)
class WarpMap:
    """``source`` float32 ``[H, W, 2]``: for every target pixel, the continuous (x, y) in the
    reference it is sampled from; ``valid`` bool ``[H, W]``: False where the reference
    cannot show that pixel (outside it, or disoccluded background)."""

    source: np.ndarray
    valid: np.ndarray


@dataclass(frozen=True)
class WarpedReference:
    """``image`` ``[H, W, C]`` the reference warped to the target pose; ``valid`` and
    ``source`` as in :class:`WarpMap`."""

    image: np.ndarray
    valid: np.ndarray
    source: np.ndarray


def warp_reference(
    image: np.ndarray,
    source_pose_frame: np.ndarray,
    target_pose_frame: np.ndarray,
    regions: RegionSet = WARP_REGIONS,
    config: WarpConfig = WarpConfig(),
) -> WarpedReference:
    """Warp ``image`` ``[H, W, 3]`` (uint8 or float32) showing the person in pose
    ``source_pose_frame`` ``[133, 3]`` (image pixels, confidence) to ``target_pose_frame``;
    ``regions`` back to front. Pixels sampled outside the image repeat its border."""
    target = np.asarray(target_pose_frame)
    return warp_references(image, source_pose_frame, target[None], regions, config)[0]


def warp_references(
    image: np.ndarray,
    source_pose_frame: np.ndarray,
    target_pose_frames: np.ndarray,
    regions: RegionSet = WARP_REGIONS,
    config: WarpConfig = WarpConfig(),
) -> list[WarpedReference]:
    """:func:`warp_reference` to every pose of ``target_pose_frames`` ``[F, 133, 3]``: the
    same warps, with the regions of :data:`BATCH` frames rasterised at once."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype not in (np.uint8, np.float32):
        raise InputError(
            f"warp_reference: expected an [H, W, 3] uint8 or float32 image, "
            f"got {image.dtype} {list(image.shape)}"
        )
    height, width = image.shape[:2]
    out = []
    for warp in warp_maps(source_pose_frame, target_pose_frames, height, width, regions, config):
        xy = warp.source - 0.5  # continuous coordinates -> OpenCV's pixel-index coordinates
        warped = cv2.remap(
            image, xy[..., 0], xy[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        out.append(WarpedReference(warped, warp.valid, warp.source))
    return out


def warp_map(
    source_pose_frame: np.ndarray,
    target_pose_frame: np.ndarray,
    height: int,
    width: int,
    regions: RegionSet = WARP_REGIONS,
    config: WarpConfig = WarpConfig(),
) -> WarpMap:
    """The backward map of :func:`warp_reference` for a ``width x height`` image."""
    target = np.asarray(target_pose_frame)
    return next(warp_maps(source_pose_frame, target[None], height, width, regions, config))


def warp_maps(
    source_pose_frame: np.ndarray,
    target_pose_frames: np.ndarray,
    height: int,
    width: int,
    regions: RegionSet = WARP_REGIONS,
    config: WarpConfig = WarpConfig(),
) -> Iterator[WarpMap]:
    """:func:`warp_map` to every pose of ``target_pose_frames`` ``[F, 133, 3]``, one after
    another (the inputs checked before the first); the regions of :data:`BATCH` frames are
    rasterised at once (one pass of the raster's per-call work instead of one per frame)."""
    targets = np.asarray(target_pose_frames, dtype=np.float64)
    if targets.ndim != 3:
        raise InputError(
            f"warp: the target pose frames must be [F, {s.NUM_KEYPOINTS}, 3], "
            f"got {list(targets.shape)}"
        )
    src = _keypoints(source_pose_frame, "source")
    tgts = [_keypoints(frame, "target") for frame in targets]
    if not regions:
        raise InputError("warp_map: need at least one region")
    if config.background == "torso" and "torso" not in regions:
        raise InputError("warp_map: background 'torso' needs a region named torso")
    return _batched_maps(src, tgts, height, width, regions, config)


def _batched_maps(
    src: np.ndarray,
    tgts: list[np.ndarray],
    height: int,
    width: int,
    regions: RegionSet,
    config: WarpConfig,
) -> Iterator[WarpMap]:
    """The maps of :func:`warp_maps` for checked poses."""
    for first in range(0, len(tgts), BATCH):
        pairs = [_with_hips(src, tgt, config) for tgt in tgts[first : first + BATCH]]
        shared = np.stack([_confident(a, config) & _confident(b, config) for a, b in pairs])
        # Target regions from the keypoints both poses show (the only ones with a known motion).
        masks = _soft_masks(np.stack([b for _, b in pairs]), shared, height, width, regions,
                            config)  # fmt: skip
        for (source, target), use, frame_masks in zip(pairs, shared, masks, strict=True):
            yield _frame_map(source, target, use, frame_masks, height, width, regions, config)


def _frame_map(
    src: np.ndarray,
    tgt: np.ndarray,
    shared: np.ndarray,
    masks: np.ndarray,
    height: int,
    width: int,
    regions: RegionSet,
    config: WarpConfig,
) -> WarpMap:
    """One frame's map from its poses (with stand-in hips), the keypoints both show
    ``shared`` ``[133]`` and the target's region masks ``[R, h, w]``."""
    weights, background = _composite(masks)
    centres = grid_points(height, width, config.grid)  # [h, w, 2]
    displacement = _blend(weights, background, centres, regions, tgt, src, shared, config)
    coarse = np.concatenate([displacement, background[..., None]], axis=-1)
    full = upsample_field(coarse, config.grid, height, width)
    source = pixel_centres(height, width) + full[..., :2]
    valid = _validity(source, full[..., 2], src, regions, config)
    if config.occlusion:
        labels = np.concatenate([background[None], weights]).argmax(axis=0).astype(np.uint8)
        valid &= ~_occluded(source, _nearest_node(labels, config.grid, height, width), src,
                            regions, config)  # fmt: skip
    if config.new_mouth:
        valid &= ~_new_mouth_interior(source, src, tgt, config)
    return WarpMap(source, valid)


def _blend(
    weights: np.ndarray,
    background: np.ndarray,
    centres: np.ndarray,
    regions: RegionSet,
    target: np.ndarray,
    source: np.ndarray,
    shared: np.ndarray,
    config: WarpConfig,
) -> np.ndarray:
    """The regions' MLS displacements at the grid nodes ``centres`` ``[h, w, 2]``, blended
    with their ``weights`` ``[R, h, w]`` and the ``background``'s ``[h, w]`` (identity, or
    the torso's motion): ``[h, w, 2]``."""
    displacement = np.zeros_like(centres)
    total = np.zeros(centres.shape[:2])  # the weights used: negligible ones are skipped
    for name, weight in zip(regions, weights, strict=True):
        total += _accumulate(
            displacement, weight, centres, regions[name], target, source, shared, config
        )
    if config.background == "torso":
        total += _accumulate(
            displacement, background, centres, regions["torso"], target, source, shared, config
        )
    else:
        total += background  # identity: zero displacement
    return displacement / np.maximum(total, _MIN_WEIGHT)[..., None]


def _validity(
    source: np.ndarray,
    background: np.ndarray,
    keypoints: np.ndarray,
    regions: RegionSet,
    config: WarpConfig,
) -> np.ndarray:
    """Bool ``[H, W]``: the sampled ``source`` position lies in the photo, and a pixel that
    is background (``background`` weight ``[H, W]`` > 0.5) does not sample the person (the
    soft mask of the photo's pose, ``keypoints``, > 0.5: disoccluded)."""
    height, width = source.shape[:2]
    frozen = tuple(regions.items())
    person = _person_mask(keypoints.tobytes(), height, width, frozen, config)
    shows_person = _sample_coarse(person, source, config.grid) > 0.5
    return _inside(source, height, width) & ~((background > 0.5) & shows_person)


def _occluded(
    source: np.ndarray,
    labels: np.ndarray,
    keypoints: np.ndarray,
    regions: RegionSet,
    config: WarpConfig,
) -> np.ndarray:
    """Bool ``[H, W]``: the pixel's region (``labels`` uint8 ``[H, W]``: 0 background, ``1 +
    r`` region ``r``) samples, at ``source``, a place of the photo (``keypoints``' pose)
    where a region drawn in front of it stands (:func:`_photo_regions`; the face does not
    count: its margin spans the neck and hair, which the torso may show)."""
    height, width = source.shape[:2]
    photo = _photo_regions(keypoints.tobytes(), height, width, tuple(regions.items()), config)
    xy = source - 0.5  # continuous -> pixel-index coordinates, as for the image
    under = cv2.remap(photo, xy[..., 0], xy[..., 1], cv2.INTER_NEAREST,
                      borderMode=cv2.BORDER_CONSTANT, borderValue=0)  # fmt: skip
    table = _in_front(tuple(regions))
    return np.take(table.ravel(), labels.astype(np.intp) * len(table) + under)


def _nearest_node(values: np.ndarray, grid: int, height: int, width: int) -> np.ndarray:
    """Node values ``[h, w]`` (node ``k`` at pixel ``k * grid``) at every pixel: the nearest
    node's, ``[H, W]``."""
    inverse = np.array([[1.0 / grid, 0.0, 0.0], [0.0, 1.0 / grid, 0.0]])
    return cv2.warpAffine(values, inverse, (width, height),
                          flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)  # fmt: skip


@functools.lru_cache(maxsize=8)
def _in_front(names: tuple[str, ...]) -> np.ndarray:
    """Bool ``[1 + R, 1 + R]``: entry ``[a, b]`` is whether label ``b`` is drawn in front of
    label ``a`` and hides it (labels: 0 background, ``1 + r`` region ``r``, back to front;
    the background's row is empty, :func:`_validity` judges it; the face hides nothing)."""
    labels = len(names) + 1
    table = np.zeros((labels, labels), dtype=bool)
    for behind in range(1, labels):
        for front in range(behind + 1, labels):
            table[behind, front] = names[front - 1] != "face"
    table.flags.writeable = False
    return table


@functools.lru_cache(maxsize=8)
def _photo_regions(
    keypoints: bytes,
    height: int,
    width: int,
    regions: FrozenRegions,
    config: WarpConfig,
) -> np.ndarray:
    """uint8 ``[H, W]``: on every pixel of the photo (its pose ``keypoints``, the bytes of
    a float64 ``[133, 3]``) the front-most region there, ``1 + r`` (0: background): the
    regions' hulls at every pixel, grown by :data:`OCCLUSION_MARGIN`, not softened. Cached
    for every frame warped from one photo."""
    sharp = replace(config, grid=1, margin=OCCLUSION_MARGIN, region_margins=(), feather=0.0)
    masks = _photo_masks(keypoints, height, width, regions, sharp)
    labels = np.zeros((height, width), dtype=np.uint8)
    for index, mask in enumerate(masks):  # back to front: a later region covers
        labels[mask > 0.5] = index + 1
    labels.flags.writeable = False
    return labels


def _photo_masks(
    keypoints: bytes,
    height: int,
    width: int,
    regions: FrozenRegions,
    config: WarpConfig,
) -> np.ndarray:
    """The regions' soft masks ``[R, h, w]`` (:func:`_soft_masks`) of the photo's pose
    ``keypoints`` (the bytes of its float64 ``[133, 3]``, hashable for the caches)."""
    frame = np.frombuffer(keypoints, dtype=np.float64).reshape(s.NUM_KEYPOINTS, 3)
    use = _confident(frame, config)
    return _soft_masks(frame[None], use[None], height, width, dict(regions), config)[0]


@functools.lru_cache(maxsize=8)
def _person_mask(
    keypoints: bytes,
    height: int,
    width: int,
    regions: FrozenRegions,
    config: WarpConfig,
) -> np.ndarray:
    """The soft mask ``[h, w]`` of the person in the photo's pose (``keypoints``: the bytes
    of its float64 ``[133, 3]``) at the grid nodes. Cached: every frame warped from one
    photo needs the same mask (a third of a frame's warping time)."""
    person = 1.0 - _composite(_photo_masks(keypoints, height, width, regions, config))[1]
    person.flags.writeable = False  # shared by every later call
    return person


def _new_mouth_interior(
    source: np.ndarray, reference: np.ndarray, target: np.ndarray, config: WarpConfig
) -> np.ndarray:
    """Bool ``[H, W]``: inside the target's inner-lip polygon, sampling a point outside the
    reference's (all False unless both poses show every inner-lip point)."""
    height, width = source.shape[:2]
    lips = list(s.FACE_INNER_LIPS)
    if not (_confident(reference, config)[lips].all() and _confident(target, config)[lips].all()):
        return np.zeros((height, width), dtype=bool)
    opening = _polygon_mask(target[lips, :2], height, width) > 0
    if not opening.any():
        return opening
    if _area(reference[lips, :2]) < MIN_MOUTH_AREA:
        return opening  # the photo's mouth is closed: it shows no interior anywhere
    xy = source - 0.5  # continuous -> pixel-index coordinates, as for the image
    was_open = cv2.remap(
        _polygon_mask(reference[lips, :2], height, width), xy[..., 0], xy[..., 1],
        cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )  # fmt: skip
    return opening & (was_open == 0)


def _area(points: np.ndarray) -> float:
    """Area of polygon ``points`` ``[K, 2]`` (shoelace formula)."""
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _polygon_mask(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 ``[H, W]``: 1 on the pixels whose centres lie inside polygon ``points`` ``[K, 2]``
    (continuous pixel coordinates), drawn with 1/16-pixel precision."""
    mask = np.zeros((height, width), dtype=np.uint8)
    shift = 4
    vertices = np.round((points - 0.5) * (1 << shift)).astype(np.int32)
    cv2.fillPoly(mask, [vertices], 1, lineType=cv2.LINE_8, shift=shift)
    return mask


def _keypoints(frame: np.ndarray, name: str) -> np.ndarray:
    frame = np.asarray(frame, dtype=np.float64)
    if frame.shape != (s.NUM_KEYPOINTS, 3) or not np.isfinite(frame).all():
        raise InputError(
            f"warp: the {name} pose frame must be finite [{s.NUM_KEYPOINTS}, 3], "
            f"got {list(frame.shape)}"
        )
    return frame


def _with_hips(
    source: np.ndarray, target: np.ndarray, config: WarpConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Both frames with stand-in hips where a hip is missing in either (an upper-body photo
    rarely shows them; without them the torso is only a band along the shoulders): each
    frame's hip below its shoulder, :data:`HIP_DROP` shoulder widths down, at right angles
    to the shoulder line, so the torso moves rigidly with the shoulders."""
    shoulders = [s.LEFT_SHOULDER, s.RIGHT_SHOULDER]
    both = _confident(source, config) & _confident(target, config)
    hips = [hip for hip in (s.LEFT_HIP, s.RIGHT_HIP) if not both[hip]]
    if not hips or not both[shoulders].all():
        return source, target
    out = []
    for frame in (source, target):
        frame = frame.copy()
        left, right = frame[s.LEFT_SHOULDER, :2], frame[s.RIGHT_SHOULDER, :2]
        across = left - right  # the person's right to left: image left to right, facing us
        down = HIP_DROP * np.array([-across[1], across[0]])
        for hip, shoulder in ((s.LEFT_HIP, left), (s.RIGHT_HIP, right)):
            if hip in hips:
                frame[hip] = (*(shoulder + down), 1.0)
        out.append(frame)
    return out[0], out[1]


def _confident(keypoints: np.ndarray, config: WarpConfig) -> np.ndarray:
    conf = keypoints[:, 2]
    return (conf >= config.min_confidence) & (conf > 0)


def _indices(parts: tuple[tuple[int, ...], ...]) -> np.ndarray:
    """The keypoints of a region's parts, each once, in order of first appearance."""
    return np.array(list(dict.fromkeys(i for part in parts for i in part)), dtype=np.int64)


def _soft_masks(
    keypoints: np.ndarray,
    use: np.ndarray,
    height: int,
    width: int,
    regions: RegionSet,
    config: WarpConfig,
) -> np.ndarray:
    """Soft masks ``[F, R, h, w]`` in [0, 1] at the nodes of
    :func:`~cospeech.pose.mls.grid_points` for frames ``keypoints`` ``[F, 133, 3]``: each
    region's hulls over the keypoints in ``use`` ``[F, 133]`` (the rule of
    :func:`~cospeech.pose.raster.region_token_masks` with one token per node), blurred by
    ``feather``."""
    grid = int(config.grid)
    rows, cols = grid_points(height, width, grid).shape[:2]
    frames = keypoints.copy()
    # The raster's token centres are at (c + 0.5) * grid, the nodes at 0.5 + c * grid: shift.
    frames[..., :2] += grid / 2 - 0.5
    frames[..., 2] = use.astype(np.float64)  # confidence 1 for the keypoints used, else 0
    pose = PoseSequence(frames, 1.0, cols * grid, rows * grid)
    margins = {name: m / grid for name, m in config.margins(regions, min(height, width)).items()}
    bits = region_token_masks(
        pose, 1, grid, (1, 1, 1), margins, regions=regions, min_confidence=0.5
    )  # [F, h, w]
    masks = np.stack([(bits >> i) & 1 for i in range(len(regions))], axis=1).astype(np.float32)
    sigma = config.feather * min(height, width) / grid
    if sigma >= 0.3:
        for mask in masks.reshape(-1, rows, cols):
            cv2.GaussianBlur(mask, (0, 0), sigma, dst=mask, borderType=cv2.BORDER_REPLICATE)
    return masks


def _composite(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Back-to-front "over" compositing of soft masks ``[R, h, w]``: each region's weight
    (its mask times what the regions in front of it leave) ``[R, h, w]`` and the background's
    ``[h, w]``; they sum to 1 everywhere."""
    remaining = np.ones(masks.shape[1:], dtype=np.float32)
    weights = np.empty_like(masks)
    for r in range(len(masks) - 1, -1, -1):
        weights[r] = masks[r] * remaining
        remaining = remaining * (1.0 - masks[r])
    return weights, remaining


def _accumulate(
    displacement: np.ndarray,
    weight: np.ndarray,
    centres: np.ndarray,
    parts: tuple[tuple[int, ...], ...],
    target: np.ndarray,
    source: np.ndarray,
    shared: np.ndarray,
    config: WarpConfig,
) -> np.ndarray:
    """Add ``weight * (MLS(target -> source) - centre)`` to ``displacement [h, w, 2]`` where
    the weight is not negligible, the controls being the keypoints of the region's ``parts``
    shown in both poses; returns the weight used ``[h, w]`` (0 where skipped)."""
    keypoints = _indices(parts)
    use = keypoints[shared[keypoints]]
    where = weight > _MIN_WEIGHT
    if use.size == 0 or not where.any():
        return np.zeros(weight.shape)
    points = centres[where]
    moved = rigid_mls(points, target[use, :2], source[use, :2], config.alpha)
    displacement[where] += weight[where, None] * (moved - points)
    return np.where(where, weight, 0.0)


def _inside(source: np.ndarray, height: int, width: int) -> np.ndarray:
    x, y = source[..., 0], source[..., 1]
    return (x >= 0) & (x <= width) & (y >= 0) & (y <= height)


def _sample_coarse(values: np.ndarray, source: np.ndarray, grid: int) -> np.ndarray:
    """Bilinear samples of node values ``[h, w]`` (node ``k`` at ``0.5 + k * grid``) at
    continuous pixel positions ``source [H, W, 2]``; 0 outside."""
    coords = (source - 0.5) / grid
    return cv2.remap(
        values.astype(np.float32),
        coords[..., 0],
        coords[..., 1],
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
