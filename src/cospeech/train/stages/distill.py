"""Training stage ``distill``: DMD (paper Eq. 4-6) into a causal few-step student.

Three copies of the teacher (``stage.teacher``, dense or sparse-fine-tuned):

- **real score**: the frozen teacher, bidirectional, with guidance ``cond + g (cond -
  uncond)`` (``stage.guidance`` = g), dense or with per-sample sparse plans
  (``stage.teacher_attention``);
- **fake score** (the *critic*): starts as the teacher, trained by flow matching on the
  student's samples with its own optimizer (``stage.critic_optim``), at every update;
- **generator** (the *student*, the trained main model): starts as the teacher, runs
  block-causally over chunks of ``chunk_frames`` latent frames with a KV cache (``cache_sink``
  chunks kept forever, then a rolling window of ``cache_window`` chunks; 0 = all). With
  ``attention: sparse`` each chunk attends the cached frames that the causal global top-K
  mask of its window's pose keeps (and the region mask, Eq. 3). It steps every
  ``generator_every``-th update (TTUR) with ``train.optim`` (AdamW betas (0, 0.999), grad
  clip 10 by default) and the loop's EMA.

**Self-Forcing rollouts.** The student generates each training window itself, chunk by
chunk: each chunk starts from noise and runs the step list (``stage.steps``, e.g. [1000,
750, 500, 250], warped by ``step_shift``), re-noising the x0 prediction between steps; it
stops at an exit step drawn per update (the same for the batch and every process), whose
x0 prediction keeps its gradient and is the chunk's output. The clean chunk is then run
once more at t = 0 to commit its keys/values to the cache (no gradient crosses chunks).
The generator's loss is DMD on the whole rollout (:mod:`..objectives.dmd`, t uniform in
[0, 1000), shifted by ``dmd_shift``, clamped to [20, 980]) plus ``region_weight`` times
the region loss of Eq. 5 between the decoded rollout and the ground-truth frames
(:mod:`..objectives.region_loss`). The critic's flow-matching loss uses the same rollout,
detached.

**Randomness.** Noise and noise levels are drawn per sample from a generator seeded by
(update, sample key), not from the process RNG, so two processes with batch B equal one
process with batch 2B (up to float summation order).

    cospeech train distill --out runs/distill --set stage.teacher=runs/sparse/final-ema \
        --set stage.data=corpus/ --set stage.vae=runs/vae/final-ema \
        --set stage.latents=cache/teacher

The student folder is ``final-ema`` (the EMA weights) with ``sampling.json``
(:class:`StudentSampling`).

**Warp-conditioned teacher.** When ``stage.teacher`` has warp channels (``warp_dim`` > 0 in
its ``config.json``, a teacher trained with ``stage.warp``), the stage runs as with
``stage.warp``: the latent cache also holds the warp condition of every window
(``<clip>.warp.safetensors``, :mod:`.teacher`), and ``warped`` conditions every call of the
real score, the critic and the student (sliced per chunk in the rollouts, zeros in
guidance's unconditional branch). ``stage.init`` (optional) is where the student starts
instead of the teacher: a model folder of the teacher's architecture, e.g. a student
distilled from the teacher before it was warp-conditioned (an int8 delta folder such as the
shipped student loads over its sibling ``teacher/``); without warp channels it is widened
with zero weights (:func:`cospeech.models.i2v.expand_for_warp`: it starts as it was). The
critic and the real score stay copies of the teacher.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from cospeech.attention import SparsePlan
from cospeech.attention.plan import DEFAULT_BLOCK_SIZE
from cospeech.config import to_dict
from cospeech.diffusion import (
    Guidance,
    add_noise,
    flow_to_x0,
    sample_dmd_sigmas,
    sigma_to_timestep,
    step_list_sigmas,
)
from cospeech.errors import InputError, check_range
from cospeech.jsonfile import write_json
from cospeech.media.pixels import tensor_to_pixels
from cospeech.models import KVCache, VideoDiT
from cospeech.models.checkpoint import read_config
from cospeech.models.delta_folder import load_dit
from cospeech.models.i2v import (
    STUDENT_KIND,
    WARP_CONDITION,
    ConditionedFlow,
    StudentSampling,
    chunk_conditions,
    condition_names,
    expand_for_warp,
    reference_slot,
)
from cospeech.train.config import OptimConfig, TrainConfig, check_positive
from cospeech.train.distributed import unwrap_model
from cospeech.train.lora import without_lora
from cospeech.train.objectives.dmd import critic_loss, dmd_loss
from cospeech.train.objectives.region_loss import (
    LOSS_REGIONS,
    REGIONS,
    region_distances,
    region_loss,
    region_pixel_masks,
)
from cospeech.train.stage import MAIN_MODULE, StageModule
from cospeech.train.stages import sparse, teacher
from cospeech.train.stages.teacher import SAMPLE_SEED, TeacherDataset, TeacherStage

SAMPLING_FILE = "sampling.json"
ATTENTIONS = ("dense", "sparse")
CRITIC = "critic"
REAL = "real"
EXIT_SALT = 0x5EED_E417
SAMPLE_SALT = 0x5A3F_1E5


@dataclass
class Config(teacher.Config):
    """The ``stage:`` section of a distill run: the teacher's data options (``data``,
    ``vae``, ``latents``, ``model``, ``frames``, ``size``, ``window_stride``, ``cache_*``,
    ``sample_clips``; its flow-loss options do not apply) plus:

    ``teacher``: the teacher folder (empty = ``model`` with fresh weights, for tests);
    ``teacher_attention`` / ``attention``: ``dense`` or ``sparse`` for the real score and
    critic / for the student; ``k``, ``block_size``, ``sparse_backend``: the sparse plans;
    ``steps``: the student's step list (timesteps in (0, 1000]), warped by ``step_shift``;
    ``chunk_frames``: latent frames per causal chunk; ``cache_sink`` / ``cache_window``:
    KV-cache chunks kept forever / in the rolling window (0 = all); ``guidance``: g of the
    real score; ``dmd_shift``, ``min_timestep``, ``max_timestep``: DMD noise levels;
    ``generator_every``: the generator steps at every n-th update, the critic at all;
    ``critic_optim``: the critic's AdamW; ``region_weight``: lambda_region of Eq. 6 (0 =
    off); ``region_lambdas``: lambda_r of Eq. 5 per region (the person's regions at 1 by
    default; ``background``, the pixels outside them, is an extension, off unless given);
    ``arcface``: an ArcFace ``backbone.pth`` for the face term; ``lpips`` +
    ``lpips_backbone`` (+ ``lpips_net`` alex|vgg): LPIPS lin and torchvision weights for the
    other regions. Without them the VAE-feature substitute is used (docs/training.md).
    ``init``: the student's start (empty = the teacher; see the module docstring); ``warp``:
    implied by a warp-conditioned teacher (with an empty ``teacher``: a fresh
    warp-conditioned ``model``).
    """

    teacher: str = ""
    teacher_attention: str = "dense"
    attention: str = "sparse"
    k: int = 4
    block_size: int = DEFAULT_BLOCK_SIZE
    sparse_backend: str = "auto"
    steps: list[float] = field(default_factory=lambda: [1000.0, 750.0, 500.0, 250.0])
    step_shift: float = 5.0
    chunk_frames: int = 3
    cache_sink: int = 1
    cache_window: int = 0
    guidance: float = 3.0
    dmd_shift: float = 5.0
    min_timestep: float = 20.0
    max_timestep: float = 980.0
    generator_every: int = 5
    critic_optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(
            lr=4e-7, betas=(0.0, 0.999), weight_decay=0.0, warmup_steps=0, grad_clip=10.0
        )
    )
    region_weight: float = 1.0
    region_lambdas: dict[str, float] = field(default_factory=lambda: dict.fromkeys(REGIONS, 1.0))
    arcface: str = ""
    lpips: str = ""
    lpips_backbone: str = ""
    lpips_net: str = "alex"


def default_train_config() -> TrainConfig:
    """Self-Forcing's generator settings: AdamW betas (0, 0.999), grad clip 10, EMA."""
    return TrainConfig(
        steps=600,
        batch_size=1,
        ema_decay=0.99,
        checkpoint_every=50,
        log_every=10,
        sample_every=100,
        optim=OptimConfig(
            lr=2e-6, betas=(0.0, 0.999), weight_decay=0.0, warmup_steps=0, grad_clip=10.0
        ),
    )


def check_distill_config(config: Config) -> None:
    """:class:`InputError` naming the option when a distill-only value is out of range."""
    for name in ("teacher_attention", "attention"):
        if getattr(config, name) not in ATTENTIONS:
            raise InputError(
                f"stage.{name} must be one of {ATTENTIONS}, got {getattr(config, name)!r}"
            )
    sparse.check_plan_options(config.k, config.block_size, config.sparse_backend)
    teacher.check_model_folder(config.teacher, "stage.teacher")
    teacher.check_model_folder(config.init, "stage.init")
    if config.warp and config.teacher and not teacher_warp_dim(config.teacher):
        raise InputError(
            f"stage.warp: the teacher {config.teacher} has no warp channels (it was not trained "
            "with stage.warp); give a warp-conditioned teacher or drop stage.warp"
        )
    steps = [float(s) for s in config.steps]
    if not steps or any(not 0 < s <= 1000 for s in steps) or steps != sorted(steps, reverse=True):
        raise InputError(f"stage.steps must be decreasing timesteps in (0, 1000], got {steps}")
    for name, low in (("chunk_frames", 1), ("cache_sink", 0), ("cache_window", 0),
                      ("generator_every", 1), ("guidance", 0), ("region_weight", 0)):  # fmt: skip
        check_range(f"stage.{name}", getattr(config, name), low)
    check_positive("stage.step_shift", config.step_shift)
    check_positive("stage.dmd_shift", config.dmd_shift)
    if not 0 <= config.min_timestep <= config.max_timestep <= 1000:
        raise InputError("stage.min_timestep/max_timestep: need 0 <= min <= max <= 1000")
    unknown = sorted(set(config.region_lambdas) - set(LOSS_REGIONS))
    if unknown:
        raise InputError(
            f"stage.region_lambdas: unknown region(s) {unknown}; regions: {list(LOSS_REGIONS)}"
        )
    for name, value in config.region_lambdas.items():
        check_range(f"stage.region_lambdas.{name}", value, 0)
    if config.region_weights:
        raise InputError(
            "stage.region_weights weights the teacher's flow loss; the distill stage's region "
            "loss takes stage.region_weight and stage.region_lambdas"
        )
    if bool(config.lpips) != bool(config.lpips_backbone):
        raise InputError(
            "stage.lpips and stage.lpips_backbone go together (lin + backbone weights)"
        )
    for name in ("arcface", "lpips", "lpips_backbone"):
        path = getattr(config, name)
        if path and not Path(path).is_file():
            raise InputError(f"stage.{name}: {path}: no such file")


def teacher_warp_dim(folder: str) -> int:
    """The warp channels of the model in ``folder`` (its ``config.json``; 0 for none or
    for an empty ``folder``)."""
    return read_config(Path(folder)).warp_dim if folder else 0


class DistillDataset(TeacherDataset):
    """Teacher items plus the ground-truth ``video`` ``[3, F, H, W]`` (for the region loss)
    and ``key``: the sample's epoch-unique index (seeds its noise)."""

    KEYS = (*TeacherDataset.KEYS, "video")

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        out = super().__getitem__(index)
        out["key"] = torch.tensor(self.clips.epoch * len(self) + index, dtype=torch.int64)
        return out


def sample_generators(keys: Tensor, step: int) -> list[torch.Generator]:
    """One CPU generator per sample, seeded by (update, sample key)."""
    return [
        torch.Generator().manual_seed((int(key) * 1_000_003 + step * 7919) % (2**63 - 1))
        for key in keys.tolist()
    ]


def per_sample_randn(
    generators: list[torch.Generator], shape: tuple[int, ...], like: Tensor
) -> Tensor:
    """Normal noise ``[B, *shape]``, sample ``b`` drawn from ``generators[b]``; on ``like``'s
    device and dtype."""
    draws = [torch.randn(shape, generator=g) for g in generators]
    return torch.stack(draws).to(device=like.device, dtype=like.dtype)


def exit_step(step: int, num_steps: int) -> int:
    """The denoising step whose prediction keeps its gradient at update ``step``: uniform,
    the same for every sample and process."""
    generator = torch.Generator().manual_seed(EXIT_SALT + step)
    return int(torch.randint(num_steps, (1,), generator=generator))


class DistillStage:
    """The ``distill`` stage (see the module docstring)."""

    name = "distill"

    def __init__(self, config: Config) -> None:
        check_distill_config(config)
        self.warp = config.warp or teacher_warp_dim(config.teacher) > 0
        # data, latent cache (with the warp condition for a warp teacher), VAE, fresh model
        self.data = TeacherStage(replace(config, init="", warp=self.warp))
        self.config = config
        self.sigmas = step_list_sigmas(config.steps, config.step_shift).tolist()
        self._distances: dict[str, nn.Module] | None = None

    @property
    def vae(self):
        return self.data.vae

    # -- models ----------------------------------------------------------------------------
    def teacher_model(self) -> VideoDiT:
        """The teacher (``stage.teacher``; fresh ``stage.model`` weights when empty)."""
        return teacher.initial_model(self.data.build_model(), self.config.teacher, "stage.teacher")

    def build_model(self) -> nn.Module:
        """The student at its start: the teacher, or ``stage.init`` widened to the teacher's
        warp channels."""
        score = self.teacher_model()
        return self.student_init(score) if self.config.init else score

    def student_init(self, score: VideoDiT) -> VideoDiT:
        """``stage.init`` (a ``save_pretrained`` or weight-delta folder,
        :func:`~cospeech.models.delta_folder.load_dit`) with the warp channels of the teacher
        ``score`` (added with zero weights when it has none), checked to be its model."""
        folder = self.config.init
        student = load_dit(Path(folder))
        warp_dim = score.config.warp_dim
        if warp_dim and not student.config.warp_dim:
            student = expand_for_warp(student, warp_dim)
        if student.config != score.config:
            raise InputError(
                f"stage.init: {folder} holds another model than the teacher "
                f"({student.config.warp_dim} vs {warp_dim} warp channels, in_dim "
                f"{student.config.in_dim} vs {score.config.in_dim}, {student.config.num_layers} "
                f"vs {score.config.num_layers} layers); give a model of the teacher's preset"
            )
        return student.train(score.training)

    def build_modules(self, model: nn.Module) -> dict[str, StageModule]:
        """The critic (trained) and the real score (frozen), both copies of the teacher (of
        the student ``model`` itself when it starts as the teacher)."""
        score = self.teacher_model() if self.config.init else model
        return {
            CRITIC: StageModule(copy.deepcopy(score), self.config.critic_optim),
            REAL: StageModule(copy.deepcopy(score), None),
        }

    def updates(self, step: int) -> Collection[str]:
        """The critic at every update, the generator at every ``generator_every``-th."""
        if step % self.config.generator_every == 0:
            return (MAIN_MODULE, CRITIC)
        return (CRITIC,)

    def build_dataset(self) -> Dataset:
        dataset = self.data.build_dataset()
        clips, references = dataset.clips, dataset.references  # type: ignore[attr-defined]
        return DistillDataset(clips, references, warp=self.warp)

    # -- plans and rollouts ----------------------------------------------------------------
    def plans(self, model: nn.Module, batch: dict, causal: bool) -> list[SparsePlan]:
        cfg = self.config
        return sparse.window_plans(
            batch["keypoints"], tuple(batch["pose_maps"].shape[-2:]), self.vae.space_stride,
            unwrap_model(model).config.patch_size, k=cfg.k, block_size=cfg.block_size, exact=True,
            causal=causal,
        )  # fmt: skip

    def rollout(
        self,
        student: nn.Module,
        conditions: dict[str, Tensor],
        noise: Tensor,
        plans: list[SparsePlan] | None,
        exit_index: int,
        grad: bool,
    ) -> Tensor:
        """The student's video ``[B, C, W, h, w]``, generated chunk by chunk with its KV cache.

        ``noise`` ``[B, S, C, W, h, w]``: the start noise (``[:, 0]``) and the re-noising
        noise of each later step. Each chunk runs the step list up to ``exit_index``, whose
        x0 prediction is its output (with gradient when ``grad``), then is committed to the
        cache by a forward of the clean chunk at t = 0.
        """
        cfg = self.config
        core = unwrap_model(student)
        window = cfg.cache_window or None
        cache = KVCache(core.config.num_layers, sink_chunks=cfg.cache_sink, window_chunks=window)
        options = {"kv_cache": cache, "sparse_backend": cfg.sparse_backend}
        if plans is not None:
            options["plan"] = plans
        denoise = ConditionedFlow(functools.partial(student, **options))
        commit = ConditionedFlow(functools.partial(student, cache_update=True, **options))
        batch, frames = noise.shape[0], noise.shape[3]
        chunks = []
        for start in range(0, frames, cfg.chunk_frames):
            stop = min(start + cfg.chunk_frames, frames)
            where = chunk_conditions(conditions, start, stop)
            x = noise[:, 0, :, start:stop]
            for index, sigma in enumerate(self.sigmas[: exit_index + 1]):
                level = torch.full((batch,), sigma, device=x.device)
                with torch.set_grad_enabled(grad and index == exit_index):
                    x0 = flow_to_x0(x, denoise(x, sigma_to_timestep(level), **where), level)
                if index < exit_index:
                    x = add_noise(x0, noise[:, index + 1, :, start:stop], self.sigmas[index + 1])
            chunks.append(x0)
            with torch.no_grad():
                commit(x0.detach(), torch.zeros(batch, device=x0.device), **where)
        return torch.cat(chunks, dim=2)

    # -- the loss --------------------------------------------------------------------------
    def loss(
        self, model: nn.Module, batch: dict, step: int, modules: dict[str, nn.Module]
    ) -> tuple[Tensor, dict[str, float]]:
        cfg = self.config
        train_generator = MAIN_MODULE in self.updates(step)
        conditions = self.batch_conditions(batch)
        latents = batch["latents"]
        generators = sample_generators(batch["key"], step)
        rollout_noise = per_sample_randn(
            generators, (len(self.sigmas), *latents.shape[1:]), latents
        )
        student_plans = self.plans(model, batch, causal=True) if cfg.attention == "sparse" else None
        video = self.rollout(
            model, conditions, rollout_noise, student_plans, exit_step(step, len(self.sigmas)),
            grad=train_generator,
        )  # fmt: skip
        teacher_plans = (
            self.plans(model, batch, causal=False) if cfg.teacher_attention == "sparse" else None
        )
        real = self._flow(modules[REAL], teacher_plans, conditions, guidance=cfg.guidance)
        fake = self._flow(modules[CRITIC], teacher_plans, conditions)
        metrics: dict[str, float] = {}
        total = latents.new_zeros((), dtype=torch.float64)
        if train_generator:
            sigma, noise = self._noise_levels(generators, latents)
            dmd, dmd_metrics = dmd_loss(video, noise, sigma, _as_x0(real), _as_x0(fake))
            total = total + dmd
            metrics.update(dmd=dmd.item(), **dmd_metrics)
            if cfg.region_weight > 0:
                region, region_metrics = self.region_loss(video, batch)
                total = total + cfg.region_weight * region
                metrics.update(region=region.item(), **region_metrics)
        sigma, noise = self._noise_levels(generators, latents)
        critic = critic_loss(fake, video, noise, sigma)
        metrics["critic"] = critic.item()
        for name, plans in (("student", student_plans), ("teacher", teacher_plans)):
            if plans:
                metrics.update({f"{name}_{k}": v for k, v in sparse.plan_metrics(plans).items()})
        return total + critic, metrics

    def batch_conditions(self, batch: dict) -> dict[str, Tensor]:
        """The DiT's conditions of a training batch (with ``warped`` for a warp teacher)."""
        conditions = {
            "pose": batch["pose_maps"],
            "reference": reference_slot(batch["reference_latent"]),
            "ref_pose": batch["reference_pose_map"],
        }
        if self.warp:
            conditions[WARP_CONDITION] = batch[WARP_CONDITION]
        return conditions

    def _noise_levels(
        self, generators: list[torch.Generator], like: Tensor
    ) -> tuple[Tensor, Tensor]:
        """DMD noise levels ``[B]`` and noise ``like``-shaped, per sample."""
        cfg = self.config
        sigma = torch.cat([
            sample_dmd_sigmas(1, cfg.dmd_shift, cfg.min_timestep, cfg.max_timestep, generator=g)
            for g in generators
        ]).to(like.device)  # fmt: skip
        return sigma, per_sample_randn(generators, tuple(like.shape[1:]), like)

    def _flow(
        self,
        model: nn.Module,
        plans: list[SparsePlan] | None,
        conditions: dict[str, Tensor],
        guidance: float = 0.0,
    ):
        """``flow(x_t, sigma)`` of a bidirectional score model under the window's conditions,
        guided as ``cond + g (cond - uncond)`` when ``guidance`` g > 0."""
        options = {"sparse_backend": self.config.sparse_backend}
        if plans is not None:
            options["plan"] = plans
        flow_model = ConditionedFlow(functools.partial(model, **options))
        guide = Guidance(1.0 + guidance, drop=condition_names(self.warp))

        def flow(x_t: Tensor, sigma: Tensor) -> Tensor:
            return guide(flow_model, x_t, sigma_to_timestep(sigma), conditions)

        return flow

    def region_loss(self, video: Tensor, batch: dict) -> tuple[Tensor, dict[str, float]]:
        """Eq. 5 between the decoded latents ``video`` and the window's frames."""
        distances = self.distances(video.device)
        frames = self.vae.decode(video)
        size = tuple(frames.shape[-2:])
        masks = region_pixel_masks(batch["keypoints"], size, self.vae.space_stride)
        return region_loss(frames, batch["video"], masks, self.config.region_lambdas, distances)

    def distances(self, device: torch.device) -> dict[str, nn.Module]:
        """The region distances on ``device`` (with the frozen VAE): ArcFace / LPIPS when
        given, else the VAE-feature substitute; built on first use."""
        if self._distances is None:
            cfg = self.config
            arcface = lpips = None
            if cfg.arcface:
                from cospeech.eval.networks.arcface import load_arcface

                arcface = load_arcface(cfg.arcface)
            if cfg.lpips:
                from cospeech.eval.networks.lpips import load_lpips

                lpips = load_lpips(cfg.lpips_net, cfg.lpips, cfg.lpips_backbone)
            self._distances = region_distances(self.vae, arcface, lpips)  # type: ignore[assignment]
        self.vae.to(device)
        for distance in self._distances.values():  # type: ignore[union-attr]
            distance.to(device)
        return self._distances  # type: ignore[return-value]

    # -- samples and export ----------------------------------------------------------------
    @torch.no_grad()
    def sample(self, model: nn.Module, step: int) -> dict[str, np.ndarray]:
        """Ground truth (left) beside a student rollout (right) for fixed validation windows."""
        cfg = self.config
        device = next(model.parameters()).device
        self.vae.to(device)
        clips = self.data._clips("val", None, seed=SAMPLE_SEED)
        generator = torch.Generator().manual_seed(SAMPLE_SEED)
        videos = {}
        for index in range(min(cfg.sample_clips, len(clips))):
            item = clips[index]
            reference = self.vae.encode(item["reference"][None, :, None].to(device))
            batch = {"keypoints": item["keypoints"][None], "pose_maps": item["pose_maps"][None]}
            conditions = {
                "pose": item["pose_maps"][None].to(device),
                "reference": reference_slot(reference),
                "ref_pose": item["reference_pose_map"][None].to(device),
            }
            if self.warp:
                conditions[WARP_CONDITION] = self.data.item_warp(item).to(device)
            shape = (1, len(self.sigmas), self.vae.latent_channels, self.data.window_latents,
                     *reference.shape[-2:])  # fmt: skip
            noise = torch.randn(shape, generator=generator).to(device)
            plans = self.plans(model, batch, causal=True) if cfg.attention == "sparse" else None
            latents = self.rollout(model, conditions, noise, plans, len(self.sigmas) - 1, False)
            video = self.vae.decode(latents).cpu()[0]
            videos[str(item["clip"])] = tensor_to_pixels(torch.cat([item["video"], video], -1))
        return videos

    def sampling(self) -> StudentSampling:
        cfg = self.config
        return StudentSampling(
            kind=STUDENT_KIND, steps=[float(s) for s in cfg.steps], shift=cfg.step_shift,
            chunk_frames=cfg.chunk_frames, cache_sink=cfg.cache_sink,
            cache_window=cfg.cache_window, attention=cfg.attention, k=cfg.k,
            block_size=cfg.block_size, window=self.data.window_latents, size=cfg.size,
        )  # fmt: skip

    def export(self, model: nn.Module, out_dir: Path) -> None:
        """``save_pretrained`` of the student (LoRA merged) plus its ``sampling.json``."""
        without_lora(model).save_pretrained(out_dir)
        write_json(Path(out_dir) / SAMPLING_FILE, to_dict(self.sampling()))


def _as_x0(flow):
    """A flow predictor as an x0 predictor (``x0 = x_t - sigma * flow``)."""

    def predict(x_t: Tensor, sigma: Tensor) -> Tensor:
        return flow_to_x0(x_t, flow(x_t, sigma), sigma)

    return predict


def build_stage(config: Config) -> DistillStage:
    return DistillStage(config)
