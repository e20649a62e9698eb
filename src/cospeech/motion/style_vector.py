"""The speaker-style vector: how a person gestures, measured from an example of their motion.

Eight numbers, from offsets in shoulder widths (see :mod:`cospeech.motion.normalize`):
the mean and the standard deviation over time of the left and right wrist offsets in x and
y. They say where the hands rest and how widely they move. The vector is optional at
generation time (the model then uses a learned "no style" embedding).
"""

from __future__ import annotations

import numpy as np

from cospeech.errors import InputError
from cospeech.pose import schema

STYLE_DIM = 8
STYLE_POINTS = (schema.LEFT_WRIST, schema.RIGHT_WRIST)


def style_from_offsets(offsets: np.ndarray) -> np.ndarray:
    """Offsets ``[T, 133, 2]`` -> style ``[8]`` float32 (wrist means, then stds)."""
    if offsets.ndim != 3 or offsets.shape[0] < 1:
        raise InputError(f"style: expected offsets [T, 133, 2], got {list(offsets.shape)}")
    wrists = offsets[:, list(STYLE_POINTS)]
    means, stds = wrists.mean(axis=0).reshape(-1), wrists.std(axis=0).reshape(-1)
    return np.concatenate([means, stds]).astype(np.float32)
