"""The training loop, one for every method: ``train(cfg, reward)``, i.e. ``Trainer(cfg, reward).fit()``.

Per optimiser step (``Trainer.train_step``): every rank draws the same method choices (k, j, t_min, ...) from
a generator seeded by (seed, step); each micro-batch takes cached prompt embeddings and fresh noise, rolls out
with the method's plan (``engine.rollout``), scores the method's differentiable x_0 through the VAE and the
reward, and backpropagates (``forward_backward``); gradients accumulate to the global batch, are clipped, and
AdamW and the fp32 EMA step unless the loss or gradient is non-finite (``optimizer_step``). A method that
samples before it learns (``Method.updates``: the GRPO peers) instead samples and scores the whole batch, then
takes several optimiser steps on it (``benchmark.training.policy``). The loop never looks at which method it
trains: the method's declared capabilities (``methods.base.Method``: group size, shared noise, time grid,
updates, reference model, iteration, gradient parts) are all it reads.

Reproducibility: prompt order, noise and method choices are pure functions of (seed, step, sample), so a
resumed run, or the same global batch split over a different number of ranks, sees the same data; stochastic
rollout steps draw their noise from a generator seeded by (seed, step, micro-batch).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from benchmark.core import distributed
from benchmark.core.backbones import DTYPES, build_backbone
from benchmark.core.engine import rollout
from benchmark.core.seeding import seed_everything, seeded
from benchmark.training.checkpointing import Checkpointer, NonFiniteWeights
from benchmark.training.config import RunConfig, TrainingConfig, check_run, dump_config
from benchmark.training.data import MicroBatch, make_batches, open_prompts
from benchmark.training.ema import EMA
from benchmark.training.policy import sample_then_update
from benchmark.training.signals import StopFlag
from benchmark.training.telemetry import Telemetry, complement, merge_metrics, peak_memory
from evaluators.rewards import Reward
from methods import LossContext, Method, build_method


class NonFiniteStop(RuntimeError):
    """Too many non-finite steps in a row; the message names the last good checkpoint."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int  # the last completed step
    status: str  # "finished", or "preempted" after SIGTERM/SIGUSR2
    checkpoint: Path | None
    summary: dict


def train(cfg: RunConfig, reward: Reward, *, resume: str | None = None, backbone: Any = None,
          on_step: Callable[[int, dict], None] | None = None, allow_config_change: bool = False) -> TrainResult:
    """Fine-tune ``cfg.backbone`` with ``cfg.method`` on ``reward`` (images in [0,1], prompts -> [B]).

    ``resume``: None/"none" (a fresh run), "auto" (the newest valid checkpoint of the run directory, if any)
    or a checkpoint directory. ``backbone`` replaces building one from ``cfg.backbone`` (tests).
    ``on_step(step, metrics)`` runs after each step's logging and checkpointing. ``allow_config_change``:
    resume even when the config changes what the run trained (the old config is kept in config.history/).
    """
    return Trainer(cfg, reward, resume=resume, backbone=backbone, allow_config_change=allow_config_change).fit(on_step)


class Trainer:
    """One run: ``__init__`` checks the config and builds everything once (nothing is built for a bad config,
    and the run directory appears only after every check); ``fit`` runs the steps."""

    def __init__(self, cfg: RunConfig, reward: Reward, *, resume: str | None = None, backbone: Any = None,
                 allow_config_change: bool = False):
        self.cfg = cfg
        self.env, self.started = distributed.setup(cfg.distributed.backend, cfg.distributed.timeout_s)
        try:
            check_run(cfg, self.env.world_size, resume, check_reward=False, allow_config_change=allow_config_change)
        except BaseException:
            distributed.teardown(self.started)
            raise
        self.run_dir, self.device = Path(cfg.run_dir), self.env.device
        if self.env.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            dump_config(cfg, self.run_dir / "config.yaml")
        seed_everything(cfg.seed)
        self.build(reward, backbone)
        self.checkpointer = Checkpointer(cfg, self.env, self.backbone.name)
        self.progress = self.checkpointer.resume(resume, self.model, self.optimizer, self.ema)

    def build(self, reward: Reward, backbone: Any) -> None:
        """Method, backbone (wrapped for DDP / FSDP2), optimiser, EMA, reward, prompts and the sigma schedule."""
        cfg, device = self.cfg, self.device
        self.method: Method = build_method(cfg.method)
        self.backbone = backbone if backbone is not None else build_backbone(cfg.backbone)
        grid = self.method.time_grid  # the training rollouts' sigmas and model time (GRPO presets: DanceGRPO's)
        self.reference = grid.model(frozen_reference(self.backbone, device)) if self.method.needs_reference else None
        prepare_model(self.backbone, cfg.train, device)
        how = distributed.strategy(cfg.distributed.strategy, cfg.lora, self.env.world_size)
        self.model = distributed.parallelize(self.backbone.transformer, how, self.env, cfg.distributed.fsdp_param_dtype,
                                             cfg.distributed.fsdp_reduce_dtype)
        self.backbone.transformer = self.model  # the backbone's velocity now runs the wrapped (DDP / FSDP2) module
        self.flow = grid.model(self.backbone)  # what rollouts and losses call: the backbone unless the time is quantised
        named = [(n, p) for n, p in distributed.unwrap(self.model).named_parameters() if p.requires_grad]
        self.params = [p for _, p in named]
        o = cfg.optim
        self.optimizer = torch.optim.AdamW(self.params, lr=o.lr, betas=o.betas, eps=o.eps,
                                           weight_decay=o.weight_decay)
        self.ema = EMA(named, o.ema_decay)
        self.parts = self.method.gradient_parts() if cfg.logging.grad_parts_every else {}
        self.reward = reward.to(device).requires_grad_(False).eval()
        self.cache, self.prompts = open_prompts(cfg)
        self.T = cfg.schedule.num_steps
        self.sigmas = grid.sigmas(self.backbone, self.T).to(device)
        self.accumulation = cfg.accumulation(self.env.world_size)
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.train.autocast and (
            device.type == "cuda" or cfg.train.autocast_cpu))

    # -- the loop ---------------------------------------------------------------------------------------------

    def fit(self, on_step: Callable[[int, dict], None] | None = None) -> TrainResult:
        cfg, progress = self.cfg, self.progress
        telemetry = Telemetry(self.run_dir, self.env.is_main, cfg.schedule.iterations, progress.step,
                              cfg.logging.progress, cfg.logging.tensorboard, cfg.logging.wandb, cfg.to_dict())
        stop = StopFlag().install()
        t_start, status = time.perf_counter(), "finished"
        try:
            while progress.step < cfg.schedule.iterations:
                if distributed.any_rank(stop.signum is not None, self.device):  # SIGTERM / SIGUSR2 between steps
                    if progress.step > 0:
                        self.save()
                    status = "preempted"
                    break
                row = self.train_step(progress.step + 1)
                telemetry.log(row)
                self.stop_if_diverging(row)
                if self.checkpointer.due(progress.step):
                    self.save()
                if on_step is not None:
                    on_step(progress.step, row)
        except NonFiniteStop:
            status = "stopped"
            raise
        finally:
            stop.restore()
            summary = telemetry.summary({"status": status, "step": progress.step,
                                         "skipped_total": progress.skipped_total,
                                         "wall_time": time.perf_counter() - t_start,
                                         "world_size": self.env.world_size, "device": self.device.type,
                                         "checkpoint": str(self.checkpointer.latest) if self.checkpointer.latest
                                         else None})
            telemetry.close()
            distributed.teardown(self.started)
        if self.env.is_main:
            print(f"[leapbench] {status} at step {progress.step}: " + ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()), flush=True)
        if status == "preempted":
            stop.chain()  # e.g. submitit's own SIGUSR2 handler, which requeues the job
        return TrainResult(self.run_dir, progress.step, status, self.checkpointer.latest, summary)

    def train_step(self, step: int) -> dict[str, Any]:
        """One optimiser step: micro-batches forward and backward, gradient parts, clip, AdamW and EMA."""
        t0 = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        batches = make_batches(self.cfg, self.backbone, self.cache, self.prompts, step, self.env.rank,
                               self.accumulation, self.device, group_size=self.method.group_size,
                               shared_noise=self.method.shared_noise)
        if self.method.updates is not None:  # the policy-gradient peers: sample the batch, then several updates
            row, grad_norm, skipped, has_grad = sample_then_update(self, step, batches)
        else:
            row, grad_norm, skipped, has_grad = self.gradient_step(step, batches)
        self.progress.record(step, skipped)
        row.update(grad_norm=grad_norm, lr=self.cfg.optim.lr, step_time=time.perf_counter() - t0,
                   peak_mem=peak_memory(self.device), skipped=skipped, trained=has_grad and not skipped,
                   skipped_total=self.progress.skipped_total)
        return row

    def gradient_step(self, step: int, batches: list[MicroBatch]) -> tuple[dict[str, Any], float, bool, bool]:
        """Roll out, score and backpropagate every micro-batch, then one optimiser step (the reward-gradient methods)."""
        self.optimizer.zero_grad(set_to_none=True)
        losses, rows, has_grad = self.forward_backward(self.method, step, batches)
        row = {"step": step, "loss": float(distributed.all_mean(torch.tensor(np.mean(losses))).item())}
        row.update(merge_metrics(rows))
        if has_grad and self.parts and step % self.cfg.logging.grad_parts_every == 0:
            row.update(self.gradient_part_norms(step, batches))
        grad_norm, skipped = self.optimizer_step(row["loss"], has_grad)
        return row, grad_norm, skipped, has_grad

    def forward_backward(self, method: Method, step: int,
                         batches: list[MicroBatch]) -> tuple[list[float], list[dict], bool]:
        """Roll out, score and backpropagate every micro-batch; gradients sync on the last one."""
        losses, rows, has_grad = [], [], False
        for a, mb in enumerate(batches):
            pins = {"iteration": step} if method.uses_iteration else {}
            mstep = method.start(self.T, seeded(self.cfg.seed, "choice", step), **pins)  # identical on every rank
            ctx = LossContext(
                model=self.flow, cond=mb.cond, score=self.scorer(mb.prompts),
                generator=seeded(self.cfg.seed, "loss", step, mb.index, device=self.device), reference=self.reference,
            )
            with distributed.gradient_sync(self.model, sync=a == len(batches) - 1):
                with self.autocast:
                    sde_noise = seeded(self.cfg.seed, "sde", step, mb.index, device=self.device)  # stochastic steps only
                    traj = rollout(self.flow, mb.cond, mb.x_T, self.sigmas, mstep, generator=sde_noise)
                    loss, metrics = mstep.loss(traj, ctx)
                if loss.requires_grad:  # a loss may carry no graph (DRTune when all its training steps lie below t_min)
                    (loss / len(batches)).backward()
                    has_grad = True
            losses.append(loss.detach().float().item())
            rows.append(metrics)
        return losses, rows, has_grad

    def scorer(self, prompts: list[str]) -> Callable[[Tensor], tuple[Tensor, dict]]:
        """x0 -> (rewards, parts): decode with the VAE and score against this micro-batch's prompts."""
        return lambda x0: self.reward.score(self.backbone.decode(x0), prompts)

    def gradient_part_norms(self, step: int, batches: list[MicroBatch]) -> dict[str, float]:
        """Norms of the method's gradient parts and of their remainders (same batches and choices, before
        clipping); the full gradient is put back afterwards."""
        full = [grad_or_zeros(p) for p in self.params]
        norms = {}
        for name, variant in self.parts.items():
            self.optimizer.zero_grad(set_to_none=True)
            self.forward_backward(variant, step, batches)
            part = [grad_or_zeros(p) for p in self.params]
            norms[f"grad_norm_{name}"] = total_norm(part)
            norms[f"grad_norm_{complement(name)}"] = total_norm([f - g for f, g in zip(full, part)])
        for p, g in zip(self.params, full):
            p.grad = g
        return norms

    def optimizer_step(self, loss: float, has_grad: bool) -> tuple[float, bool]:
        """Clip; step AdamW and the EMA only when loss and gradient are finite on every rank.

        Returns (gradient norm before clipping, whether the step was skipped)."""
        grad_norm = 0.0
        if has_grad:
            clip = self.cfg.optim.grad_clip if self.cfg.optim.grad_clip is not None else math.inf
            grad_norm = float(distributed.full_tensor(torch.nn.utils.clip_grad_norm_(self.params, clip)))
        skipped = distributed.any_rank(not (math.isfinite(loss) and math.isfinite(grad_norm)), self.device)
        if not skipped and has_grad:
            self.optimizer.step()
            self.ema.update()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm, skipped

    def stop_if_diverging(self, row: dict[str, Any]) -> None:
        """After ``train.max_consecutive_skips`` non-finite steps in a row, save the last good state and stop."""
        limit = self.cfg.train.max_consecutive_skips
        if self.progress.consecutive_skips < limit:
            return
        # parameters, optimiser and EMA are those of the last good step: save them (if finite) and stop
        ckpt, saved = self.checkpointer.latest, "the last finite step"
        try:
            ckpt = self.save()
        except NonFiniteStop:
            saved = "non-finite, so nothing was saved; the newest checkpoint is the last good state"
        raise NonFiniteStop(
            f"stopped at step {row['step']}: {self.progress.consecutive_skips} consecutive steps with a non-finite "
            f"loss or gradient (loss={row['loss']}, grad_norm={row['grad_norm']}; train.max_consecutive_skips="
            f"{limit}). The model is {saved}; checkpoint: {ckpt}. Check the reward and lower "
            "optim.lr or optim.grad_clip."
        )

    def save(self) -> Path:
        try:
            return self.checkpointer.save(self.progress, self.model, self.optimizer, self.ema)
        except NonFiniteWeights as err:  # never checkpointed: the run stops, the previous checkpoint stays the newest
            raise NonFiniteStop(f"{err}. Check the reward and lower optim.lr or optim.grad_clip.") from None


# -- pieces of the setup -------------------------------------------------------------------------------------


def prepare_model(backbone: Any, cfg: TrainingConfig, device: torch.device) -> None:
    """Move to the device, freeze what is not trained, add the LoRA adapter, cast the trained params."""
    transformer = backbone.transformer.to(device)
    vae = getattr(backbone, "vae", None)  # the toy backbone has no VAE
    if vae is not None:
        vae.to(device).requires_grad_(False)
    if cfg.lora.rank:
        from peft import LoraConfig  # heavy (peft pulls in accelerate, about 4 s); LoRA runs only

        transformer.requires_grad_(False)
        transformer.add_adapter(LoraConfig(r=cfg.lora.rank, lora_alpha=cfg.lora.alpha or cfg.lora.rank,
                                           target_modules=list(cfg.lora.targets), init_lora_weights="gaussian"))
    for p in transformer.parameters():
        if p.requires_grad:
            p.data = p.data.to(DTYPES[cfg.master_dtype])
    if cfg.gradient_checkpointing and hasattr(transformer, "enable_gradient_checkpointing"):  # diffusers models
        transformer.enable_gradient_checkpointing()
    transformer.train()
    if cfg.compile:
        compile_blocks(transformer, cfg.compile_mode)


def compile_blocks(transformer: nn.Module, mode: str) -> None:
    """torch.compile each repeated block in place (the whole module when it has none), before any DDP or
    FSDP2 wrapping: one compiled graph per block shape, reused by every block and every step."""
    blocks = [block for blocks in distributed.block_lists(transformer) for block in blocks]
    for module in blocks or [transformer]:
        module.compile(mode=mode)


def frozen_reference(backbone: Any, device: torch.device) -> Any:
    """A frozen copy of the initial backbone (its transformer in the loaded dtype), for a method's KL term."""
    reference = copy.copy(backbone)
    reference.transformer = copy.deepcopy(backbone.transformer).to(device).requires_grad_(False).eval()
    return reference


def grad_or_zeros(p: Tensor) -> Tensor:
    return p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)


def total_norm(tensors: list[Tensor]) -> float:
    return float(distributed.full_tensor(torch.nn.utils.get_total_norm(tensors)))
