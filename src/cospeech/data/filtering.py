"""Which frames of a real video are good enough to train on (the paper's filter).

A frame is kept when the face keypoints' mean confidence is above ``face_confidence``
(0.9), the upper body's mean confidence is above ``upper_body_confidence`` (0.8) and at
least ``upper_body_visibility`` (90 %) of the upper-body points are visible (confidence
above ``visible_confidence`` and inside the frame). Kept frames are then cut into clips:
runs of consecutive kept frames at least ``min_frames`` long, split into pieces of at most
``max_frames``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cospeech.errors import InputError
from cospeech.pose import schema

# Upper body for the filter: head (nose, eyes, ears), shoulders, elbows and wrists.
UPPER_BODY_POINTS = tuple(range(schema.NOSE, schema.RIGHT_WRIST + 1))


@dataclass(frozen=True)
class FilterConfig:
    """Thresholds of the frame filter; ``use_upper_body=False`` checks the face only."""

    face_confidence: float = 0.9
    upper_body_confidence: float = 0.8
    upper_body_visibility: float = 0.9
    visible_confidence: float = 0.5
    use_upper_body: bool = True

    def __post_init__(self) -> None:
        for name in ("face_confidence", "upper_body_confidence", "upper_body_visibility",
                     "visible_confidence"):  # fmt: skip
            value = getattr(self, name)
            if not 0 <= value <= 1:
                flag = "--" + name.replace("_", "-")
                raise InputError(f"frame filter: {flag} must be in [0, 1], got {value}")


FILTER_PRESETS: dict[str, FilterConfig] = {
    # The paper's co-speech filter: face and upper body in view.
    "paper": FilterConfig(),
    # Talking-head videos (shoulders or hands may be out of view): face criteria only.
    "face-only": FilterConfig(use_upper_body=False),
}


def filter_preset(name: str) -> FilterConfig:
    if name not in FILTER_PRESETS:
        raise InputError(f"unknown filter preset {name!r}; choose one of {sorted(FILTER_PRESETS)}")
    return FILTER_PRESETS[name]


def keep_frames(keypoints: np.ndarray, width: int, height: int, config: FilterConfig) -> np.ndarray:
    """``[T, 133, 3]`` keypoints -> bool ``[T]``: frames that pass the filter."""
    conf = keypoints[..., 2]
    keep = conf[:, list(schema.FACE)].mean(axis=1) > config.face_confidence
    if config.use_upper_body:
        upper = keypoints[:, list(UPPER_BODY_POINTS)]
        x, y, c = upper[..., 0], upper[..., 1], upper[..., 2]
        inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
        visible = ((c > config.visible_confidence) & inside).mean(axis=1)
        keep &= c.mean(axis=1) > config.upper_body_confidence
        keep &= visible >= config.upper_body_visibility
    return keep


def kept_runs(keep: np.ndarray, min_frames: int, max_frames: int) -> list[tuple[int, int]]:
    """Bool ``[T]`` -> clips ``[(start, stop), ...]``: each run of kept frames is cut into
    consecutive pieces of ``max_frames``; a piece (or a whole run) shorter than
    ``min_frames`` is dropped."""
    if min_frames < 1 or max_frames < min_frames:
        raise InputError(f"clip length: need 1 <= min ({min_frames}) <= max ({max_frames})")
    padded = np.concatenate([[False], np.asarray(keep, bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    clips = []
    for start, stop in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True):
        for piece in range(start, stop, max_frames):
            end = min(piece + max_frames, stop)
            if end - piece >= min_frames:
                clips.append((piece, end))
    return clips
