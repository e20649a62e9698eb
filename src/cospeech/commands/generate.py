"""``cospeech generate --audio A --image I -o out.mp4``: speech + one photo -> talking video."""

from __future__ import annotations

import argparse


def _run(args: argparse.Namespace) -> int:
    from cospeech.pipeline.generate import GenerateOptions, generate

    options = GenerateOptions(
        steps=args.steps, guidance=args.guidance, seed=args.seed, fps=args.fps, size=args.size,
        learned_motion=not args.rule_motion,
    )  # fmt: skip
    result = generate(
        args.audio, args.image, args.output, options, reference_pose=args.reference_pose,
        save_pose=args.save_pose, model=args.model,
    )  # fmt: skip
    print(result.summary())
    return 0


def register(tree) -> None:
    parser = tree.command(
        "generate", "make a talking, gesturing video from speech and one photo", _run
    )
    parser.add_argument("--audio", required=True, help="speech (wav, mp3, flac, ...)")
    parser.add_argument("--image", required=True, help="reference photo of the speaker")
    parser.add_argument("-o", "--output", required=True, help="output video (.mp4)")
    parser.add_argument("--steps", type=int, help="Euler steps (default: the model's)")
    parser.add_argument("--guidance", type=float, help="guidance scale (1 = none)")
    parser.add_argument("--seed", type=int, default=0, help="noise and motion seed")
    parser.add_argument("--fps", type=float, help="frame rate (default 25)")
    parser.add_argument("--size", type=int, help="frame side in pixels (default: the model's)")
    parser.add_argument("--save-pose", help="also write the driving keypoints (.npz)")
    parser.add_argument(
        "--reference-pose", help="keypoints of the photo (.npz) instead of detecting them"
    )
    parser.add_argument("--model", help="model folder with teacher/ and vae/ (default: demo)")
    parser.add_argument(
        "--rule-motion", action="store_true", help="use the rule motion baseline"
    )
