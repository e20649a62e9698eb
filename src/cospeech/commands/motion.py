"""``cospeech motion``: speech + a reference (photo or pose) -> whole-body keypoints;
``cospeech motion-calibrate``: fit the head-motion gains of a motion model on a split."""

from __future__ import annotations

import argparse

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


def _options(args: argparse.Namespace):
    """The generation options of the command line (range errors name the flag);
    ``--chunk-frames`` belongs to ``--streaming``."""
    from cospeech.motion.generate import MotionOptions

    if args.chunk_frames is not None and not args.streaming:
        raise InputError("--chunk-frames is used with --streaming only (offline runs in windows)")
    chunk = {} if args.chunk_frames is None else {"chunk_frames": args.chunk_frames}
    return MotionOptions(
        fps=args.fps, seed=args.seed, threads=args.threads, head_gain=args.head_gain, **chunk
    )


def _run(args: argparse.Namespace) -> int:
    from cospeech.atomic import check_output
    from cospeech.audio.load import load_audio
    from cospeech.errors import count
    from cospeech.motion.generate import MotionGenerator

    check_output(args.output, ".npz")  # before the work, not after it
    if args.draw:
        check_output(args.draw, ".mp4", name="--draw")
    options = _options(args)
    audio = load_audio(args.audio)
    reference = _reference(args)
    generator = MotionGenerator.load(args.model)
    pose = generator.generate(
        audio, reference, options=options, streaming=args.streaming, progress=True
    )
    pose.save(args.output)
    if args.draw:
        from cospeech.pose.draw import write_pose_video

        write_pose_video(pose, args.draw, audio)
    print(
        f"{args.output}: {count(len(pose), 'frame')} at {pose.fps:g} fps, "
        f"{pose.width}x{pose.height}" + (f"; drawn to {args.draw}" if args.draw else "")
    )
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from cospeech.data.manifest import SPLITS
    from cospeech.errors import check_range
    from cospeech.motion.checkpoint import CONFIG_NAME, SHIPPED_MODEL, save_head_calibration
    from cospeech.motion.head_fit import TRUTH_SPLITS, calibrate, summary

    check_range("--clips", args.clips, 0)
    truth_splits = TRUTH_SPLITS
    if args.truth_splits is not None:
        truth_splits = tuple(dict.fromkeys(s.strip() for s in args.truth_splits.split(",")))
        if not set(truth_splits) <= set(SPLITS):
            raise InputError(f"--truth-splits: comma-separated splits of {list(SPLITS)}, "
                             f"got {args.truth_splits!r}")  # fmt: skip
    result = calibrate(args.model, args.data, args.split, args.clips, fit=not args.measure_only,
                       progress=True, truth_splits=truth_splits)  # fmt: skip
    print(summary(result))
    if not args.measure_only:
        print(f"gains fitted on the model's motion in the {args.split} clips, to the true "
              f"head motion of the {' + '.join(truth_splits)} clips")  # fmt: skip
        save_head_calibration(args.model, result.gains)
        folder = args.model or SHIPPED_MODEL
        print(f"head_gain written to {folder}/{CONFIG_NAME}")
    return 0


def register(tree) -> None:
    from cospeech.motion.generate import DEFAULT_FPS, FPS_RANGE, MAX_SEED, MotionOptions
    from cospeech.motion.head_calibration import MAX_GAIN

    chunk, window = MotionOptions.chunk_frames, MotionOptions.window_frames
    p = tree.command(
        "motion", "speech + a reference photo or pose -> whole-body keypoints (pose.npz)", _run
    )
    p.add_argument("--audio", required=True, help="speech: wav, flac, ogg, mp3 (or a video)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", help="reference photo of the speaker (keypoints extracted)")
    source.add_argument("--reference-pose", help="reference pose .npz (its first frame)")
    p.add_argument("-o", "--output", required=True, help="pose .npz to write")
    p.add_argument(
        "--draw", help="also draw the keypoints as an .mp4 with the audio (default: no video)"
    )
    p.add_argument("--model", help="motion model folder (default: the shipped model)")
    low, high = FPS_RANGE
    p.add_argument(
        "--fps", type=float, default=DEFAULT_FPS,
        help=f"frame rate, {low:g}-{high:g} (default: %(default)g)",
    )  # fmt: skip
    p.add_argument(
        "--seed", type=int, default=0,
        help=f"seed of the gesture sampling, 0-{MAX_SEED} (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--streaming", action="store_true",
        help="use the causal streaming mode (default: offline, bidirectional windows)",
    )  # fmt: skip
    p.add_argument(
        "--chunk-frames", type=int,
        help=f"frames per streaming chunk, 1-{window}; with --streaming only (default: {chunk})",
    )  # fmt: skip
    p.add_argument(
        "--threads", type=int, default=1,
        help="torch threads, 1 to the CPU count (default: %(default)s, the fastest)",
    )  # fmt: skip
    p.add_argument(
        "--head-gain", type=float,
        help=f"one gain, 0-{MAX_GAIN:g}, on the head's rigid motion in place of the model's "
        "calibrated gains, 1: the model's raw head motion (default: the calibrated gains)",
    )  # fmt: skip

    c = tree.command(
        "motion-calibrate",
        "fit a motion model's head-motion gains on a dataset split (writes its config.json)",
        _calibrate,
    )
    c.add_argument("--data", required=True, help="dataset folder (manifest.jsonl)")
    c.add_argument(
        "--split", choices=("train", "val", "test"), default="val",
        help="clips the model's head motion is measured on (default: %(default)s; keep test "
        "for measuring)",
    )  # fmt: skip
    c.add_argument(
        "--truth-splits",
        help="comma-separated splits whose true head motion the gains match (default: "
        "train,val)",
    )  # fmt: skip
    c.add_argument("--clips", type=int, default=0, help="first N clips of the split (0 = all)")
    c.add_argument("--model", help="motion model folder (default: the shipped model)")
    c.add_argument(
        "--measure-only", action="store_true",
        help="measure the model's stored gains on the split; fit and write nothing",
    )  # fmt: skip
