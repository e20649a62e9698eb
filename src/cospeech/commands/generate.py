"""``cospeech generate --audio A --image I -o out.mp4``: speech + one photo -> talking video."""

from __future__ import annotations

import argparse


def _run(args: argparse.Namespace) -> int:
    import sys

    from cospeech.atomic import check_output
    from cospeech.errors import InputError
    from cospeech.pipeline.generate import GenerateOptions, generate
    from cospeech.pipeline.generator import generate_stream

    to_stdout = args.output == "-"
    if to_stdout and not args.stream:
        raise InputError("-o - (standard output) needs --stream: a plain mp4 is not streamable")
    if args.contact_sheet:
        if to_stdout:
            raise InputError("--contact-sheet needs -o FILE.mp4, not -o -")
        check_output(args.contact_sheet, ".png")
        from cospeech.eval.video.faces import FaceAnalyzer

        FaceAnalyzer(descriptors=False)  # fails before the long work when dlib is missing

    options = GenerateOptions(
        steps=args.steps, guidance=args.guidance, seed=args.seed, fps=args.fps, size=args.size,
        learned_motion=not args.rule_motion, attention=args.attention,
        photo_layer=not args.no_photo_layer, output_size=args.output_size,
    )  # fmt: skip
    run = generate_stream if args.stream else generate
    result = run(
        args.audio, args.image, args.output, options, reference_pose=args.reference_pose,
        save_pose=args.save_pose, model=args.model, precision=args.precision,
    )  # fmt: skip
    # With -o - standard output carries the video: the summary goes to stderr.
    report = sys.stderr if to_stdout else sys.stdout
    print(result.summary(), file=report)
    if args.contact_sheet:
        from cospeech.eval.contact_sheet import write_contact_sheet

        sheet = args.contact_sheet
        notes = (result.photo_note,) if result.photo_note else ()
        write_contact_sheet(result.path, result.keypoints, args.audio, result.fps, sheet, notes)
        print(f"wrote {args.contact_sheet}")
    return 0


def register(tree) -> None:
    parser = tree.command(
        "generate", "make a talking, gesturing video from speech and one photo", _run
    )
    from cospeech.diffusion.schedule import NUM_TRAIN_TIMESTEPS
    from cospeech.motion.generate import FPS_RANGE, MAX_SEED
    from cospeech.pipeline.bundle import SamplingSettings
    from cospeech.pipeline.generate import POSE_SIDE_MULTIPLE
    from cospeech.pipeline.photo_layer import MAX_OUTPUT_SIZE, PHOTO_SCALE
    from cospeech.pipeline.plans import ATTENTIONS
    from cospeech.precision import PRECISIONS
    from cospeech.shipped import ASSETS, TEACHER_DIR

    demo = SamplingSettings.load(ASSETS / TEACHER_DIR)  # the shipped defaults, for the help
    parser.add_argument("--audio", required=True, help="speech (wav, mp3, flac, ...)")
    parser.add_argument("--image", required=True, help="reference photo of the speaker")
    parser.add_argument(
        "-o", "--output", required=True,
        help="output video (.mp4); with --stream, - writes it to standard output",
    )  # fmt: skip
    parser.add_argument(
        "--steps", type=int,
        help=f"teacher: Euler steps, 1-{NUM_TRAIN_TIMESTEPS}; student: levels of its step list "
        f"used, 1 to all (default: the model's: demo teacher {demo.steps}, a student all)",
    )  # fmt: skip
    parser.add_argument(
        "--guidance", type=float,
        help=f"teacher only: guidance scale >= 1, 1 = none (default: the model's; demo "
        f"{demo.guidance:g}); the student runs without",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=int, default=0,
        help=f"noise and motion seed, 0-{MAX_SEED} (default: %(default)s)",
    )  # fmt: skip
    low, high = FPS_RANGE
    parser.add_argument(
        "--fps", type=float,
        help=f"frame rate, {low:g}-{high:g} (default: the model's; demo {demo.fps:g})",
    )  # fmt: skip
    parser.add_argument(
        "--size", type=int,
        help=f"the model's frame side in pixels, a multiple of {POSE_SIDE_MULTIPLE} up to the "
        f"size it was trained at (default: that size; demo {demo.size})",
    )  # fmt: skip
    parser.add_argument(
        "--output-size", type=int,
        help=f"output frame side, a multiple of {POSE_SIDE_MULTIPLE} from --size to "
        f"{MAX_OUTPUT_SIZE}: the photo, warped to each pose, at that size, the model painting "
        f"what the photo cannot show (default: {PHOTO_SCALE} x --size; demo "
        f"{PHOTO_SCALE * demo.size})",
    )  # fmt: skip
    parser.add_argument(
        "--no-photo-layer", action="store_true",
        help="output the model's own frames at --size instead of the warped photo (default: "
        "the photo layer on)",
    )  # fmt: skip
    parser.add_argument(
        "--save-pose", help="also write the driving keypoints (.npz) (default: not written)"
    )
    parser.add_argument(
        "--reference-pose",
        help="keypoints of the photo (.npz of the photo's size) instead of detecting them "
        "(default: detected with mediapipe)",
    )  # fmt: skip
    parser.add_argument(
        "--contact-sheet",
        help="also write a PNG sheet of frames, mouths and a chart of loudness, mouth "
        "opening (dlib landmarks) and wrists (default: not written)",
    )  # fmt: skip
    parser.add_argument(
        "--model",
        help="teacher or student (of the shipped models), a model folder with teacher/, vae/ "
        "and optionally student/, or a trained DiT folder (a run's final-ema, with the shipped "
        "VAE) (default: the shipped student if there is one, else the shipped teacher)",
    )  # fmt: skip
    parser.add_argument(
        "--attention",
        help=f"self-attention: {', '.join(ATTENTIONS)} (global: the top-K frame mask only; "
        "sparse: with the body-region mask) (default: the model's: dense for the teacher, "
        "the student's sampling.json)",
    )  # fmt: skip
    parser.add_argument(
        "--precision", choices=PRECISIONS, default="auto",
        help="number format of the models: bfloat16 runs the DiT's weights in bfloat16 and "
        "the VAE under bfloat16 autocast; auto: bfloat16 where the CPU has AVX-512 BF16 or "
        "AMX, or the GPU supports it, float32 elsewhere (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--stream", action="store_true",
        help="generate window after window (the student: chunk after chunk) and write a "
        "fragmented mp4, playable while it grows (default: offline, the teacher's windows "
        "fused at every step)",
    )  # fmt: skip
    parser.add_argument(
        "--rule-motion", action="store_true",
        help="use the rule motion baseline (default: the learned motion model when installed)",
    )  # fmt: skip
