"""``VideoDiT``: the pose-conditioned video diffusion transformer (Wan2.1-compatible).

Module and parameter names follow the original Wan2.1 release, so an original checkpoint
loads without renaming (diffusers checkpoints are renamed by
:mod:`cospeech.models.checkpoint`). The pose encoders (``pose_encoder.*``,
``ref_pose_encoder.*``) are ours.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from cospeech.errors import InputError
from cospeech.models.attention import (
    AttentionLayout,
    CrossAttention,
    SelfAttention,
    attention_dtype,
)
from cospeech.models.checkpoint import PretrainedMixin
from cospeech.models.config import VideoDiTConfig
from cospeech.models.kv_cache import KVCache
from cospeech.models.layers import (
    FP32LayerNorm,
    gated_residual,
    modulate,
    timestep_sinusoid,
    to_weight_dtype,
)
from cospeech.models.pose_encoder import PoseVideoEncoder, RefPoseEncoder, pad_to_channels
from cospeech.models.rope import rope_freqs

if TYPE_CHECKING:
    from cospeech.attention import SparsePlan

ATTENTION_MODES = ("full", "causal")
POSE_ENCODER_PREFIXES = ("pose_encoder.", "ref_pose_encoder.")


class DiTBlock(nn.Module):
    """Self-attention, cross-attention, FFN; time modulation table ``[1, 6, dim]``."""

    def __init__(self, config: VideoDiTConfig, index: int) -> None:
        super().__init__()
        dim = config.dim
        self.index = index
        self.norm1 = FP32LayerNorm(dim, config.eps, elementwise_affine=False)
        self.self_attn = SelfAttention(dim, config.num_heads, config.qk_norm, config.eps)
        self.cross_attn: CrossAttention | None = None
        if config.has_cross_attention:
            self.norm3 = (
                FP32LayerNorm(dim, config.eps, elementwise_affine=True)
                if config.cross_attn_norm
                else nn.Identity()
            )
            self.cross_attn = CrossAttention(
                dim,
                config.num_heads,
                config.qk_norm,
                config.eps,
                text=config.has_text,
                image=config.has_image_tokens,
            )
        self.norm2 = FP32LayerNorm(dim, config.eps, elementwise_affine=False)
        self.ffn = nn.Sequential(
            nn.Linear(dim, config.ffn_dim),
            nn.GELU(approximate="tanh"),
            nn.Linear(config.ffn_dim, dim),
        )
        self.modulation = nn.Parameter(torch.empty(1, 6, dim))

    def forward(
        self,
        x: torch.Tensor,
        time: torch.Tensor,
        layout: AttentionLayout,
        text: torch.Tensor | None,
        image: torch.Tensor | None,
    ) -> torch.Tensor:
        """``x`` ``[B, L, dim]`` float32 (the residual stream), ``time`` ``[B, 6, dim]``
        float32 -> ``[B, L, dim]`` float32."""
        shift_a, scale_a, gate_a, shift_f, scale_f, gate_f = (self.modulation.float() + time).chunk(
            6, dim=1
        )
        attended = self.self_attn(modulate(self.norm1(x), shift_a, scale_a), layout, self.index)
        x = gated_residual(x, attended, gate_a)
        if self.cross_attn is not None:
            x = x + self.cross_attn(self.norm3(x), text, image, layout.dtype)
        ffn_in = to_weight_dtype(modulate(self.norm2(x), shift_f, scale_f), self.ffn[0])
        x = gated_residual(x, self.ffn(ffn_in), gate_f)
        return x


class Head(nn.Module):
    """Final norm, its own ``[1, 2, dim]`` modulation, and the linear to patch pixels."""

    def __init__(self, config: VideoDiTConfig) -> None:
        super().__init__()
        self.norm = FP32LayerNorm(config.dim, config.eps, elementwise_affine=False)
        self.head = nn.Linear(config.dim, config.out_dim * math.prod(config.patch_size))
        self.modulation = nn.Parameter(torch.empty(1, 2, config.dim))

    def forward(self, x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, L, dim]``, ``time`` ``[B, dim]`` (float32) -> ``[B, L, C * prod(patch)]``
        in the weights' dtype."""
        shift, scale = (self.modulation.float() + time[:, None]).chunk(2, dim=1)
        return self.head(to_weight_dtype(modulate(self.norm(x), shift, scale), self.head))


class ImageProjection(nn.Module):
    """CLIP image tokens ``[B, 257, image_dim]`` -> ``[B, 257, dim]`` (LN, MLP, LN)."""

    def __init__(self, config: VideoDiTConfig) -> None:
        super().__init__()
        width = config.image_dim
        self.proj = nn.Sequential(
            FP32LayerNorm(width, config.image_norm_eps),
            nn.Linear(width, width),
            nn.GELU(),
            nn.Linear(width, config.dim),
            FP32LayerNorm(config.dim, config.image_norm_eps),
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.proj(tokens)


class VideoDiT(PretrainedMixin):
    """Pose-conditioned video DiT (Wan2.1 blocks). See docs/models.md.

    ``from_pretrained`` / ``save_pretrained`` come from
    :class:`~cospeech.models.checkpoint.PretrainedMixin` (Wan2.1 original or diffusers
    layout, or our own).
    """

    OPTIONAL_PREFIXES = POSE_ENCODER_PREFIXES

    def __init__(self, config: VideoDiTConfig) -> None:
        super().__init__()
        if config.has_pose_encoder and config.patch_size[0] != 1:
            raise InputError("the pose video encoder needs a temporal patch size of 1")
        self.config = config
        dim = config.dim
        self.patch_embedding = nn.Conv3d(
            config.in_dim, dim, kernel_size=config.patch_size, stride=config.patch_size
        )
        if config.has_text:
            self.text_embedding = nn.Sequential(
                nn.Linear(config.text_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim)
            )
        self.time_embedding = nn.Sequential(
            nn.Linear(config.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim)
        )
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.blocks = nn.ModuleList(DiTBlock(config, i) for i in range(config.num_layers))
        self.head = Head(config)
        if config.has_image_tokens:
            self.img_emb = ImageProjection(config)
        if config.has_pose_encoder:
            self.pose_encoder = PoseVideoEncoder(
                config.pose_in_channels, config.pose_channels, dim, config.vae_stride[0]
            )
        if config.has_ref_pose_encoder:
            self.ref_pose_encoder = RefPoseEncoder(
                config.pose_in_channels, config.ref_pose_channels, config.cond_dim
            )
        self.init_weights()

    # ------------------------------------------------------------------ construction
    def init_weights(self) -> None:
        """Wan's initialisation: Xavier linears, N(0, 0.02) embeddings, zero output head,
        modulation tables N(0, 1 / dim).

        The pose encoders keep their own init (zero output projections). Nothing is drawn
        on the meta device (loading builds the model there and assigns the weights):
        random draws on meta tensors run through PyTorch's reference ops, whose first use
        imports TorchDynamo, over a second of a fresh ``cospeech generate``.
        """
        if self.patch_embedding.weight.is_meta:
            return
        for table in [block.modulation for block in self.blocks] + [self.head.modulation]:
            nn.init.normal_(table, std=self.config.dim**-0.5)
        for name, module in self.named_modules():
            if name.startswith(("pose_encoder", "ref_pose_encoder")):
                continue
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.xavier_uniform_(self.patch_embedding.weight.flatten(1))
        embeddings = [self.time_embedding]
        if self.config.has_text:
            embeddings.append(self.text_embedding)
        for embedding in embeddings:
            for module in embedding:
                if isinstance(module, nn.Linear):
                    nn.init.normal_(module.weight, std=0.02)
        nn.init.zeros_(self.head.head.weight)

    def parameter_counts(self) -> dict[str, int]:
        """``{"wan": ..., "pose": ...}``: Wan2.1 architecture vs our pose encoders."""
        counts = {"wan": 0, "pose": 0}
        for name, param in self.named_parameters():
            counts["pose" if name.startswith(POSE_ENCODER_PREFIXES) else "wan"] += param.numel()
        return counts

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        context: torch.Tensor | None = None,
        clip_context: torch.Tensor | None = None,
        pose: torch.Tensor | None = None,
        ref_pose: torch.Tensor | None = None,
        *,
        attention: str = "full",
        chunk_frames: int = 3,
        plan: SparsePlan | Sequence[SparsePlan] | None = None,
        sparse_backend: str = "auto",
        kv_cache: KVCache | None = None,
        cache_update: bool = False,
        frame_offset: int = 0,
    ) -> torch.Tensor:
        """Flow prediction ``[B, out_dim, F, H, W]`` (float32) for latents ``x``.

        Args:
            x: ``[B, in_dim, F, H, W]`` latents; for I2V the noisy latent followed by the
                conditioning channels (mask + reference latent), then the ``warp_dim``
                warp channels (:mod:`cospeech.models.warp_condition`) if the model has them.
            t: ``[B]`` (or scalar) timesteps in [0, 1000].
            context: ``[B, L, text_dim]`` text tokens (models with text only; Wan pads
                umT5 tokens with zeros to 512).
            clip_context: ``[B, 257, image_dim]`` CLIP image tokens (I2V models only).
            pose: ``[B, 3, F_video, 8H, 8W]`` rendered pose maps; ``F_video = 1 + 4(F-1)``
                for a clip that starts at frame 0, ``4F`` for a later chunk.
            ref_pose: ``[B, 3, 8H, 8W]`` pose map of the reference image; added to the
                conditioning channels of latent frame 0 (only when the input holds it).
            attention: ``"full"`` or ``"causal"`` (block-causal, chunks of
                ``chunk_frames`` latent frames).
            plan: input-aware sparse plan over the input's tokens (replaces ``attention``):
                one for the whole batch, or a sequence of one per batch element (a
                training batch mixes speakers). With ``kv_cache``: a plan over the whole
                clip; the chunk attends what its exact mask allows among the cached
                frames and its own. A plan for another grid is an ``InputError``.
            sparse_backend: backend name passed to ``sparse_attention``.
            kv_cache: input is one chunk after the cache's frames; attends them too.
            cache_update: stage this chunk's keys/values and commit them at the end.
            frame_offset: absolute latent index of the first frame (RoPE), no cache.
        """
        cfg = self.config
        batch, frames, height, width = self._check_inputs(x, context, clip_context)
        if attention not in ATTENTION_MODES:
            raise InputError(f"attention must be one of {ATTENTION_MODES}, got {attention!r}")
        if plan is not None and attention != "full":
            raise InputError("a sparse plan replaces the attention mode: leave attention 'full'")
        if kv_cache is not None and (attention != "full" or frame_offset):
            raise InputError("with a KV cache the chunk attends the cache: no mode or offset")
        t = torch.as_tensor(t, dtype=torch.float32, device=x.device).reshape(-1)
        if t.numel() == 1:
            t = t.expand(batch)
        if t.shape[0] != batch:
            raise InputError(f"t: expected [B={batch}] timesteps, got {list(t.shape)}")
        dtype = self.patch_embedding.weight.dtype
        pt, ph, pw = cfg.patch_size
        grid = (frames // pt, height // ph, width // pw)
        start_frame = kv_cache.frames_seen if kv_cache is not None else frame_offset

        x = x.to(dtype)
        if ref_pose is not None and start_frame == 0:
            x = self._add_ref_pose(x, ref_pose.to(dtype))
        tokens = self.patch_embedding(x)
        if pose is not None:
            tokens = tokens + self._encode_pose(pose.to(dtype), tokens.shape)
        tokens = tokens.flatten(2).transpose(1, 2).float()  # the residual stream: float32

        time = self.time_embedding(timestep_sinusoid(t, cfg.freq_dim).to(dtype)).float()
        time6 = self.time_projection(time.to(dtype)).float().unflatten(1, (6, cfg.dim))
        text = self.text_embedding(context.to(dtype)) if context is not None else None
        image = self.img_emb(clip_context.to(dtype)) if clip_context is not None else None

        plans = _per_sample_plans(plan, batch)
        layout = self._layout(
            grid,
            attention,
            chunk_frames,
            plans,
            sparse_backend,
            kv_cache,
            frame_offset,
            cache_update,
            x.device,
        )
        for block in self.blocks:
            tokens = block(tokens, time6, layout, text, image)
        if kv_cache is not None and cache_update:
            kv_cache.commit(grid[1:])
        out = self.head(tokens, time)
        return self._unpatchify(out, grid).float()

    # ------------------------------------------------------------------ helpers
    def _check_inputs(
        self, x: torch.Tensor, context: torch.Tensor | None, clip_context: torch.Tensor | None
    ) -> tuple[int, int, int, int]:
        cfg = self.config
        if x.ndim != 5 or x.shape[1] != cfg.in_dim:
            raise InputError(f"x: expected [B, {cfg.in_dim}, F, H, W], got {list(x.shape)}")
        batch, _, frames, height, width = x.shape
        if frames % cfg.patch_size[0] or height % cfg.patch_size[1] or width % cfg.patch_size[2]:
            raise InputError(
                f"x: {frames}x{height}x{width} not divisible by patch {cfg.patch_size}"
            )
        for name, tensor, width_, present in (
            ("context", context, cfg.text_dim, cfg.has_text),
            ("clip_context", clip_context, cfg.image_dim, cfg.has_image_tokens),
        ):
            if present and tensor is None:
                raise InputError(f"{name} is required by this model")
            if not present and tensor is not None:
                raise InputError(f"{name} given, but this model has no such path")
            if tensor is not None and (
                tensor.ndim != 3 or tensor.shape[0] != batch or tensor.shape[2] != width_
            ):
                raise InputError(
                    f"{name}: expected [B={batch}, L, {width_}], got {list(tensor.shape)}"
                )
        return batch, frames, height, width

    def _add_ref_pose(self, x: torch.Tensor, ref_pose: torch.Tensor) -> torch.Tensor:
        """Add the encoded reference pose to the conditioning channels of latent frame 0
        (the ``cond_dim`` channels before the warp channels)."""
        if not self.config.has_ref_pose_encoder:
            raise InputError("ref_pose given, but this model has no reference pose encoder")
        encoded = self.ref_pose_encoder(ref_pose)
        expected = (x.shape[0], self.config.cond_dim, *x.shape[3:])
        if tuple(encoded.shape) != expected:
            raise InputError(
                f"ref_pose: {list(ref_pose.shape)} encodes to {list(encoded.shape)}, the latent "
                f"grid needs {list(expected)} (pixels = latent x {self.config.vae_stride[1]})"
            )
        lead = self.config.in_dim - self.config.warp_dim
        first = x[:, :lead, :1] + pad_to_channels(encoded, lead)[:, :, None]
        first = torch.cat([first, x[:, lead:, :1]], dim=1)
        return torch.cat([first, x[:, :, 1:]], dim=2)

    def _encode_pose(self, pose: torch.Tensor, token_shape: torch.Size) -> torch.Tensor:
        if not self.config.has_pose_encoder:
            raise InputError("pose given, but this model has no pose encoder")
        encoded = self.pose_encoder(pose)
        if encoded.shape != token_shape:
            raise InputError(
                f"pose: {list(pose.shape)} encodes to {list(encoded.shape)}, the token grid "
                f"needs {list(token_shape)} (pixels = tokens x {self.config.pose_spatial_factor}, "
                f"video frames = 1 + 4(F-1) from frame 0, else 4F)"
            )
        return encoded

    def _layout(
        self,
        grid: tuple[int, int, int],
        attention: str,
        chunk_frames: int,
        plans: tuple[SparsePlan, ...],
        sparse_backend: str,
        kv_cache: KVCache | None,
        frame_offset: int,
        cache_update: bool,
        device: torch.device,
    ) -> AttentionLayout:
        cfg = self.config
        frames, height, width = grid
        dtype = attention_dtype(self.patch_embedding.weight.dtype, device)
        rope = dict(
            axis_dims=cfg.rope_axis_dims, theta=cfg.rope_theta, max_positions=cfg.rope_max_positions
        )
        if kv_cache is not None:
            if kv_cache.num_layers != cfg.num_layers:
                raise InputError(
                    f"KVCache has {kv_cache.num_layers} layers, model {cfg.num_layers}"
                )
            chunk_masks = _chunk_masks(plans, kv_cache, grid, device)
            kv_cache.begin(frames, (height, width), cache_update)
            cached = kv_cache.cached_frames
            freqs = rope_freqs(torch.arange(cached + frames, device=device), height, width, **rope)
            split = cached * height * width
            return AttentionLayout(
                "cached",
                freqs[split:],
                freqs[:split],
                cache=kv_cache,
                chunk_masks=chunk_masks,
                dtype=dtype,
            )
        positions = torch.arange(frames, device=device) + frame_offset
        freqs = rope_freqs(positions, height, width, **rope)
        if plans:
            for plan in plans:
                plan.check_grid(frames, height, width, "VideoDiT")
            return AttentionLayout(
                "sparse", freqs, freqs, plans=plans, sparse_backend=sparse_backend,
                dtype=dtype,
            )  # fmt: skip
        if attention == "causal":
            if chunk_frames <= 0:
                raise InputError(f"chunk_frames must be positive, got {chunk_frames}")
            return AttentionLayout(
                "causal", freqs, freqs, chunk_tokens=chunk_frames * height * width,
                dtype=dtype,
            )  # fmt: skip
        return AttentionLayout("full", freqs, freqs, dtype=dtype)

    def _unpatchify(self, out: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """``[B, f*h*w, pt*ph*pw*C]`` -> ``[B, C, f*pt, h*ph, w*pw]``."""
        frames, height, width = grid
        pt, ph, pw = self.config.patch_size
        out = out.reshape(out.shape[0], frames, height, width, pt, ph, pw, self.config.out_dim)
        out = out.permute(0, 7, 1, 4, 2, 5, 3, 6)
        return out.reshape(out.shape[0], self.config.out_dim, frames * pt, height * ph, width * pw)


def _per_sample_plans(
    plan: SparsePlan | Sequence[SparsePlan] | None, batch: int
) -> tuple[SparsePlan, ...]:
    """``()`` without a plan, else one plan per batch element (a single plan is shared)."""
    from cospeech.attention import SparsePlan

    if plan is None:
        return ()
    if isinstance(plan, SparsePlan):
        return (plan,) * batch
    plans = tuple(plan)
    if len(plans) != batch or not all(isinstance(p, SparsePlan) for p in plans):
        raise InputError(
            f"plan: expected one SparsePlan or a sequence of {batch} (one per batch element), "
            f"got {len(plans)} item(s)"
        )
    return plans


def _chunk_masks(
    plans: tuple[SparsePlan, ...],
    cache: KVCache,
    grid: tuple[int, int, int],
    device: torch.device,
) -> list[torch.Tensor]:
    """Per sample, the mask of the chunk's queries against the cached frames then its own
    (:meth:`SparsePlan.chunk_mask`); ``[]`` without plans.

    A plan covers the clip from latent frame 0 (absolute frame indices), or exactly the
    frames the cache holds followed by the chunk's (``num_frames == cached + frames``, in
    that order: what a stream builds chunk by chunk, so that it stays small however long
    the video). Before any eviction the two readings are the same frames; after one, a
    plan from frame 0 has more frames than that, so the size tells them apart."""
    frames, height, width = grid
    held = cache.frame_indices
    chunk = list(range(cache.frames_seen, cache.frames_seen + frames))
    masks = []
    for plan in plans:
        plan.check_grid(plan.num_frames, height, width, "VideoDiT")
        if plan.num_frames == len(held) + frames:
            keys = list(range(plan.num_frames))
            masks.append(plan.chunk_mask(keys[len(held) :], keys, device))
            continue
        if chunk[-1] >= plan.num_frames:
            raise InputError(
                f"VideoDiT: the chunk holds latent frames {chunk[0]}..{chunk[-1]}, the sparse "
                f"plan covers {plan.num_frames}"
            )
        masks.append(plan.chunk_mask(chunk, held + chunk, device))
    return masks
