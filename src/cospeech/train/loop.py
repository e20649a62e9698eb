"""The training loop shared by every stage.

``Trainer(stage, config, run_dir).run()`` trains ``config.steps`` optimizer updates and can
be killed at any moment: re-running the same command resumes from the newest checkpoint and
ends with exactly the weights of an uninterrupted run, because

- the data for step ``s`` is a pure function of (seed, s, rank) (see :mod:`.data`),
- torch's RNG is re-seeded from (seed, s, rank) before step ``s``,
- model, EMA, optimizer and LR schedule are restored from the checkpoint.

Runs the same under ``torchrun --nproc_per_node N`` (DDP, gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, default_collate
from tqdm import tqdm

from cospeech.config import save_config
from cospeech.errors import InputError
from cospeech.media.video import write_video
from cospeech.train import distributed as distributed_
from cospeech.train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from cospeech.train.config import OptimConfig, TrainConfig
from cospeech.train.data import EpochIndexed, ResumableBatchSampler
from cospeech.train.ema import EMA
from cospeech.train.logging import MetricsLog
from cospeech.train.stage import Stage

SAMPLE_FPS = 25


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


class Trainer:
    """Runs one stage: optimisation, EMA, checkpoints, logs and samples into ``run_dir``."""

    def __init__(
        self, stage: Stage, config: TrainConfig, run_dir: str | Path, device: str | None = None
    ) -> None:
        self.stage = stage
        self.config = config
        self.run_dir = Path(run_dir)
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
        self.ema = EMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.wrapped = distributed_.wrap_model(model, self.dist, fsdp=cfg.fsdp)
        params = [p for p in self.wrapped.parameters() if p.requires_grad]
        if not params:
            raise InputError(f"stage {self.stage.name}: the model has no trainable parameters")
        self.optimizer = torch.optim.AdamW(
            params,
            lr=cfg.optim.lr,
            betas=cfg.optim.betas,
            weight_decay=cfg.optim.weight_decay,
            eps=cfg.optim.eps,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, functools.partial(lr_factor, cfg.optim, cfg.steps)
        )
        self.dataset = self.stage.build_dataset()
        self.step = 0

    def _resume(self) -> None:
        checkpoints = list_checkpoints(self.run_dir / "checkpoints")
        if not checkpoints:
            return
        state = load_checkpoint(checkpoints[-1], map_location=self.device)
        self.model.load_state_dict(state.model)
        if self.ema is not None and state.ema is not None:
            self.ema.load_state_dict(state.ema)
        self.optimizer.load_state_dict(state.trainer["optimizer"])
        self.scheduler.load_state_dict(state.trainer["scheduler"])
        self.step = state.step

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

    def _update(self, batches) -> dict[str, float]:
        cfg = self.config
        torch.manual_seed(step_seed(cfg.seed, self.step, self.dist.rank))
        self.wrapped.train()
        self.optimizer.zero_grad(set_to_none=True)
        totals: dict[str, float] = {}
        for micro, batch in enumerate(batches):
            batch = _to_device(batch, self.device)
            last = micro == len(batches) - 1
            skip_sync = not last and hasattr(self.wrapped, "no_sync")
            context = self.wrapped.no_sync() if skip_sync else contextlib.nullcontext()
            with context, self._autocast():
                loss, metrics = self.stage.loss(self.wrapped, batch, self.step)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at step {self.step}")
            (loss / len(batches)).backward()
            for name, value in {"loss": loss.item(), **metrics}.items():
                totals[name] = totals.get(name, 0.0) + float(value) / len(batches)
        grad_norm = torch.nn.utils.clip_grad_norm_(
            [p for p in self.wrapped.parameters() if p.grad is not None],
            cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf,
        )
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        if self.ema is not None:
            self.ema.update(self.model, decay=0.0 if self.step <= cfg.ema_start else None)
        totals["grad_norm"] = float(grad_norm)
        totals["lr"] = self.scheduler.get_last_lr()[0]
        return totals

    # -- outputs ---------------------------------------------------------------------------
    def _save(self) -> None:
        if self.dist.is_main:
            save_checkpoint(
                self.run_dir / "checkpoints",
                self.step,
                model=self.model.state_dict(),
                ema=self.ema.state_dict() if self.ema is not None else None,
                trainer={
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                },
                extra={"stage": self.stage.name},
                keep_last=self.config.keep_last,
            )
        distributed_.barrier(self.dist)

    def _sample(self, log: MetricsLog) -> None:
        if not self.dist.is_main:
            return
        self.model.eval()
        with torch.no_grad(), self._autocast():
            videos = self.stage.sample(self.model, self.step)
        for name, frames in videos.items():
            write_video(self.run_dir / "samples" / f"step-{self.step:08d}-{name}.mp4", frames,
                        SAMPLE_FPS)  # fmt: skip
            log.still(self.step, f"samples/{name}", frames)

    def _export(self) -> None:
        if not self.dist.is_main:
            return
        self.stage.export(self.model, self.run_dir / "final")
        if self.ema is not None:
            backup = {k: v.clone() for k, v in self.model.state_dict().items()}
            self.ema.copy_to(self.model)
            self.stage.export(self.model, self.run_dir / "final-ema")
            self.model.load_state_dict(backup)

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> nn.Module:
        """Train to ``config.steps`` (resuming if a checkpoint exists); returns the model."""
        cfg = self.config
        self._build()
        self._resume()
        log = None
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir / "train.yaml")
            log = MetricsLog(self.run_dir, resume_step=self.step)
        batches = iter(self._loader()) if self.step < cfg.steps else iter(())
        bar = tqdm(total=cfg.steps, initial=self.step, desc=f"train {self.stage.name}",
                   disable=not self.dist.is_main, dynamic_ncols=True)  # fmt: skip
        started, first_step = time.perf_counter(), self.step
        try:
            while self.step < cfg.steps:
                metrics = self._update([next(batches) for _ in range(cfg.grad_accum)])
                metrics = {
                    k: distributed_.mean_across(torch.tensor(v), self.dist).item()
                    for k, v in metrics.items()
                }
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['loss']:.4f}")
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
            bar.close()
            if log is not None:
                log.close()
        return self.model


def _to_device(batch, device: torch.device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch
