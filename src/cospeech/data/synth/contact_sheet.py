"""A contact sheet of a corpus, for checking it by eye: for a few clips, a row of video
frames labelled with the phone spoken at each, and under it the same frames with their
keypoints drawn over them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cospeech.audio.phonemes import VOWELS, frame_phones, segments_from_json
from cospeech.data.manifest import POSE_NAME, VIDEO_NAME, read_manifest
from cospeech.data.synth.corpus import PHONEMES_NAME
from cospeech.errors import InputError
from cospeech.jsonfile import read_json
from cospeech.media.image import image_grid, write_image
from cospeech.pose.sequence import PoseSequence

SHEET_CLIPS = 3
SHEET_FRAMES = 6
OVERLAY_ALPHA = 0.5  # weight of the video frame under the pose drawing
LABEL_SCALE = 0.45
PALETTE_COLOURS = 256  # the PNG is stored with a palette to stay small


def _pick_frames(phones: list[str], count: int) -> list[int]:
    """Evenly spread frames, alternating vowel and non-vowel frames where possible."""
    vowels = [i for i, p in enumerate(phones) if p in VOWELS]
    others = [i for i, p in enumerate(phones) if p not in VOWELS]
    picks = []
    for k in range(count):
        pool = vowels if (k % 2 == 0 and vowels) or not others else others
        picks.append(pool[int((k // 2 + 0.5) * len(pool) / ((count + 1) // 2)) % len(pool)])
    return sorted(set(picks))


def contact_sheet(
    root: str | Path, clips: int = SHEET_CLIPS, frames: int = SHEET_FRAMES
) -> np.ndarray:
    """An RGB grid ``[2 * clips * H, frames * W, 3]`` uint8: per clip (distinct identities
    first) a row of frames labelled with their phone, then the same frames with keypoints."""
    import cv2

    from cospeech.media.video import iter_frames
    from cospeech.pose.draw import draw_pose

    root = Path(root)
    entries = read_manifest(root)
    by_identity = {}
    for entry in entries:
        by_identity.setdefault(entry.identity, entry)
    first = list(by_identity.values())  # one clip per speaker, then the others: each once
    chosen = (first + [entry for entry in entries if entry not in first])[:clips]
    tiles: list[np.ndarray | None] = []
    for entry in chosen:
        folder = root / entry.path
        pose = PoseSequence.load(folder / POSE_NAME)
        phones = frame_phones(
            segments_from_json(read_json(folder / PHONEMES_NAME)), pose.fps, len(pose)
        )
        picks = _pick_frames(phones, frames)
        video = list(iter_frames(folder / VIDEO_NAME))
        if len(video) != len(pose):
            raise InputError(f"{folder}: {len(video)} video frames but {len(pose)} poses")
        plain, overlaid = [], []
        for i in picks:
            frame = video[i].copy()
            drawn = draw_pose(pose.keypoints[i], pose.width, pose.height)
            mixed = cv2.addWeighted(frame, OVERLAY_ALPHA, drawn, 1 - OVERLAY_ALPHA, 0)
            overlaid.append(np.where(drawn.any(axis=-1, keepdims=True), drawn, mixed))
            cv2.putText(frame, f"{phones[i]} f{i}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX,
                        LABEL_SCALE, (255, 255, 255), 1, cv2.LINE_AA)  # fmt: skip
            plain.append(frame)
        for row in (plain, overlaid):
            tiles += row + [None] * (frames - len(row))
    return image_grid(tiles, frames)


def write_contact_sheet(root: str | Path, path: str | Path) -> None:
    """Write :func:`contact_sheet` of the corpus at ``root`` as a PNG (atomically)."""
    write_image(contact_sheet(root), path, colours=PALETTE_COLOURS)
