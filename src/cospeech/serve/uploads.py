"""Checking an upload by decoding it, never by its name or declared content type.

Each file is stored under the job's private folder with a fixed name (``image``,
``audio``); the client's file name is never part of a path. Messages sent back name the
form field, never a server path.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import BinaryIO

from cospeech.audio.load import AudioConfig, load_audio
from cospeech.errors import InputError

COPY_CHUNK = 1024 * 1024
MIN_AUDIO_SECONDS = 0.1  # shorter speech makes no video worth a job


class UploadTooLarge(InputError):
    """An upload over one of the size caps (HTTP 413)."""


def store_upload(source: BinaryIO, target: Path, field: str, max_bytes: int) -> int:
    """Copy ``source`` to ``target`` in chunks, stopping with :class:`UploadTooLarge` as
    soon as it passes ``max_bytes``; InputError when it is empty. Returns its size."""
    written = 0
    with open(target, "wb") as out:
        while chunk := source.read(COPY_CHUNK):
            written += len(chunk)
            if written > max_bytes:
                raise UploadTooLarge(f"{field}: larger than the limit of {_mb(max_bytes)}")
            out.write(chunk)
    if written == 0:
        raise InputError(f"{field}: the file is empty (0 bytes)")
    return written


def check_image(path: Path, max_pixels: int) -> tuple[int, int]:
    """``(width, height)`` of the photo at ``path`` after decoding it fully with Pillow.

    The pixel count is read from the header and checked before any pixel is decoded, so a
    small file that claims a huge picture costs nothing. :class:`UploadTooLarge` over
    ``max_pixels``; InputError for anything Pillow cannot decode."""
    from PIL import Image, UnidentifiedImageError

    from cospeech.pose.extract import read_image

    try:
        with Image.open(path) as header:
            width, height = header.size
    except UnidentifiedImageError:
        raise InputError("image: not an image (or a format Pillow cannot read)") from None
    except Image.DecompressionBombError:
        raise UploadTooLarge(f"image: over the limit of {max_pixels / 1e6:g} megapixels") from None
    except OSError as exc:
        raise InputError(f"image: cannot be read ({scrub(str(exc), path)})") from None
    if width * height > max_pixels:
        raise UploadTooLarge(
            f"image: {width}x{height} is {width * height / 1e6:.1f} megapixels, over the "
            f"limit of {max_pixels / 1e6:g}"
        )
    try:
        pixels = read_image(path)
    except InputError as exc:
        raise InputError(scrub(str(exc), path)) from None
    return int(pixels.shape[1]), int(pixels.shape[0])


def check_audio(path: Path, max_seconds: float) -> float:
    """Seconds of speech at ``path`` after decoding it all (libsndfile or PyAV: wav, flac,
    ogg, mp3, m4a, webm/opus from a browser's MediaRecorder, ...). :class:`UploadTooLarge`
    over ``max_seconds``; InputError for anything that is not decodable audio or is
    shorter than :data:`MIN_AUDIO_SECONDS`."""
    config = AudioConfig(max_duration_s=max_seconds)
    try:
        samples = load_audio(path, config)
    except InputError as exc:
        message = scrub(str(exc), path)
        raise (UploadTooLarge if "longer than the limit" in message else InputError)(
            message
        ) from None
    seconds = samples.size / config.sample_rate
    if seconds < MIN_AUDIO_SECONDS:
        raise InputError(f"audio: {seconds:.3f} s is too short (at least {MIN_AUDIO_SECONDS} s)")
    return seconds


def scrub(message: str, *paths: Path) -> str:
    """``message`` on one line with the server ``paths`` taken out (``"image /tmp/../image:
    no person found"`` -> ``"image: no person found"``)."""
    for path in paths:
        message = message.replace(f" {path}", "").replace(str(path), "upload")
    return " ".join(message.split())


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):g} MiB"


def remove_folder(folder: Path) -> None:
    """Delete a job folder and everything in it (no error when it is already gone)."""
    shutil.rmtree(folder, ignore_errors=True)
