"""The training loop shared by every stage.

``Trainer(stage, config, run_dir).run()`` trains ``config.steps`` optimizer updates and can
be killed at any moment: re-running the same command resumes from the newest checkpoint and
ends with exactly the weights of an uninterrupted run, because

- the data for step ``s`` is a pure function of (seed, s, rank) (see :mod:`.data`),
- torch's RNG is re-seeded from (seed, s, rank) before step ``s``,
- model, EMA, optimizer and LR schedule are restored from the checkpoint.

Runs the same under ``torchrun --nproc_per_node N`` (DDP, gloo on CPU, NCCL on GPU).

A stage may train several modules (:class:`~cospeech.train.stage.MultiModuleStage`:
distillation's generator and critic), each with its own optimizer, LR schedule, gradient
clip and update schedule; all of them are checkpointed and restored. Such a stage runs its
modules several times per update (rollouts), outside DDP's one-forward-one-backward
contract, so its modules are not wrapped: the loop averages their gradients across
processes itself after the backward (:func:`~.distributed.average_gradients`).
"""

from __future__ import annotations

import contextlib
import functools
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, default_collate

from cospeech.atomic import check_folder
from cospeech.config import read_yaml, save_config, to_dict
from cospeech.errors import CheckpointError, InputError
from cospeech.media.video import write_video
from cospeech.progress import Progress
from cospeech.train import distributed as distributed_
from cospeech.train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from cospeech.train.config import OptimConfig, TrainConfig
from cospeech.train.data import EpochIndexed, ResumableBatchSampler
from cospeech.train.ema import EMA
from cospeech.train.logging import MetricsLog
from cospeech.train.stage import MAIN_MODULE, Stage, StageModule

SAMPLE_FPS = 25
TRAIN_CONFIG = "train.yaml"
STAGE_CONFIG = "stage.yaml"


def step_seed(seed: int, step: int, rank: int) -> int:
    """The RNG seed of one update on one process."""
    return (seed * 1_000_003 + step * 7919 + rank * 104_729) % (2**63 - 1)


def lr_factor(optim: OptimConfig, total_steps: int, step: int) -> float:
    """The learning rate of update ``step`` (0-based) as a fraction of ``optim.lr``."""
    warmup = min(1.0, (step + 1) / optim.warmup_steps) if optim.warmup_steps > 0 else 1.0
    if optim.decay == "constant" or step < optim.decay_start:
        return warmup
    progress = min(1.0, (step - optim.decay_start) / max(1, total_steps - optim.decay_start))
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return warmup * (optim.min_lr_ratio + (1.0 - optim.min_lr_ratio) * cosine)


def take_learning_rate(trained: Optimised, total_steps: int) -> None:
    """After a resume, the learning rate of this command's ``optim.lr`` (a run continued
    with another ``train.optim.lr``, e.g. raised when it learns too slowly) at the schedule's
    current step; nothing changes when the checkpoint was trained at that rate."""
    scheduler, lr = trained.scheduler, trained.optim.lr
    if all(base == lr for base in scheduler.base_lrs):
        return
    scheduler.base_lrs = [lr for _ in scheduler.base_lrs]
    factor = lr_factor(trained.optim, total_steps, scheduler.last_epoch)
    for group in trained.optimizer.param_groups:
        group["lr"] = group["initial_lr"] = lr * factor
    scheduler._last_lr = [group["lr"] for group in trained.optimizer.param_groups]


@dataclass
class Optimised:
    """A trained module with its optimizer and LR schedule (``module``: what the loss
    calls, i.e. the DDP wrapper of the main model when there is one)."""

    module: nn.Module
    optim: OptimConfig
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR


class Trainer:
    """Runs one stage: optimisation, EMA, checkpoints, logs and samples into ``run_dir``."""

    def __init__(
        self,
        stage: Stage,
        config: TrainConfig,
        run_dir: str | Path,
        device: str | None = None,
        stage_config: Any = None,
    ) -> None:
        """``stage_config`` (the stage's dataclass config, optional) is saved beside the
        train config, so that a resume with other settings can say which differ."""
        self.stage = stage
        self.config = config
        self.stage_config = stage_config
        self.run_dir = Path(run_dir)
        self.resumed_from = 0  # the step this run started from (set by run())
        self.dist = distributed_.init_distributed(device)
        self.device = self.dist.device

    # -- set-up -----------------------------------------------------------------------------
    def _build(self) -> None:
        cfg = self.config
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank and every run
        model = self.stage.build_model().to(self.device)
        if cfg.lora.rank > 0:
            from cospeech.train.lora import apply_lora

            model = apply_lora(model, cfg.lora)
        self.model = model
        self.modules = self._build_modules(model)
        if cfg.fsdp:  # every module sharded, the frozen ones too (they may not fit either)
            self.wrapped = distributed_.wrap_model(model, self.dist, fsdp=True)
            for extra in self.modules.values():
                distributed_.wrap_model(extra.module, self.dist, fsdp=True)
        else:  # several modules: not DDP-wrapped, the loop averages their gradients
            self.wrapped = model if self.modules else distributed_.wrap_model(model, self.dist)
        # After wrapping: under FSDP2 the model holds its shards, and so does the EMA.
        self.ema = EMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.trained = {MAIN_MODULE: self._optimised(MAIN_MODULE, self.wrapped, cfg.optim)}
        for name, extra in self.modules.items():
            if extra.optim is not None:
                self.trained[name] = self._optimised(name, extra.module, extra.optim)
        self.optimizer = self.trained[MAIN_MODULE].optimizer
        self.scheduler = self.trained[MAIN_MODULE].scheduler
        self.dataset = self.stage.build_dataset()
        self.step = 0

    def _build_modules(self, model: nn.Module) -> dict[str, StageModule]:
        """The stage's modules besides ``model`` on the device (frozen ones in eval mode
        without gradients); ``{}`` for a single-model stage."""
        build = getattr(self.stage, "build_modules", None)
        modules: dict[str, StageModule] = dict(build(model)) if build is not None else {}
        if MAIN_MODULE in modules:
            raise InputError(f"stage {self.stage.name}: {MAIN_MODULE!r} names the main model")
        for extra in modules.values():
            extra.module.to(self.device)
            if extra.optim is None:
                extra.module.eval().requires_grad_(False)
        return modules

    def _optimised(self, name: str, module: nn.Module, optim: OptimConfig) -> Optimised:
        params = [p for p in module.parameters() if p.requires_grad]
        if not params:
            what = "the model" if name == MAIN_MODULE else f"module {name!r}"
            raise InputError(f"stage {self.stage.name}: {what} has no trainable parameters")
        optimizer = torch.optim.AdamW(
            params, lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay,
            eps=optim.eps,
        )  # fmt: skip
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, functools.partial(lr_factor, optim, self.config.steps)
        )
        return Optimised(module, optim, optimizer, scheduler)

    def _scheduled(self) -> list[str]:
        """The names of the modules whose optimizer steps at this update."""
        if not self.modules:
            return [MAIN_MODULE]
        names = set(self.stage.updates(self.step))  # type: ignore[attr-defined]
        unknown = sorted(names - set(self.trained))
        if unknown:
            raise InputError(f"stage {self.stage.name}: schedules unknown module(s) {unknown}")
        return [name for name in self.trained if name in names]

    def _resume(self) -> None:
        checkpoints = list_checkpoints(self.run_dir / "checkpoints")
        if not checkpoints:
            return
        state = load_checkpoint(checkpoints[-1], map_location=self.device)
        try:
            distributed_.load_full_model_state(self.model, state.model)
            if self.ema is not None and state.ema is not None:
                self.ema.load_state_dict(state.ema)
            distributed_.load_full_optimizer_state(
                self.model, self.optimizer, state.trainer["optimizer"]
            )
            self.scheduler.load_state_dict(state.trainer["scheduler"])
            for name, trained in self._extra_trained().items():
                saved = state.trainer["modules"][name]
                distributed_.load_full_model_state(trained.module, saved["weights"])
                distributed_.load_full_optimizer_state(
                    trained.module, trained.optimizer, saved["optimizer"]
                )
                trained.scheduler.load_state_dict(saved["scheduler"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(self._mismatch(checkpoints[-1], exc)) from None
        self.step = state.step
        for trained in self.trained.values():
            take_learning_rate(trained, self.config.steps)

    def _settings(self) -> dict[str, Any]:
        """This run's settings as flat ``section.key`` values (what the run folder keeps)."""
        sections = {
            TRAIN_CONFIG: ("train", self.config),
            STAGE_CONFIG: ("stage", self.stage_config),
        }
        return {
            name: flatten(to_dict(config), section)
            for name, (section, config) in sections.items()
            if config is not None
        }

    def _mismatch(self, checkpoint: Path, exc: BaseException) -> str:
        """One line for a checkpoint that does not fit this run: the settings that differ
        from the ones the run folder was trained with (``stage.preset: 'demo' -> 'tiny'``)."""
        changes = []
        for name, current in self._settings().items():
            path = self.run_dir / name
            if path.is_file():
                saved = flatten(read_yaml(path), name.split(".")[0])
                changes += [
                    f"{key}: {_shown(saved, key)} -> {_shown(current, key)}"
                    for key in sorted(saved.keys() | current.keys())
                    if saved.get(key) != current.get(key)
                ]
        what = "; ".join(changes) if changes else str(exc).strip().splitlines()[0]
        return (
            f"{self.run_dir} holds a run with other settings ({what}): its checkpoint "
            f"{checkpoint.name} does not fit this model; use another --out folder or the "
            "same settings"
        )

    def _loader(self) -> DataLoader:
        cfg = self.config
        try:
            sampler = ResumableBatchSampler(
                len(self.dataset),
                cfg.batch_size,
                cfg.seed,
                rank=self.dist.rank,
                world_size=self.dist.world_size,
                start_batch=self.step * cfg.grad_accum,
            )
        except ValueError as exc:
            raise InputError(f"stage {self.stage.name}: {exc}") from None
        return DataLoader(
            EpochIndexed(self.dataset),
            batch_sampler=sampler,
            num_workers=cfg.num_workers,
            collate_fn=default_collate,
            persistent_workers=cfg.num_workers > 0,
        )

    # -- one update ------------------------------------------------------------------------
    def _autocast(self):
        mode = self.config.mixed_precision
        use_bf16 = mode == "bf16" or (mode == "auto" and self.device.type == "cuda")
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_bf16)

    def _extra_trained(self) -> dict[str, Optimised]:
        return {name: t for name, t in self.trained.items() if name != MAIN_MODULE}

    def _update(self, batches) -> dict[str, float]:
        cfg = self.config
        torch.manual_seed(step_seed(cfg.seed, self.step, self.dist.rank))
        scheduled = self._scheduled()
        for trained in self.trained.values():
            trained.module.train()
            trained.optimizer.zero_grad(set_to_none=True)
        extra = {"modules": {n: m.module for n, m in self.modules.items()}} if self.modules else {}
        totals: dict[str, float] = {}
        for micro, batch in enumerate(batches):
            batch = _to_device(batch, self.device)
            last = micro == len(batches) - 1
            skip_sync = not last and hasattr(self.wrapped, "no_sync")
            context = self.wrapped.no_sync() if skip_sync else contextlib.nullcontext()
            with context, self._autocast():
                loss, metrics = self.stage.loss(self.wrapped, batch, self.step, **extra)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at step {self.step}")
            (loss / len(batches)).backward()
            for name, value in {"loss": loss.item(), **metrics}.items():
                totals[name] = totals.get(name, 0.0) + float(value) / len(batches)
        if self.modules:
            distributed_.average_gradients(
                [p for t in self.trained.values() for p in t.module.parameters()], self.dist
            )
        for name in scheduled:
            suffix = "" if name == MAIN_MODULE else f"_{name}"
            totals[f"grad_norm{suffix}"] = self._step_optimizer(self.trained[name])
        self.step += 1
        if self.ema is not None and MAIN_MODULE in scheduled:
            self.ema.update(self.model, decay=0.0 if self.step <= cfg.ema_start else None)
        totals["lr"] = self.scheduler.get_last_lr()[0]
        for name, trained in self._extra_trained().items():
            totals[f"lr_{name}"] = trained.scheduler.get_last_lr()[0]
        return totals

    @staticmethod
    def _step_optimizer(trained: Optimised) -> float:
        """Clip the module's gradient norm, step its optimizer and LR schedule; returns the
        norm before clipping."""
        clip = trained.optim.grad_clip
        grad_norm = torch.nn.utils.clip_grad_norm_(
            [p for p in trained.module.parameters() if p.grad is not None],
            clip if clip > 0 else math.inf,
        )
        trained.optimizer.step()
        trained.scheduler.step()
        return float(grad_norm)

    # -- outputs ---------------------------------------------------------------------------
    def _save(self) -> None:
        # Every process gathers (FSDP2: the whole tensors are collectives); the main one writes.
        model = distributed_.full_model_state(self.model)
        ema = self._full_ema()
        trainer = self._trainer_state()
        if self.dist.is_main:
            save_checkpoint(
                self.run_dir / "checkpoints",
                self.step,
                model=model,
                ema=ema,
                trainer=trainer,
                extra={"stage": self.stage.name},
                keep_last=self.config.keep_last,
            )
        distributed_.barrier(self.dist)

    def _full_ema(self) -> dict[str, torch.Tensor] | None:
        """The EMA's whole tensors (gathered from FSDP2 shards: every process calls it)."""
        return distributed_.full_tensors(self.ema.state_dict()) if self.ema is not None else None

    def _trainer_state(self) -> dict[str, Any]:
        """Optimizer and LR schedule state, plus weights and state of every other trained
        module (``modules``)."""
        state: dict[str, Any] = {
            "optimizer": distributed_.full_optimizer_state(self.model, self.optimizer),
            "scheduler": self.scheduler.state_dict(),
        }
        extra = self._extra_trained()
        if extra:
            state["modules"] = {
                name: {
                    "weights": distributed_.full_model_state(trained.module),
                    "optimizer": distributed_.full_optimizer_state(
                        trained.module, trained.optimizer
                    ),
                    "scheduler": trained.scheduler.state_dict(),
                }
                for name, trained in extra.items()
            }
        return state

    def _sample(self, log: MetricsLog) -> None:
        sharded = distributed_.is_sharded(self.model)
        if not (self.dist.is_main or sharded):
            return
        self.model.eval()
        with torch.no_grad(), self._autocast():  # FSDP2: every process runs the forwards
            videos = self.stage.sample(self.model, self.step)
        if not self.dist.is_main:
            return
        for name, frames in videos.items():
            write_video(self.run_dir / "samples" / f"step-{self.step:08d}-{name}.mp4", frames,
                        SAMPLE_FPS)  # fmt: skip
            log.still(self.step, f"samples/{name}", frames)

    def _export(self) -> None:
        final, *averaged = self.export_dirs()
        if distributed_.is_sharded(self.model):
            self._export_sharded(final, averaged)
            return
        if not self.dist.is_main:
            return
        self.stage.export(self.model, final)
        if self.ema is not None:
            backup = {k: v.clone() for k, v in self.model.state_dict().items()}
            self.ema.copy_to(self.model)
            self.stage.export(self.model, averaged[0])
            self.model.load_state_dict(backup)

    def _export_sharded(self, final: Path, averaged: list[Path]) -> None:
        """FSDP2: every process gathers the whole weights (and the EMA's); the main one
        loads them into an unsharded copy of the model on the CPU and exports that."""
        states = [distributed_.full_model_state(self.model)]
        ema = self._full_ema()
        if ema is not None:
            states.append(ema)
        if self.dist.is_main:
            plain = self._plain_model()
            dtypes = {k: v.dtype for k, v in plain.state_dict().items()}
            for state, folder in zip(states, [final, *averaged], strict=True):
                plain.load_state_dict({k: v.to(dtypes[k]) for k, v in state.items()})
                self.stage.export(plain, folder)
        distributed_.barrier(self.dist)

    def _plain_model(self) -> nn.Module:
        """A fresh, unwrapped model of the stage on the CPU (LoRA applied as in training)."""
        model = self.stage.build_model()
        if self.config.lora.rank > 0:
            from cospeech.train.lora import apply_lora

            model = apply_lora(model, self.config.lora)
        return model.eval()

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> nn.Module:
        """Train to ``config.steps`` (resuming if a checkpoint exists); returns the model.

        What can be checked is checked before the run folder is made (the model, the data,
        the batch size against the data, a checkpoint that does not fit). A run folder that
        this call made is removed again when the run fails before its first checkpoint:
        there is nothing in it to resume.
        """
        cfg = self.config
        check_folder(self.run_dir, "run folder")
        self._build()
        self._resume()
        self.resumed_from = self.step
        batches = iter(self._loader()) if self.step < cfg.steps else iter(())
        created = self.dist.is_main and not self.run_dir.exists()
        try:
            self._train(batches)
        except BaseException:
            if created and not list_checkpoints(self.run_dir / "checkpoints"):
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise
        # Leave the process group once every rank is done: a process that exits holding
        # it can abort in gloo's threads ("terminate called without an active exception").
        distributed_.barrier(self.dist)
        distributed_.shutdown(self.dist)
        return self.model

    def export_dirs(self) -> list[Path]:
        """The folders the trained model is exported to: ``final`` (and ``final-ema``)."""
        names = ["final", "final-ema"] if self.ema is not None else ["final"]
        return [self.run_dir / name for name in names]

    def _train(self, batches) -> None:
        cfg = self.config
        log = None
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for name, config in ((TRAIN_CONFIG, cfg), (STAGE_CONFIG, self.stage_config)):
                if config is not None:
                    save_config(config, self.run_dir / name)
            log = MetricsLog(self.run_dir, resume_step=self.step)
        bar = Progress(f"train {self.stage.name}", cfg.steps, "step", initial=self.step,
                       enabled=self.dist.is_main)  # fmt: skip
        started, first_step = time.perf_counter(), self.step
        try:
            while self.step < cfg.steps:
                metrics = self._update([next(batches) for _ in range(cfg.grad_accum)])
                metrics = {
                    k: distributed_.mean_across(torch.tensor(v), self.dist).item()
                    for k, v in metrics.items()
                }
                bar.update(1)
                bar.set_postfix(f"loss {metrics['loss']:.4f}")
                if log is not None and (self.step % cfg.log_every == 0 or self.step == cfg.steps):
                    elapsed = time.perf_counter() - started
                    metrics["steps_per_s"] = (self.step - first_step) / max(elapsed, 1e-9)
                    log.scalars(self.step, metrics)
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                    self._save()
                if log is not None and cfg.sample_every and self.step % cfg.sample_every == 0:
                    self._sample(log)
            self._export()
        finally:
            bar.close(completed=self.step >= cfg.steps)
            if log is not None:
                log.close()


def _to_device(batch, device: torch.device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def flatten(values: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Nested config values as ``{"prefix.key.sub": value}``."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}.{key}"
        flat.update(flatten(value, name) if isinstance(value, dict) else {name: value})
    return flat


def _shown(values: dict[str, Any], key: str) -> str:
    return repr(values[key]) if key in values else "(unset)"
