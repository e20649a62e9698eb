"""``cospeech generate --audio A --image I -o out.mp4``: speech + one photo -> talking video."""

from __future__ import annotations

import argparse


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cospeech.pipeline.generate import GenerateOptions, check_output_path, generate

    if args.contact_sheet:
        check_output_path(Path(args.contact_sheet), ".png")

    options = GenerateOptions(
        steps=args.steps, guidance=args.guidance, seed=args.seed, fps=args.fps, size=args.size,
        learned_motion=not args.rule_motion,
    )  # fmt: skip
    result = generate(
        args.audio, args.image, args.output, options, reference_pose=args.reference_pose,
        save_pose=args.save_pose, model=args.model,
    )  # fmt: skip
    print(result.summary())
    if args.contact_sheet:
        _write_contact_sheet(args.audio, result, args.contact_sheet)
    return 0


def _write_contact_sheet(audio_path: str, result, path: str) -> None:
    import numpy as np
    from PIL import Image

    from cospeech.atomic import atomic_path
    from cospeech.audio.load import SAMPLE_RATE, load_audio
    from cospeech.eval.contact_sheet import contact_sheet
    from cospeech.media.video import iter_frames

    frames = np.stack(list(iter_frames(result.path)))
    sheet = contact_sheet(frames, result.keypoints, load_audio(audio_path), SAMPLE_RATE, result.fps)
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(sheet).save(tmp, format="PNG", optimize=True)
    print(f"wrote {path}")


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
    parser.add_argument("--contact-sheet", help="also write a PNG sheet of frames and mouth")
    parser.add_argument("--model", help="model folder with teacher/ and vae/ (default: demo)")
    parser.add_argument("--rule-motion", action="store_true", help="use the rule motion baseline")
