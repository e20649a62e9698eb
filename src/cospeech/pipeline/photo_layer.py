"""The photo layer: the reference photo warped to every frame's pose, over the model's frames.

The demo VAE was trained on the synthetic corpus: a real photo passed through it comes back
at about 18 dB, an unrecognisable blur, so no frame the model decodes can carry a real
person's face. The pixels that warping *can* show therefore come from the photo itself:
each output frame is the photo framed at the output size (:func:`.reference.frame_reference`
at ``output_size``), warped to the frame's keypoints by the per-region rigid MLS of
:func:`cospeech.pose.warp.warp_references` (face, arms, hands and torso each follow the
generated pose), and the model's frame, upsampled, shows through only where the warp is not
valid: where the photo has nothing to show (background uncovered by a moving hand or head,
the chest under a hand that rested on it in the photo and moved away, what lies outside the
photo, and, for a model that sees the warped photo, the inside of a
mouth opened wider than in the photo: :func:`photo_layer_for`). The mask's edge is softened
over ``feather`` of the frame side, the not-valid area grown by as much, so a painted gap is
painted whole.

The output side is free (``output_size``, default :data:`PHOTO_SCALE` x the model's side):
the photo is sharp at any size, the model's painting is upsampled from its native side.
docs/real-photo.md says what this does and does not do.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import cv2
import numpy as np
from threadpoolctl import ThreadpoolController

from cospeech.errors import InputError
from cospeech.pipeline.bundle import ModelBundle
from cospeech.pipeline.reference import Reference
from cospeech.pose.warp import WarpConfig, WarpedReference, warp_references

PHOTO_SCALE = 2
"""Default output side over the model's side when the photo layer is on."""
MAX_OUTPUT_SIZE = 1024
"""Largest output side (pixels): on one core the layer takes ~7 ms per 256x256 frame and
~21 ms per 512x512 one, growing with the area (``cospeech bench photo``)."""
FEATHER = 0.005
"""Soft edge of the painted areas, as a fraction of the output side (1.3 px at 256: a
mouth opening a few pixels tall stays that size)."""


@dataclass(frozen=True)
class PhotoLayer:
    """``reference``: the photo framed at the output side (image ``[S, S, 3]`` uint8 and its
    keypoints ``[133, 3]`` in output pixels); ``model_size``: the side of the model's frames
    and of the keypoints passed to :meth:`compose`."""

    reference: Reference
    model_size: int
    feather: float = FEATHER
    warp: WarpConfig = field(default_factory=WarpConfig)

    def __post_init__(self) -> None:
        if self.size < self.model_size:
            raise InputError(
                f"--output-size {self.size} is smaller than the model's frames "
                f"({self.model_size}x{self.model_size})"
            )

    @property
    def size(self) -> int:
        """The output side in pixels."""
        return self.reference.size

    def compose(self, model_frame: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        """The output frame ``[S, S, 3]`` uint8 for the model's frame ``[s, s, 3]`` uint8 and
        that frame's keypoints ``[133, 3]`` (model pixels)."""
        return self.compose_frames(model_frame[None], np.asarray(keypoints)[None])[0]

    def compose_frames(self, model_frames: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        """:meth:`compose` for frames ``[n, s, s, 3]`` and their keypoints ``[n, 133, 3]``
        -> ``[n, S, S, 3]``, the warps' regions rasterised together. The warp's small matrix
        products run on one BLAS thread (:func:`_blas`)."""
        targets = np.array(keypoints, dtype=np.float64)
        targets[..., :2] *= self.size / self.model_size
        with _blas().limit(limits=1, user_api="blas"):
            warps = warp_references(self.reference.image, self.reference.keypoints, targets,
                                    config=self.warp)  # fmt: skip
            return np.stack([self._blend(f, w) for f, w in zip(model_frames, warps, strict=True)])

    def _blend(self, model_frame: np.ndarray, warped: WarpedReference) -> np.ndarray:
        """The warped photo where it is valid over the model's frame, upsampled."""
        painted = model_frame
        if model_frame.shape[0] != self.size:
            painted = cv2.resize(model_frame, (self.size, self.size),
                                 interpolation=cv2.INTER_CUBIC)  # fmt: skip
        weight = self.photo_weight(warped.valid)
        return cv2.blendLinear(warped.image, painted, weight, 1.0 - weight)

    def photo_weight(self, valid: np.ndarray) -> np.ndarray:
        """float32 ``[S, S]`` in [0, 1]: the photo's share of each pixel for the warp's
        validity ``valid`` bool ``[S, S]``: 0 on the not-valid area grown by the feather
        radius, rising to 1 over another feather radius."""
        radius = self.feather * self.size
        mask = valid.astype(np.float32)
        if radius < 0.5 or mask.all():
            return mask
        side = 2 * round(radius) + 1
        grown = cv2.erode(mask, np.ones((side, side), np.uint8), borderType=cv2.BORDER_REPLICATE)
        return cv2.GaussianBlur(grown, (0, 0), radius / 2, borderType=cv2.BORDER_REPLICATE)


@functools.cache
def _blas() -> ThreadpoolController:
    """The thread pools of the BLAS libraries loaded (numpy's OpenBLAS), found once.

    Between the model's chunks the warp makes thousands of tiny products; with OpenBLAS'
    default of a thread per core, its threads then spin-wait for more work and take the
    cores from the model's next chunk: on 2 threads the student's sampling of the example
    took 10.7 s instead of 7.0 s (1 BLAS thread: 6.8 s; docs/real-photo.md)."""
    return ThreadpoolController()


def photo_layer_for(bundle: ModelBundle, reference: Reference, model_size: int) -> PhotoLayer:
    """The photo layer for the model of ``bundle``: a warp-conditioned model (it sees the
    warped photo and was trained to paint what the warp cannot know) also paints the inside
    of a mouth opened wider than in the photo; for any other model, which would paint it
    blind, the stretched lips of the photo stand there (``WarpConfig.new_mouth``)."""
    warp = WarpConfig(new_mouth=bool(bundle.model.config.warp_dim))
    return PhotoLayer(reference, model_size, warp=warp)
