"""GRPO for flow models: the policy-gradient peers (Flow-GRPO, DanceGRPO, MixGRPO) in the method protocol.

The rollout samples with the reverse SDE of ``benchmark.core.engine`` (same marginals as the flow ODE) so that
each step x_t -> x_{t-1} is a Gaussian policy pi_theta(x_{t-1} | x_t) = N(mean_theta, std^2 I), and the
reward is only ever evaluated, never differentiated: any scorer works (GenEval correctness, UnifiedReward,
weighted sums).

    Groups (DanceGRPO Sec. 3, Flow-GRPO Eq. 4): the loop repeats each prompt G times with different noise;
        A_i = clip((r_i - mean_group(r)) / (std_group(r) + eps), -adv_clip, adv_clip)
    with the unbiased group std as in DanceGRPO. With ``advantage: per_reward`` (MixGRPO's advantage
    aggregation) each part k of a weighted reward is normalised on its own and A_i = sum_k w_k A_i^k.

    Clipped surrogate (PPO; Flow-GRPO Eq. 5, DanceGRPO Eq. 7), per sample i and trained step t:
        rho = exp(log pi_theta(x_{t-1} | x_t) - log pi_old(x_{t-1} | x_t))
        L   = -min(rho A, clip(rho, 1 - eps_clip, 1 + eps_clip) A) + beta KL_t
        KL_t = ||mean_theta - mean_ref||^2 / (2 std^2)   (the Gaussian KL of the two transitions)
    averaged over the samples and the trained steps. As in the peers' code, log-probabilities and KL are
    divided by the number of dimensions D of x (a per-dimension ratio), else rho = exp(O(D)) saturates.

    Trained steps (DanceGRPO's timestep_fraction): floor(fraction * n) of the n SDE steps, random per
    rollout (one subset for the whole micro-batch) or the first (highest-noise) ones.

    MixGRPO (Li et al. 2025, Sec. 3.2): with ``window`` only ``size`` consecutive steps are SDE steps, the
    others are ODE steps; the window starts at the first step and its start advances by ``stride`` every
    ``shift_every`` optimiser steps (back to the start past the end when ``roll_back``).

Old policy: rollout and update use the same parameters (one update per rollout, no inner epochs), so the
old log-probabilities are the sampling pass's (``Trajectory.logprob``, detached) and rho = 1 at the update;
the gradient is then A grad log pi (the clip acts only when pi_old differs, e.g. pinned in tests).
Memory: the rollout runs without gradient; the loss re-evaluates the velocity with gradient at the stored
x_t of the trained steps only (with ``checkpoint`` their activations are recomputed in backward).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint as activation_checkpoint

from benchmark.core.engine import Trajectory, gaussian_logprob, sde_step, step_kl
from benchmark.core.errors import ConfigError
from methods.base import LossContext, Method, MethodConfig, StepDefaults, reward_metrics

EPS = 1e-8  # in the advantage denominator (DanceGRPO)
ADVANTAGES = ("reward", "per_reward")
TRAIN_STEPS = ("random", "first")


@dataclass
class WindowConfig:
    """MixGRPO's sliding window of SDE steps (its defaults: 4 steps, moved by 1 every 25 iterations)."""

    size: int = 4
    shift_every: int = 25
    stride: int = 1
    roll_back: bool = True

    def __post_init__(self):
        for name in ("size", "shift_every", "stride"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"method.window.{name}", "an integer >= 1", value)

    def steps(self, T: int, iteration: int) -> tuple[int, ...]:
        """The SDE timesteps at optimiser step ``iteration`` (1-based): sampler indices start .. start + size - 1."""
        last = T - self.size  # the last window start
        moves = (iteration - 1) // self.shift_every
        if self.roll_back:
            start = self.stride * (moves % (last // self.stride + 1))
        else:
            start = min(self.stride * moves, last)
        return tuple(T - i for i in range(start, start + self.size))


@dataclass
class GRPOConfig(MethodConfig):
    name: Literal["grpo"] = "grpo"
    group_size: int = 12  # G samples per prompt (DanceGRPO: 12)
    eta: float = 0.3  # SDE noise level (DanceGRPO 0.3, MixGRPO 0.7)
    clip_range: float = 1e-4  # eps_clip of the ratio (DanceGRPO, Flow-GRPO: 1e-4)
    adv_clip: float = 5.0  # |A| <= adv_clip (DanceGRPO's adv_clip_max)
    train_fraction: float = 0.6  # fraction of the SDE steps trained per rollout (DanceGRPO 0.6)
    train_steps: str = "random"  # random subset, or the first (highest-noise) SDE steps
    kl_weight: float = 0.0  # beta; > 0 loads a frozen reference model
    advantage: str = "reward"  # reward: of the (weighted) total; per_reward: MixGRPO's aggregation
    window: WindowConfig | None = None  # MixGRPO; None = SDE at every step
    checkpoint: bool = False  # recompute the trained steps' activations in backward

    def __post_init__(self):
        if isinstance(self.window, Mapping):
            self.window = WindowConfig(**self.window)
        if isinstance(self.group_size, bool) or not isinstance(self.group_size, int) or self.group_size < 2:
            raise ConfigError("method.group_size", "an integer >= 2 (samples per prompt)", self.group_size)
        check_number("method.eta", self.eta, "a number > 0", lambda v: v > 0)
        check_number("method.clip_range", self.clip_range, "a number in (0, 1)", lambda v: 0 < v < 1)
        check_number("method.adv_clip", self.adv_clip, "a number > 0", lambda v: v > 0)
        check_number("method.train_fraction", self.train_fraction, "a number in (0, 1]", lambda v: 0 < v <= 1)
        check_number("method.kl_weight", self.kl_weight, "a number >= 0", lambda v: v >= 0)
        if self.train_steps not in TRAIN_STEPS:
            raise ConfigError("method.train_steps", f"one of {', '.join(TRAIN_STEPS)}", self.train_steps)
        if self.advantage not in ADVANTAGES:
            raise ConfigError("method.advantage", f"one of {', '.join(ADVANTAGES)}", self.advantage)

    def check_reward(self, reward: Mapping[str, Any]) -> None:
        """Per-reward advantages need a weighted reward (``run.reward``, checked by ``check_run``)."""
        if self.advantage == "per_reward" and reward.get("name") != "weighted":
            raise ConfigError("method.advantage", "reward unless reward.name is weighted (per_reward needs its parts)",
                              "per_reward")

    def validate(self, num_steps: int) -> None:
        if self.window is not None and self.window.size > num_steps:
            raise ConfigError("method.window.size", f"at most schedule.num_steps ({num_steps})", self.window.size)


def check_number(field: str, value: Any, expected: str, ok) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
        raise ConfigError(field, expected, value)


def group_advantages(r: Tensor, G: int) -> Tensor:
    """(r - group mean) / (group std + eps) over consecutive groups of G samples, in float64: [B]."""
    groups = r.detach().double().view(-1, G)
    return ((groups - groups.mean(1, keepdim=True)) / (groups.std(1, keepdim=True) + EPS)).flatten()


def clipped_objective(ratio: Tensor, A: Tensor, clip_range: float) -> Tensor:
    """PPO's clipped surrogate as a loss: -min(rho A, clip(rho, 1 - eps, 1 + eps) A), elementwise."""
    return -torch.minimum(ratio * A, ratio.clamp(1 - clip_range, 1 + clip_range) * A)


class GRPOStep(StepDefaults):
    def __init__(self, cfg: GRPOConfig, sde: tuple[int, ...], trained: tuple[int, ...],
                 old_logprob: Mapping[int, Tensor] | None, advantages: Tensor | None, window_start: int | None):
        self.cfg, self.sde, self.trained = cfg, frozenset(sde), trained
        self.old_logprob, self.advantages = old_logprob, advantages
        self.checkpoint = cfg.checkpoint
        self.choices: dict[str, Any] = {"trained_steps": list(trained)}
        if window_start is not None:  # MixGRPO: which steps were stochastic
            self.choices.update(window_start=window_start, sde_steps=sorted(sde, reverse=True))

    def grad_on(self, t: int) -> bool:
        return False  # the rollout is sampling only; the loss re-evaluates the trained steps

    def sde_noise(self, t: int) -> float:
        return self.cfg.eta if t in self.sde else 0.0

    def loss(self, traj: Trajectory, ctx: LossContext) -> tuple[Tensor, dict[str, Any]]:
        cfg = self.cfg
        with torch.no_grad():
            r, parts = ctx.score(traj.x0)
        r = r.detach()
        A = self.advantages if self.advantages is not None else self.advantage(r, parts)
        A = A.to(r.device, torch.float64).clamp(-cfg.adv_clip, cfg.adv_clip)
        D = traj.x0[0].numel()
        terms, ratios, kls = [], [], []
        for t in self.trained:
            sigma, sigma_next = traj.sigma(t), traj.sigma(t - 1)
            x_t, x_prev = traj.x[t], traj.x[t - 1]
            if cfg.checkpoint:
                v = activation_checkpoint(ctx.model.velocity, x_t, sigma, ctx.cond, use_reentrant=False)
            else:
                v = ctx.model.velocity(x_t, sigma, ctx.cond)
            mean, std = sde_step(x_t, v, sigma, sigma_next, traj.eta[t])
            logp = gaussian_logprob(x_prev, mean, std) / D
            old = (self.old_logprob or traj.logprob)[t].to(logp) / D
            ratio = torch.exp(logp.double() - old.double())
            term = clipped_objective(ratio, A, cfg.clip_range)
            if cfg.kl_weight > 0:
                with torch.no_grad():
                    mean_ref, _ = sde_step(x_t, ctx.reference.velocity(x_t, sigma, ctx.cond), sigma, sigma_next,
                                           traj.eta[t])
                kl = step_kl(mean, mean_ref, std).double() / D
                term = term + cfg.kl_weight * kl
                kls.append(kl.detach())
            terms.append(term)
            ratios.append(ratio.detach())
        loss = torch.stack(terms).mean()
        rho = torch.stack(ratios)
        metrics = {**reward_metrics(r), "advantage_abs": A.abs().mean().item(),
                   "ratio_dev": (rho - 1).abs().max().item(),
                   "clip_frac": ((rho - 1).abs() > cfg.clip_range).double().mean().item(), **self.choices}
        if kls:
            metrics["kl"] = torch.stack(kls).mean().item()
        return loss, metrics

    def advantage(self, r: Tensor, parts: Mapping[str, tuple[Tensor, float]]) -> Tensor:
        """Group-relative advantages of the rewards ``r``, or the weighted sum of each part's (per_reward)."""
        G = self.cfg.group_size
        if len(r) % G:
            raise ConfigError("schedule.micro_batch", f"a multiple of method.group_size ({G})", len(r))
        if self.cfg.advantage == "reward":
            return group_advantages(r, G)
        if not parts:
            raise ConfigError("method.advantage", "reward unless the reward is weighted (it has no parts)",
                              "per_reward")
        return sum(w * group_advantages(scores, G) for scores, w in parts.values())


class GRPO(Method):
    name = "grpo"
    uses_iteration = True

    def __init__(self, cfg: GRPOConfig):
        self.cfg = cfg
        self.group_size = cfg.group_size
        self.needs_reference = cfg.kl_weight > 0

    def start(
        self,
        T: int,
        generator: torch.Generator | None = None,
        iteration: int = 1,
        trained: Sequence[int] | None = None,
        old_logprob: Mapping[int, Tensor] | None = None,
        advantages: Tensor | None = None,
    ) -> GRPOStep:
        """Pins: ``trained`` (timesteps), ``old_logprob`` ({t: [B]} log pi_old), ``advantages`` ([B], before clipping)."""
        cfg = self.cfg
        cfg.validate(T)
        sde = cfg.window.steps(T, iteration) if cfg.window is not None else tuple(range(T, 0, -1))
        if trained is None:
            n = max(1, math.floor(cfg.train_fraction * len(sde) + 1e-9))
            order = torch.randperm(len(sde), generator=generator)[:n] if cfg.train_steps == "random" else range(n)
            trained = [sde[int(i)] for i in order]
        trained = tuple(sorted(trained, reverse=True))
        if not trained or any(t not in sde for t in trained):
            raise ConfigError("trained", f"timesteps among the SDE steps {list(sde)}", list(trained))
        window_start = T - sde[0] if cfg.window is not None else None
        return GRPOStep(cfg, sde, trained, old_logprob, advantages, window_start)


__all__ = ["GRPO", "GRPOConfig", "WindowConfig", "clipped_objective", "group_advantages"]
