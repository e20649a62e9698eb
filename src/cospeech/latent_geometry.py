"""The video VAE's latent geometry, defined once for every package.

Both VAEs (Wan2.1's and :class:`cospeech.models.vae.TinyVideoVAE`) are causal with a time
stride of :data:`TIME_STRIDE` and a space stride of :data:`SPACE_STRIDE`: latent frame 0
is video frame 0 alone, latent frame ``i >= 1`` covers video frames
``4i-3 .. 4i``, and a latent pixel is ``8 x 8`` video pixels. A video the VAE encodes
has ``F = 1 + 4k`` frames (:func:`latent_frames`); a pose sequence of any length maps onto
latent frames with a final partial group (``partial=True``, :func:`latent_frame_ranges`).
"""

from __future__ import annotations

from cospeech.errors import InputError

TIME_STRIDE = 4
SPACE_STRIDE = 8


def latent_frames(num_frames: int, time_stride: int = TIME_STRIDE, *, partial: bool = False) -> int:
    """Latent frames of ``num_frames`` video frames: ``1 + (F - 1) / stride``.

    Without ``partial`` the count must be a VAE input, ``F = 1 + stride * k`` (an
    :class:`InputError` naming the nearest valid count otherwise); with ``partial`` any
    ``F >= 1`` maps to ``1 + ceil((F - 1) / stride)``, the last latent frame covering the
    frames there are.
    """
    if num_frames < 1 or time_stride < 1:
        raise InputError(
            f"need at least one frame and a positive time stride, got {num_frames}, {time_stride}"
        )
    if partial:
        return 1 + -(-(num_frames - 1) // time_stride)
    if (num_frames - 1) % time_stride:
        raise InputError(
            f"a video for the VAE needs 1 + {time_stride}k frames, got {num_frames} "
            f"(nearest valid: {num_frames - (num_frames - 1) % time_stride})"
        )
    return 1 + (num_frames - 1) // time_stride


def video_frames(num_latent_frames: int, time_stride: int = TIME_STRIDE) -> int:
    """Video frames ``1 + stride * (T - 1)`` decoded from ``T`` latent frames."""
    if num_latent_frames < 1:
        raise InputError(f"need at least one latent frame, got {num_latent_frames}")
    return 1 + time_stride * (num_latent_frames - 1)


def latent_frame_ranges(num_frames: int, time_stride: int = TIME_STRIDE) -> list[tuple[int, int]]:
    """The video frames ``[start, stop)`` each latent frame covers: ``(0, 1)``, then
    ``(s*(i-1)+1, s*i+1)`` for latent ``i >= 1`` (clipped to ``num_frames``)."""
    n = latent_frames(num_frames, time_stride, partial=True)
    return [(0, 1)] + [
        (time_stride * (i - 1) + 1, min(time_stride * i + 1, num_frames)) for i in range(1, n)
    ]
