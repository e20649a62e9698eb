"""``cospeech motion``: speech + a reference (photo or pose) -> whole-body keypoints."""

from __future__ import annotations

import argparse
from pathlib import Path

from cospeech.errors import InputError


def _reference(args: argparse.Namespace):
    from cospeech.pose.sequence import PoseSequence

    if args.reference_pose:
        pose = PoseSequence.load(args.reference_pose)
    else:
        from cospeech.pose.extract import extract_pose, is_image

        if not is_image(args.image):
            raise InputError(f"--image {args.image}: not a photo (.png, .jpg, ...)")
        pose = extract_pose(args.image)
    return pose.slice(0, 1)


def draw_video(pose, audio, path: str | Path) -> None:
    """Skeleton video of ``pose`` with ``audio`` (16 kHz) muxed, written atomically; odd
    frame sizes are padded to even ones (H.264 needs them)."""
    import numpy as np
    from tqdm import tqdm

    from cospeech.media.video import VideoWriter
    from cospeech.pose.draw import draw_pose

    width, height = pose.width + pose.width % 2, pose.height + pose.height % 2
    with VideoWriter(path, pose.fps, audio=audio) as writer:
        for keypoints in tqdm(pose.keypoints, desc="draw", unit="frame", leave=False):
            image = draw_pose(keypoints, pose.width, pose.height)
            canvas = np.zeros((height, width, 3), np.uint8)
            canvas[: pose.height, : pose.width] = image
            writer.add(canvas)


def _run(args: argparse.Namespace) -> int:
    from cospeech.audio.load import load_audio
    from cospeech.motion.generate import GenerateOptions, MotionGenerator

    if Path(args.output).suffix != ".npz":
        raise InputError(f"output {args.output}: must end in .npz")
    if args.draw and Path(args.draw).suffix != ".mp4":
        raise InputError(f"--draw {args.draw}: must end in .mp4")
    audio = load_audio(args.audio)
    reference = _reference(args)
    generator = MotionGenerator.load(args.model)
    options = GenerateOptions(
        fps=args.fps, seed=args.seed, threads=args.threads, chunk_frames=args.chunk_frames
    )
    pose = generator.generate(
        audio, reference, options=options, streaming=args.streaming, progress=True
    )
    pose.save(args.output)
    if args.draw:
        draw_video(pose, audio, args.draw)
    print(
        f"{args.output}: {len(pose)} frames at {pose.fps:g} fps, {pose.width}x{pose.height}"
        + (f"; drawn to {args.draw}" if args.draw else "")
    )
    return 0


def register(tree) -> None:
    p = tree.command(
        "motion", "speech + a reference photo or pose -> whole-body keypoints (pose.npz)", _run
    )
    p.add_argument("--audio", required=True, help="speech: wav, flac, ogg, mp3 (or a video)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", help="reference photo of the speaker (keypoints extracted)")
    source.add_argument("--reference-pose", help="reference pose .npz (its first frame)")
    p.add_argument("-o", "--output", required=True, help="pose .npz to write")
    p.add_argument("--draw", help="also draw the keypoints as an .mp4 with the audio")
    p.add_argument("--model", help="motion model folder (default: the shipped model)")
    p.add_argument("--fps", type=float, default=25.0, help="frame rate (default 25)")
    p.add_argument("--seed", type=int, default=0, help="seed of the gesture sampling")
    p.add_argument("--streaming", action="store_true", help="use the causal streaming mode")
    p.add_argument(
        "--chunk-frames", type=int, default=10, help="frames per streaming chunk (default 10)"
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: fastest)")
