"""``cospeech pose extract`` and ``cospeech pose draw``: keypoint tools."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cospeech.errors import InputError

SHEET_SUFFIXES = (".png", ".jpg", ".jpeg")
SHEET_COLORS = 256
SHEET_JPEG_QUALITY = 90


def _extract(args: argparse.Namespace) -> int:
    from cospeech.pose.extract import DEFAULT_SMOOTHING, extract_pose

    if Path(args.output).suffix != ".npz":
        raise InputError(f"output {args.output}: must end in .npz")
    smoothing = None if args.no_smoothing else DEFAULT_SMOOTHING
    pose = extract_pose(
        args.input, args.backend, args.pose_model, smoothing=smoothing, progress=True
    )
    pose.save(args.output)
    seen = float((pose.confidence > 0).mean())
    print(f"{args.output}: {len(pose)} frame(s), {pose.width}x{pose.height}, {seen:.0%} points")
    return 0


def _backgrounds(path: str | None, width: int, height: int, count: int):
    """Frames to draw on: the given video's (or photo's), else black; ``count`` at most."""
    from cospeech.media.video import iter_frames
    from cospeech.pose.extract import is_image, read_image

    black = np.zeros((height, width, 3), np.uint8)
    frames = iter([]) if path is None else (
        iter([read_image(path)]) if is_image(path) else iter_frames(path)
    )  # fmt: skip
    for _ in range(count):
        frame = next(frames, black)
        if frame.shape[:2] != (height, width):
            raise InputError(
                f"{path}: frames are {frame.shape[1]}x{frame.shape[0]}, "
                f"the pose is {width}x{height}"
            )
        yield frame


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

    from cospeech.atomic import atomic_path
    from cospeech.media.video import VideoWriter
    from cospeech.pose.draw import draw_pose
    from cospeech.pose.sequence import PoseSequence

    pose = PoseSequence.load(args.pose)
    out = Path(args.output)
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
            for image in drawn:
                writer.add(image)
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
