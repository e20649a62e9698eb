"""``cospeech pose extract`` and ``cospeech pose draw``: keypoint tools."""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cospeech.errors import InputError, check_range, count

SHEET_COLORS = 256
SHEET_DEFAULTS = {"sheet_frames": 12, "sheet_columns": 4, "sheet_width": 256}
JPEG_MAX_SIDE = 65500  # libjpeg's JPEG_MAX_DIMENSION: larger JPEGs cannot be written


def _extract(args: argparse.Namespace) -> int:
    from cospeech.atomic import check_output
    from cospeech.pose.extract import DEFAULT_SMOOTHING, extract_pose, is_image

    if args.pose_model is not None and args.backend != "onnx":
        raise InputError("--pose-model is used with --backend onnx only")
    if args.no_smoothing and is_image(args.input):
        raise InputError("--no-smoothing is for videos: a photo is one frame, never smoothed")
    check_output(args.output, ".npz")  # before the extraction, not after it
    smoothing = None if args.no_smoothing else DEFAULT_SMOOTHING
    pose = extract_pose(
        args.input, args.backend, args.pose_model, smoothing=smoothing, progress=True
    )
    pose.save(args.output)
    seen = float((pose.confidence > 0).mean())
    size = f"{pose.width}x{pose.height}"
    print(f"{args.output}: {count(len(pose), 'frame')}, {size}, {seen:.0%} points")
    return 0


def _backgrounds(path: str | None, width: int, height: int, count: int) -> Iterator[np.ndarray]:
    """``count`` frames to draw on: the given video's first ones, a photo repeated, or black.
    Raises :class:`InputError` (before the first frame) when their size or number does not
    fit the pose."""
    from cospeech.media.video import iter_frames, probe
    from cospeech.pose.extract import is_image, read_image

    if path is None:
        return itertools.repeat(np.zeros((height, width, 3), np.uint8), count)
    if is_image(path):
        photo = read_image(path)
        size, frames = (photo.shape[1], photo.shape[0]), itertools.repeat(photo, count)
    else:
        info = probe(path)
        if info.frames < count:
            raise InputError(f"video {path}: has {info.frames} frame(s), the pose has {count}")
        size, frames = (info.width, info.height), iter_frames(path)
    if size != (width, height):
        raise InputError(f"{path}: frames are {size[0]}x{size[1]}, the pose is {width}x{height}")
    return itertools.islice(frames, count)


def _sheet_options(args: argparse.Namespace, is_sheet: bool) -> dict[str, int] | None:
    """The ``--sheet-*`` values (defaults filled in, each >= 1) for a contact sheet; None
    for a video, where giving any of them is an error (they would do nothing)."""
    values = {name: getattr(args, name) for name in SHEET_DEFAULTS}
    given = {name: value for name, value in values.items() if value is not None}
    if not is_sheet:
        if given:
            flag = "--" + next(iter(given)).replace("_", "-")
            raise InputError(f"{flag} is for a contact sheet (.png/.jpg output), not a video")
        return None
    options = {**SHEET_DEFAULTS, **given}
    for name, value in options.items():
        check_range("--" + name.replace("_", "-"), value, 1)
    return options


def _check_sheet_size(sheet: dict[str, int], pose, suffix: str) -> tuple[int, int]:
    """``(frames on the sheet, columns)`` (``--sheet-frames`` and ``--sheet-columns`` cut to
    the pose's frames); InputError when the sheet would exceed Pillow's image-size limit
    (``MAX_IMAGE_PIXELS``: a larger PNG trips its decompression-bomb check when opened) or,
    for a JPEG, its format's largest side."""
    from PIL import Image

    from cospeech.media.image import JPEG_SUFFIXES, tile_height

    pictures = min(sheet["sheet_frames"], len(pose))
    columns = min(sheet["sheet_columns"], pictures)
    thumb = sheet["sheet_width"]
    width = columns * thumb
    height = -(-pictures // columns) * tile_height(pose.width, pose.height, thumb)
    if width * height > Image.MAX_IMAGE_PIXELS:
        limit = f"Pillow's limit of {Image.MAX_IMAGE_PIXELS / 1e6:.1f} megapixels"
    elif suffix in JPEG_SUFFIXES and max(width, height) > JPEG_MAX_SIDE:
        limit = f"JPEG's limit of {JPEG_MAX_SIDE} pixels a side"
    else:
        return pictures, columns
    raise InputError(
        f"the contact sheet would be {width}x{height} pixels, over {limit}: lower "
        f"--sheet-width ({thumb}), --sheet-columns ({columns}) or --sheet-frames ({pictures})"
    )


def _draw(args: argparse.Namespace) -> int:
    from cospeech.atomic import check_output
    from cospeech.media.image import IMAGE_SUFFIXES, evenly_spaced, image_grid, write_image
    from cospeech.pose.draw import draw_pose, write_pose_video
    from cospeech.pose.sequence import PoseSequence

    out = Path(args.output)
    check_output(out, ".mp4", *IMAGE_SUFFIXES)
    sheet = _sheet_options(args, out.suffix.lower() in IMAGE_SUFFIXES)
    pose = PoseSequence.load(args.pose)
    frames = _backgrounds(args.video, pose.width, pose.height, len(pose))
    if sheet is not None:
        pictures, columns = _check_sheet_size(sheet, pose, out.suffix.lower())
        picks = set(evenly_spaced(len(pose), pictures).tolist())
        images = (
            draw_pose(kp, pose.width, pose.height, canvas=frame)
            for t, (kp, frame) in enumerate(zip(pose.keypoints, frames, strict=False))
            if t in picks
        )
        grid = image_grid(images, columns, sheet["sheet_width"])
        write_image(grid, out, colours=SHEET_COLORS)  # a PNG preview: 256 colours keep it small
        print(f"{out}: {pictures} of {count(len(pose), 'frame')} on a contact sheet")
    else:
        write_pose_video(pose, out, backgrounds=frames)
        print(f"{out}: {count(len(pose), 'frame')} drawn")
    return 0


def register(tree) -> None:
    group_help = "keypoint tools"
    extract = tree.subcommand(
        "pose", "extract", "COCO-WholeBody keypoints of a video or photo -> pose.npz", _extract,
        group_help=group_help,
    )  # fmt: skip
    extract.add_argument("input", help="a video, or a photo (one-frame sequence)")
    extract.add_argument("-o", "--output", required=True, help="pose .npz to write")
    extract.add_argument(
        "--backend", default="mediapipe", choices=["mediapipe", "onnx"],
        help="mediapipe holistic (built in) or a DWPose/RTMW .onnx file (--pose-model) "
        "(default: %(default)s)",
    )  # fmt: skip
    extract.add_argument(
        "--pose-model", help="whole-body .onnx for --backend onnx (default: none; required there)"
    )
    extract.add_argument(
        "--no-smoothing", action="store_true",
        help="raw per-frame keypoints (default: One-Euro smoothed over time)",
    )  # fmt: skip

    draw = tree.subcommand(
        "pose", "draw", "draw a pose.npz as skeletons (mp4), or a contact sheet (.png)", _draw,
        group_help=group_help,
    )  # fmt: skip
    draw.add_argument("pose", help="pose .npz")
    draw.add_argument(
        "--video", help="video (or photo) of the same size to draw over (default: black)"
    )
    draw.add_argument("-o", "--output", required=True, help=".mp4 video, or .png contact sheet")
    defaults = SHEET_DEFAULTS
    draw.add_argument(
        "--sheet-frames", type=int,
        help="frames on a contact sheet, >= 1, at most the pose's "
        f"(default: {defaults['sheet_frames']})",
    )  # fmt: skip
    draw.add_argument(
        "--sheet-columns", type=int,
        help="contact sheet columns, >= 1, at most its frames "
        f"(default: {defaults['sheet_columns']})",
    )  # fmt: skip
    draw.add_argument(
        "--sheet-width", type=int,
        help="thumbnail width in pixels, >= 1, the whole sheet within Pillow's "
        f"MAX_IMAGE_PIXELS (default: {defaults['sheet_width']})",
    )  # fmt: skip
