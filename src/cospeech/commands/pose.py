"""``cospeech pose extract`` and ``cospeech pose draw``: keypoint tools."""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cospeech.errors import InputError

SHEET_SUFFIXES = (".png", ".jpg", ".jpeg")
SHEET_COLORS = 256
SHEET_JPEG_QUALITY = 90


def _extract(args: argparse.Namespace) -> int:
    from cospeech.atomic import check_writable
    from cospeech.pose.extract import DEFAULT_SMOOTHING, extract_pose

    if Path(args.output).suffix != ".npz":
        raise InputError(f"output {args.output}: must end in .npz")
    if args.pose_model is not None and args.backend != "onnx":
        raise InputError("--pose-model is used with --backend onnx only")
    check_writable(args.output)  # before the extraction, not after it
    smoothing = None if args.no_smoothing else DEFAULT_SMOOTHING
    pose = extract_pose(
        args.input, args.backend, args.pose_model, smoothing=smoothing, progress=True
    )
    pose.save(args.output)
    seen = float((pose.confidence > 0).mean())
    print(f"{args.output}: {len(pose)} frame(s), {pose.width}x{pose.height}, {seen:.0%} points")
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


def _even(image: np.ndarray) -> np.ndarray:
    """Pad odd heights/widths by one black row/column (H.264 needs even sizes)."""
    height, width = image.shape[:2]
    if height % 2 == 0 and width % 2 == 0:
        return image
    return np.pad(image, ((0, height % 2), (0, width % 2), (0, 0)))


def contact_sheet(images: list[np.ndarray], columns: int, thumb_width: int) -> np.ndarray:
    """Images ``[H, W, 3]`` of one size -> a grid ``columns`` wide of thumbnails."""
    import cv2

    height, width = images[0].shape[:2]
    thumb_height = round(thumb_width * height / width)
    thumbs = [
        cv2.resize(image, (thumb_width, thumb_height), interpolation=cv2.INTER_AREA)
        for image in images
    ]
    thumbs += [np.zeros_like(thumbs[0])] * (-len(thumbs) % columns)
    rows = [np.concatenate(thumbs[i : i + columns], axis=1) for i in range(0, len(thumbs), columns)]
    return np.concatenate(rows, axis=0)


def _draw(args: argparse.Namespace) -> int:
    from PIL import Image
    from tqdm import tqdm

    from cospeech.atomic import atomic_path, check_writable
    from cospeech.media.video import VideoWriter
    from cospeech.pose.draw import draw_pose
    from cospeech.pose.sequence import PoseSequence

    out = Path(args.output)
    if out.suffix.lower() not in (".mp4", *SHEET_SUFFIXES):
        raise InputError(f"output {out}: must end in .mp4 (video) or .png/.jpg (contact sheet)")
    for name in ("sheet_frames", "sheet_columns", "sheet_width"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    check_writable(out)
    pose = PoseSequence.load(args.pose)
    frames = _backgrounds(args.video, pose.width, pose.height, len(pose))
    drawn = (
        draw_pose(kp, pose.width, pose.height, canvas=frame)
        for kp, frame in zip(pose.keypoints, frames, strict=False)
    )
    if out.suffix.lower() in SHEET_SUFFIXES:
        picks = set(np.linspace(0, len(pose) - 1, min(args.sheet_frames, len(pose))).round())
        images = [image for t, image in enumerate(drawn) if t in picks]
        sheet = contact_sheet(images, args.sheet_columns, args.sheet_width)
        image = Image.fromarray(sheet)
        with atomic_path(out) as tmp:
            if out.suffix.lower() == ".png":  # a preview: 256 colours keep the file small
                image.quantize(SHEET_COLORS).save(tmp, format="PNG", optimize=True)
            else:
                image.save(tmp, format="JPEG", quality=SHEET_JPEG_QUALITY)
        print(f"{out}: {len(images)} of {len(pose)} frames on a contact sheet")
    else:
        with VideoWriter(out, pose.fps) as writer:
            for image in tqdm(drawn, total=len(pose), unit="frame", disable=None, leave=False):
                writer.add(_even(image))
        print(f"{out}: {len(pose)} frame(s) drawn")
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
        help="mediapipe holistic (built in) or a DWPose/RTMW .onnx file (--pose-model)",
    )  # fmt: skip
    extract.add_argument("--pose-model", help="whole-body .onnx for --backend onnx")
    extract.add_argument("--no-smoothing", action="store_true", help="raw per-frame keypoints")

    draw = tree.subcommand(
        "pose", "draw", "draw a pose.npz as skeletons (mp4), or a contact sheet (.png)", _draw,
        group_help=group_help,
    )  # fmt: skip
    draw.add_argument("pose", help="pose .npz")
    draw.add_argument("--video", help="video (or photo) of the same size to draw over")
    draw.add_argument("-o", "--output", required=True, help=".mp4 video, or .png contact sheet")
    draw.add_argument("--sheet-frames", type=int, default=12, help="frames on a contact sheet")
    draw.add_argument("--sheet-columns", type=int, default=4, help="contact sheet columns")
    draw.add_argument("--sheet-width", type=int, default=256, help="thumbnail width (pixels)")
