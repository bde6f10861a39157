"""The loop's step for a method that samples before it learns (``Method.updates``: the GRPO peers).

    1. sample      roll out every micro-batch of the step without gradient and score it (``MethodStep.observe``);
    2. advantages  the rewards of the whole rollout batch, gathered over ranks in sample order, go to
                   ``Method.advantages``; each micro-batch keeps its share (``LossContext.advantages``);
    3. update      ``epochs`` passes over this rank's micro-batches (permuted before each pass with ``shuffle``),
                   each split into ``minibatches`` consecutive optimiser steps. Every loss re-evaluates its trained
                   steps with the current parameters against the sampling pass's log-probabilities, so the first
                   step is on-policy (ratio 1) and the later ones see the ratio move and the clip act.

DanceGRPO (fastvideo/train_grpo_flux.py, train_one_step) is this with 3 steps per rollout of 12 samples per rank,
MixGRPO with 4, Flow-GRPO (scripts/train_flux.py) with 2 and a shuffle per inner epoch. Noise, choices and the
shuffle are functions of (seed, step, micro-batch), so a resumed run repeats them. As in the peers' scripts, an
optimiser step takes a consecutive share of every rank's micro-batches, so which samples share a step depends on
the world size (with one step per pass it does not: tests/benchmark/training/test_policy.py runs 2 ranks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from benchmark.core import distributed
from benchmark.core.engine import Trajectory, rollout
from benchmark.core.seeding import seeded
from benchmark.training.data import MicroBatch
from benchmark.training.telemetry import merge_metrics
from methods import LossContext, MethodStep

if TYPE_CHECKING:  # the trainer imports this module
    from benchmark.training.trainer import Trainer


@dataclass
class Sampled:
    """One micro-batch after the sampling pass: its plan (with the rewards it observed), trajectory and context."""

    batch: MicroBatch
    step: MethodStep
    traj: Trajectory
    ctx: LossContext


def sample_then_update(trainer: Trainer, step: int, batches: list[MicroBatch]) -> tuple[dict[str, Any], float, bool, bool]:
    """One rollout batch: sample, advantages, optimiser steps. Returns (row, largest grad norm, skipped, trained)."""
    sampled = [sample(trainer, step, mb) for mb in batches]
    share_advantages(trainer, sampled)
    updates = trainer.method.updates
    per_update = len(sampled) // updates.minibatches
    losses, rows, norms, skips, per, trained = [], [], [], [], [], False
    for epoch in range(updates.epochs):
        order = list(range(len(sampled)))
        if updates.shuffle:
            order = torch.randperm(len(sampled), generator=seeded(trainer.cfg.seed, "shuffle", step, epoch,
                                                                   trainer.env.rank)).tolist()
        for m in range(updates.minibatches):
            chunk = [sampled[i] for i in order[m * per_update:(m + 1) * per_update]]
            trainer.optimizer.zero_grad(set_to_none=True)
            chunk_losses, chunk_rows, has_grad = backward(trainer, chunk)
            trained |= has_grad
            loss = float(distributed.all_mean(torch.tensor(np.mean(chunk_losses))).item())
            grad_norm, skipped = trainer.optimizer_step(loss, has_grad)
            merged = merge_metrics(chunk_rows)
            per.append({"loss": loss, "grad_norm": grad_norm, "ratio_dev": merged["ratio_dev"],
                        "clip_frac": merged["clip_frac"]})
            losses.append(loss)
            rows += chunk_rows
            norms.append(grad_norm)
            skips.append(skipped)
    row = {"step": step, "loss": float(np.mean(losses)), **merge_metrics(rows), "updates": len(per),
           **{f"update_{key}": [u[key] for u in per] for key in per[0]}}
    return row, max(norms), any(skips), trained


def sample(trainer: Trainer, step: int, mb: MicroBatch) -> Sampled:
    """Roll out one micro-batch without gradient with the method's plan and score it (same seeds as the
    reward-gradient loop: choices by (seed, step), SDE noise and per-sample draws by (seed, step, micro-batch))."""
    cfg, method = trainer.cfg, trainer.method
    pins = {"iteration": step} if method.uses_iteration else {}
    mstep = method.start(trainer.T, seeded(cfg.seed, "choice", step), **pins)  # identical on every rank
    ctx = LossContext(model=trainer.flow, cond=mb.cond, score=trainer.scorer(mb.prompts), reference=trainer.reference,
                      generator=seeded(cfg.seed, "loss", step, mb.index, device=trainer.device))
    with torch.no_grad(), trainer.autocast:
        noise = seeded(cfg.seed, "sde", step, mb.index, device=trainer.device)
        traj = rollout(trainer.flow, mb.cond, mb.x_T, trainer.sigmas, mstep, generator=noise)
        mstep.observe(traj, ctx)
    return Sampled(mb, mstep, traj, ctx)


def share_advantages(trainer: Trainer, sampled: list[Sampled]) -> None:
    """Gather every rank's rewards (and parts) in sample order, normalise over the whole rollout batch, and hand
    each micro-batch its share."""
    scores = [s.step.observe(s.traj, s.ctx) for s in sampled]
    rewards = distributed.all_gather(torch.cat([r for r, _ in scores]).double())
    parts = {name: (distributed.all_gather(torch.cat([p[name][0] for _, p in scores]).double()), weight)
             for name, (_, weight) in scores[0][1].items()}
    advantages = trainer.method.advantages(rewards, parts)
    mine = advantages.view(trainer.env.world_size, -1)[trainer.env.rank]
    for s, share in zip(sampled, mine.split([len(r) for r, _ in scores])):
        s.ctx.advantages = share


def backward(trainer: Trainer, chunk: list[Sampled]) -> tuple[list[float], list[dict], bool]:
    """The losses of one optimiser step's micro-batches, backpropagated (gradients sync on the last one)."""
    losses, rows, has_grad = [], [], False
    for a, s in enumerate(chunk):
        with distributed.gradient_sync(trainer.model, sync=a == len(chunk) - 1):
            with trainer.autocast:
                loss, metrics = s.step.loss(s.traj, s.ctx)
            if loss.requires_grad:
                (loss / len(chunk)).backward()
                has_grad = True
        losses.append(loss.detach().float().item())
        rows.append(metrics)
    return losses, rows, has_grad
