"""``cospeech eval lpips|arcface|sync``: the published network metrics (LPIPS, ArcFace
identity, SyncNet) with the public weight files, which users download themselves."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from cospeech.errors import InputError, check_range


def _finish(report: dict[str, Any], per_item: dict[str, Any], json_path: str | None) -> int:
    """Print ``report`` as a table; with ``--json`` write it plus ``per_item`` (atomically)."""
    from cospeech.eval.video.report import format_table, json_ready
    from cospeech.jsonfile import write_json

    print(format_table(report))
    if json_path:
        write_json(json_path, json_ready({**report, **per_item}))
    return 0


def _check_json(path: str | None) -> None:
    """A ``--json`` that cannot be written fails before any work."""
    from cospeech.atomic import check_output

    if path:
        check_output(path, name="--json")


def _face_analyzer(upsample: int):
    from cospeech.eval.video.faces import FaceAnalyzer, FaceConfig

    return FaceAnalyzer(FaceConfig(upsample=upsample), descriptors=False)


def _finite_stats(values: np.ndarray) -> tuple[int, float, float]:
    """(count, mean, min) of the finite values (NaN, NaN when there are none)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0, float("nan"), float("nan")
    return int(finite.size), float(finite.mean()), float(finite.min())


def _run_lpips(args: argparse.Namespace) -> int:
    from cospeech.eval.networks import lpips
    from cospeech.eval.networks.weights import weight_file

    _check_json(args.json)
    spec = lpips.BACKBONES[args.net]
    frames = lpips.check_pair(args.a, args.b)
    lin = weight_file(
        args.weights, spec.lin_file, f"LPIPS ({args.net})",
        lpips.LIN_SOURCE.format(file=spec.lin_file),
    )  # fmt: skip
    if args.backbone is not None and not Path(args.backbone).is_file():
        raise InputError(f"--backbone {args.backbone}: no such file")
    backbone = weight_file(
        args.backbone, spec.backbone_file, f"LPIPS's {args.net} backbone",
        lpips.BACKBONE_SOURCE.format(file=spec.backbone_file),
    )  # fmt: skip
    model = lpips.load_lpips(args.net, lin, backbone)
    values = lpips.lpips_of_media(model, args.a, args.b, progress=True)
    report = {
        "a": args.a,
        "b": args.b,
        "net": args.net,
        "frames": frames,
        "lpips": float(values.mean()),
        "lpips_max": float(values.max()),
    }
    return _finish(report, {"lpips_per_frame": values.tolist()}, args.json)


def _run_arcface(args: argparse.Namespace) -> int:
    from cospeech.eval.networks import arcface
    from cospeech.eval.networks.weights import weight_file
    from cospeech.media.video import probe

    _check_json(args.json)
    probe(args.video)  # a bad video fails before the weights are read
    analyzer = _face_analyzer(args.upsample)
    path = weight_file(args.weights, arcface.WEIGHTS_FILE, "ArcFace", arcface.WEIGHTS_SOURCE)
    model = arcface.load_arcface(path)
    reference = arcface.reference_embedding(model, analyzer, args.reference)
    similarity = arcface.video_similarities(model, analyzer, args.video, reference, True)
    faces, mean, low = _finite_stats(similarity)
    report = {
        "video": args.video,
        "reference": args.reference,
        "frames": int(similarity.size),
        "face_frames": faces,
        "face_rate": faces / similarity.size,
        "arcface_similarity": mean,
        "arcface_similarity_min": low,
    }
    return _finish(report, {"arcface_per_frame": similarity.tolist()}, args.json)


def _sync_audio(video: str, audio: str | None) -> np.ndarray:
    """Mono 16 kHz speech at its recorded level (no loudness normalisation: SyncNet reads
    the PCM as it is) from ``--audio`` or the video's own audio stream."""
    from cospeech.audio.load import AudioConfig, load_audio
    from cospeech.media.video import read_audio_track

    if audio is not None:
        return load_audio(audio, AudioConfig(target_dbfs=0.0, max_gain_db=0.0))
    speech = read_audio_track(video)
    if speech is None:
        raise InputError(f"video {video}: no audio stream; give --audio WAV")
    if speech.size == 0:
        raise InputError(f"video {video}: its audio stream holds no samples")
    return speech


def _run_sync(args: argparse.Namespace) -> int:
    from cospeech.eval.networks import syncnet
    from cospeech.eval.networks.weights import weight_file
    from cospeech.media.video import probe

    _check_json(args.json)
    check_range("--max-offset", args.max_offset, 0, 100)
    probe(args.video)  # a bad video fails before the audio and the weights are read
    speech = _sync_audio(args.video, args.audio)
    analyzer = _face_analyzer(args.upsample)
    path = weight_file(args.weights, syncnet.WEIGHTS_FILE, "SyncNet", syncnet.WEIGHTS_SOURCE)
    model = syncnet.load_syncnet(path)
    crops = syncnet.face_crops(args.video, analyzer, progress=True)
    lips, sounds = syncnet.embeddings(model, crops, speech, progress=True)
    result = syncnet.offset_search(lips, sounds, args.max_offset)
    report = {
        "video": args.video,
        "audio": args.audio or "video",
        "frames_25fps": len(crops),
        "windows": result.windows,
        "sync_d": result.distance,
        "sync_c": result.confidence,
        "av_offset_frames": result.offset,
    }
    offsets = range(args.max_offset, -args.max_offset - 1, -1)  # AV offset K - j of column j
    distances = dict(zip(offsets, result.mean_distances.tolist(), strict=True))
    return _finish(report, {"mean_distances": distances}, args.json)


def _upsample_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--upsample", type=int, default=1,
        help="dlib face detector upsampling 0-3 (1: faces from about 40 px; default 1)",
    )  # fmt: skip


def register(tree) -> None:
    p = tree.subcommand(
        "eval", "lpips", "LPIPS perceptual distance of two images or two videos, frame by frame",
        _run_lpips,
    )  # fmt: skip
    p.add_argument("a", help="image or video")
    p.add_argument("b", help="image or video of the same size (and frame count)")
    p.add_argument("--net", choices=("alex", "vgg"), default="alex", help="backbone")
    p.add_argument(
        "--weights", help="lpips lin weights (alex.pth / vgg.pth; default $COSPEECH_WEIGHTS/...)"
    )
    p.add_argument(
        "--backbone",
        help="torchvision backbone weights (alexnet-owt-7be5be79.pth / vgg16-397923af.pth; "
        "default $COSPEECH_WEIGHTS/...)",
    )
    p.add_argument("--json", help="also write the result and the per-frame values as JSON")

    p = tree.subcommand(
        "eval", "arcface", "ArcFace cosine identity similarity of a video's faces to a photo",
        _run_arcface,
    )  # fmt: skip
    p.add_argument("video", help="the video to measure")
    p.add_argument("--reference", required=True, help="photo of the person")
    p.add_argument(
        "--weights", help="insightface arcface_torch backbone.pth (default $COSPEECH_WEIGHTS/...)"
    )
    _upsample_option(p)
    p.add_argument("--json", help="also write the result and the per-frame values as JSON")

    p = tree.subcommand(
        "eval", "sync", "SyncNet lip sync: Sync-D, Sync-C and the audio-video offset",
        _run_sync,
    )  # fmt: skip
    p.add_argument("video", help="the video to measure")
    p.add_argument("--audio", help="speech to measure against (default: the video's own audio)")
    p.add_argument(
        "--weights", help="syncnet_python's syncnet_v2.model (default $COSPEECH_WEIGHTS/...)"
    )
    p.add_argument(
        "--max-offset", type=int, default=15, help="offsets searched, +-frames at 25 fps"
    )
    _upsample_option(p)
    p.add_argument("--json", help="also write the result and the per-offset distances as JSON")
