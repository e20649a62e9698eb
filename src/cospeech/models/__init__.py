"""cospeech.models: the pose-conditioned video DiT (Wan2.1-compatible) and its checkpoints.

    model = VideoDiT(load_video_dit_config("demo"))
    model = VideoDiT.from_pretrained("Wan2.1-I2V-14B-480P", dtype=torch.bfloat16, device="cuda")
    flow = model(x, t, context, clip_context, pose=pose, ref_pose=ref_pose)

See docs/models.md. VAEs live in :mod:`cospeech.models.vae`.
"""

from cospeech.models.checkpoint import DIFFUSERS_TO_WAN, diffusers_to_wan_key
from cospeech.models.config import VIDEO_DIT_PRESETS, VideoDiTConfig, load_video_dit_config
from cospeech.models.dit import VideoDiT
from cospeech.models.kv_cache import KVCache

__all__ = [
    "DIFFUSERS_TO_WAN",
    "VIDEO_DIT_PRESETS",
    "KVCache",
    "VideoDiT",
    "VideoDiTConfig",
    "diffusers_to_wan_key",
    "load_video_dit_config",
]
