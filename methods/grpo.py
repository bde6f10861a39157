"""GRPO for flow models: the policy-gradient peers (DanceGRPO, MixGRPO, Flow-GRPO) in the method protocol.

The rollout samples with the reverse SDE of ``benchmark.core.engine`` (same marginals as the flow ODE) so that
each step x_t -> x_{t-1} is a Gaussian policy pi_theta(x_{t-1} | x_t) = N(mean_theta, std^2 I), and the
reward is only ever evaluated, never differentiated: any scorer works (GenEval correctness, UnifiedReward,
weighted sums). ``diffusion`` picks the SDE's coefficient: Flow-GRPO's eta sqrt(s / (1 - s)) ("scaled", also
MixGRPO's) or DanceGRPO's constant eta.

    Groups (DanceGRPO Sec. 3, Flow-GRPO Eq. 4): the loop repeats each prompt G times (``shared_noise``: from
    one x_T, DanceGRPO's and MixGRPO's --init_same_noise); over the whole rollout batch
        A_i = clip((r_i - mean_group(r)) / S, -adv_clip, adv_clip)
    with S = the group's unbiased std + 1e-8 (``advantage_std: group``, DanceGRPO, MixGRPO) or the population
    std of every reward of the batch + 1e-4 (``global``, Flow-GRPO's global_std). With ``advantage: per_reward``
    (MixGRPO's advantage aggregation) each part k of a weighted reward is normalised on its own and
    A_i = sum_k w_k A_i^k.

    Clipped surrogate (PPO; Flow-GRPO Eq. 5, DanceGRPO Eq. 7), per sample i and trained step t:
        rho = exp(log pi_theta(x_{t-1} | x_t) - log pi_old(x_{t-1} | x_t))
        L   = -min(rho A, clip(rho, 1 - eps_clip, 1 + eps_clip) A) + beta KL_t
    averaged over the samples and their trained steps. As in the peers' code, log-probabilities and KL are
    divided by the number of dimensions D of x (a per-dimension ratio), else rho = exp(O(D)) saturates.
    ``kl_form: exact``: KL_t = ||mean_theta - mean_ref||^2 / (2 std^2 D), the Gaussian KL of the two
    transitions; ``flow_grpo``: ||mean_theta - mean_ref||^2 / (2 sigma_t^2 D), without the step length
    (Flow-GRPO's scripts/train_flux.py).

    Trained steps: the SDE steps except the last ``exclude_last`` of the trajectory (DanceGRPO never trains the
    last step, MixGRPO not the last two); int(fraction * n) of those n, one random subset for the whole
    rollout (``random``), a random subset per sample (``per_sample``, DanceGRPO's per-sample permutation), or
    the first, highest-noise ones (``first``, Flow-GRPO).

    MixGRPO (Li et al. 2025, Sec. 3.2): with ``window`` only ``size`` consecutive steps are SDE steps, the
    others are ODE steps; the window starts at the first step and its start advances by ``stride`` every
    ``shift_every`` rollouts (back to the start past the last trainable step when ``roll_back``).

Old policy: the loop samples and scores the whole rollout batch first (``observe``), the method normalises the
advantages over it (``GRPO.advantages``), and the loop then takes ``minibatches`` optimiser steps per pass over
it, ``epochs`` passes (``methods.base.Updates``). The old log-probabilities are the sampling pass's
(``Trajectory.logprob``), so rho = 1 at the first optimiser step and leaves 1 from the second on, where the clip
acts. The reward is scored on the sample x_0 or, with ``reward_on: prediction``, on the last step's one-step
prediction x_1 - sigma_1 v(x_1) (DanceGRPO). ``schedule_shift`` and ``timestep_levels`` give the training
rollouts DanceGRPO's and MixGRPO's grid: a static shift of 3 and the model told int(1000 sigma) / 1000.
Memory: the rollout runs without gradient; the loss re-evaluates the velocity with gradient at the stored x_t
of the trained steps only (with ``checkpoint`` their activations are recomputed in backward).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Mapping, Sequence

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint as activation_checkpoint

from benchmark.core.backbones.base import TimeGrid
from benchmark.core.engine import DIFFUSIONS, Trajectory, gaussian_logprob, leap, sde_sigma, sde_step, select, step_kl
from benchmark.core.errors import ConfigError
from methods.base import LossContext, Method, MethodConfig, Scores, StepDefaults, Updates, reward_metrics
from methods.grpo_presets import PRESETS

EPS = 1e-8  # in the group std's denominator (DanceGRPO, MixGRPO)
GLOBAL_EPS = 1e-4  # in the global std's denominator (Flow-GRPO's PerPromptStatTracker)
ADVANTAGES = ("reward", "per_reward")
ADVANTAGE_STDS = ("group", "global")
TRAIN_STEPS = ("random", "first", "per_sample")
REWARD_ON = ("sample", "prediction")
KL_FORMS = ("exact", "flow_grpo")


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

    def steps(self, T: int, iteration: int, exclude_last: int = 0) -> tuple[int, ...]:
        """The SDE timesteps at rollout ``iteration`` (1-based): sampler indices start .. start + size - 1, inside
        the first T - exclude_last steps."""
        last = T - exclude_last - self.size  # the last window start
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
    eta: float = 0.3  # SDE noise level (DanceGRPO 0.3, MixGRPO 0.7, Flow-GRPO's FLUX 0.9)
    diffusion: str = "scaled"  # g(s): scaled = eta sqrt(s / (1 - s)) (Flow-GRPO, MixGRPO); constant = eta (DanceGRPO)
    shared_noise: bool = False  # the samples of a group start from one x_T (DanceGRPO, MixGRPO)
    clip_range: float = 1e-4  # eps_clip of the ratio (DanceGRPO, Flow-GRPO: 1e-4)
    adv_clip: float = 5.0  # |A| <= adv_clip (DanceGRPO's adv_clip_max)
    train_fraction: float = 0.6  # fraction of the trainable SDE steps trained per sample (DanceGRPO 0.6)
    train_steps: str = "random"  # random subset per rollout, per_sample, or the first (highest-noise) steps
    exclude_last: int = 0  # the last k steps are never trained (DanceGRPO 1, MixGRPO 2)
    epochs: int = 1  # passes over each rollout batch (Flow-GRPO's num_inner_epochs)
    minibatches: int = 1  # optimiser steps per pass (DanceGRPO 3, MixGRPO 4, Flow-GRPO 2)
    shuffle: bool = False  # permute the micro-batches before each pass (Flow-GRPO)
    schedule_shift: float | None = None  # None: the backbone's schedule; s: static shift (DanceGRPO, MixGRPO: 3)
    timestep_levels: int = 0  # 0: the model is told sigma; N: int(N sigma) / N (DanceGRPO, MixGRPO: 1000)
    reward_on: str = "sample"  # sample: x_0; prediction: x_1 - sigma_1 v(x_1) (DanceGRPO)
    kl_weight: float = 0.0  # beta; > 0 loads a frozen reference model
    kl_form: str = "exact"  # exact Gaussian KL, or flow_grpo (no step length)
    advantage: str = "reward"  # reward: of the (weighted) total; per_reward: MixGRPO's aggregation
    advantage_std: str = "group"  # group: unbiased std + 1e-8 (DanceGRPO); global: population std + 1e-4 (Flow-GRPO)
    window: WindowConfig | None = None  # MixGRPO; None = SDE at every step
    checkpoint: bool = False  # recompute the trained steps' activations in backward
    preset: str | None = None  # dancegrpo, mixgrpo, flowgrpo: a peer's recipe (methods.grpo_presets)

    presets: ClassVar[dict[str, dict]] = PRESETS

    def __post_init__(self):
        if isinstance(self.window, Mapping):
            self.window = WindowConfig(**self.window)
        if self.preset is not None and self.preset not in PRESETS:
            raise ConfigError("method.preset", f"one of {', '.join(PRESETS)} (or null)", self.preset)
        for field, low in (("group_size", 2), ("epochs", 1), ("minibatches", 1), ("exclude_last", 0),
                           ("timestep_levels", 0)):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"method.{field}", f"an integer >= {low}", value)
        check_number("method.eta", self.eta, "a number > 0", lambda v: v > 0)
        check_number("method.clip_range", self.clip_range, "a number in (0, 1)", lambda v: 0 < v < 1)
        check_number("method.adv_clip", self.adv_clip, "a number > 0", lambda v: v > 0)
        check_number("method.train_fraction", self.train_fraction, "a number in (0, 1]", lambda v: 0 < v <= 1)
        check_number("method.kl_weight", self.kl_weight, "a number >= 0", lambda v: v >= 0)
        if self.schedule_shift is not None:
            check_number("method.schedule_shift", self.schedule_shift, "a number > 0 or null", lambda v: v > 0)
        for field, choices in (("diffusion", DIFFUSIONS), ("train_steps", TRAIN_STEPS), ("reward_on", REWARD_ON),
                               ("kl_form", KL_FORMS), ("advantage", ADVANTAGES), ("advantage_std", ADVANTAGE_STDS)):
            if getattr(self, field) not in choices:
                raise ConfigError(f"method.{field}", f"one of {', '.join(choices)}", getattr(self, field))

    def check_reward(self, reward: Mapping[str, Any]) -> None:
        """Per-reward advantages need a weighted reward (``run.reward``, checked by ``check_run``)."""
        if self.advantage == "per_reward" and reward.get("name") != "weighted":
            raise ConfigError("method.advantage", "reward unless reward.name is weighted (per_reward needs its parts)",
                              "per_reward")

    def validate(self, num_steps: int) -> None:
        if self.exclude_last >= num_steps:
            raise ConfigError("method.exclude_last", f"less than schedule.num_steps ({num_steps})", self.exclude_last)
        room = num_steps - self.exclude_last
        if self.window is not None and self.window.size > room:
            steps = "schedule.num_steps" + (" - method.exclude_last" if self.exclude_last else "")
            raise ConfigError("method.window.size", f"at most {steps} ({room})", self.window.size)


def check_number(field: str, value: Any, expected: str, ok) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
        raise ConfigError(field, expected, value)


def group_advantages(r: Tensor, G: int) -> Tensor:
    """(r - group mean) / (group unbiased std + 1e-8) over consecutive groups of G samples, in float64: [B]."""
    groups = r.detach().double().view(-1, G)
    return ((groups - groups.mean(1, keepdim=True)) / (groups.std(1, keepdim=True) + EPS)).flatten()


def global_advantages(r: Tensor, G: int) -> Tensor:
    """(r - group mean) / (population std of all of r + 1e-4), in float64: [B] (Flow-GRPO's global_std)."""
    groups = r.detach().double().view(-1, G)
    return ((groups - groups.mean(1, keepdim=True)) / (groups.std(unbiased=False) + GLOBAL_EPS)).flatten()


NORMALISE = {"group": group_advantages, "global": global_advantages}


def clipped_objective(ratio: Tensor, A: Tensor, clip_range: float) -> Tensor:
    """PPO's clipped surrogate as a loss: -min(rho A, clip(rho, 1 - eps, 1 + eps) A), elementwise."""
    return -torch.minimum(ratio * A, ratio.clamp(1 - clip_range, 1 + clip_range) * A)


class GRPOStep(StepDefaults):
    def __init__(self, method: GRPO, sde: tuple[int, ...], trainable: tuple[int, ...],
                 trained: tuple[int, ...] | Tensor | None, old_logprob: Mapping[int, Tensor] | None,
                 advantages: Tensor | None, window_start: int | None):
        """``trained``: the timesteps every sample trains (a tuple), one row of them per sample ([B, n]), or None
        (``per_sample``: drawn on first use)."""
        self.method, self.cfg = method, method.cfg
        self.sde, self.trainable = frozenset(sde), trainable
        self.trained = trained if isinstance(trained, tuple) else None
        self.table = [tuple(row) for row in trained.tolist()] if isinstance(trained, Tensor) else None
        self.old_logprob, self.advantages = old_logprob, advantages
        self.checkpoint, self.diffusion = self.cfg.checkpoint, self.cfg.diffusion
        self.scores: Scores | None = None
        self.choices: dict[str, Any] = {}
        if window_start is not None:  # MixGRPO: which steps were stochastic
            self.choices.update(window_start=window_start, sde_steps=sorted(sde, reverse=True))

    def grad_on(self, t: int) -> bool:
        return False  # the rollout is sampling only; the loss re-evaluates the trained steps

    def sde_noise(self, t: int) -> float:
        return self.cfg.eta if t in self.sde else 0.0

    def observe(self, traj: Trajectory, ctx: LossContext) -> Scores:
        """The rewards (and parts) of the sampled x_0 or of the last step's x_0 prediction, without gradient."""
        if self.scores is None:
            x0 = traj.x0 if self.cfg.reward_on == "sample" else leap(traj.x[1], traj.v[1], traj.sigma(1), traj.sigmas[-1])
            with torch.no_grad():
                r, parts = ctx.score(x0)
            self.scores = r.detach(), {k: (s.detach(), w) for k, (s, w) in parts.items()}
        return self.scores

    def trained_steps(self, B: int, generator: torch.Generator | None) -> list[tuple[int, ...]]:
        """The timesteps trained per sample (B rows of n, as Python ints: which steps to evaluate is decided on the
        host); ``per_sample`` draws them on first use from the micro-batch's generator, as DanceGRPO does:
        ``torch.randperm`` of the trainable steps per sample, its first n entries."""
        if self.trained is not None:
            return [self.trained] * B
        if self.table is None:
            n = trained_count(self.cfg.train_fraction, len(self.trainable))
            device = generator.device if generator is not None else "cpu"
            draws = [torch.randperm(len(self.trainable), generator=generator, device=device)[:n].tolist()
                     for _ in range(B)]
            self.table = [tuple(self.trainable[i] for i in row) for row in draws]
        if len(self.table) != B:
            raise ConfigError("trained", f"one row of timesteps per sample ({B})", self.table)
        return self.table

    def loss(self, traj: Trajectory, ctx: LossContext) -> tuple[Tensor, dict[str, Any]]:
        cfg = self.cfg
        r, parts = self.observe(traj, ctx)
        A = ctx.advantages if ctx.advantages is not None else self.advantages
        if A is None:
            A = self.advantage(r, parts)
        A = A.to(r.device, torch.float64).clamp(-cfg.adv_clip, cfg.adv_clip)
        table = self.trained_steps(len(r), ctx.generator)
        terms, ratios, kls = [], [], []
        for t in sorted({t for row in table for t in row}, reverse=True):
            rows = [i for i, row in enumerate(table) if t in row]
            index = None if len(rows) == len(table) else torch.tensor(rows, device=r.device)
            term, ratio, kl = self.step_loss(traj, ctx, t, index, A if index is None else A[index])
            terms.append(term)
            ratios.append(ratio.detach())
            if kl is not None:
                kls.append(kl.detach())
        loss = torch.cat(terms).mean()
        rho = torch.cat(ratios)
        metrics = {**reward_metrics(r), "advantage_abs": A.abs().mean().item(),
                   "ratio_dev": (rho - 1).abs().max().item(),
                   "clip_frac": ((rho - 1).abs() > cfg.clip_range).double().mean().item(),
                   "trained_steps": sorted({t for row in table for t in row}, reverse=True),
                   **self.choices}
        if kls:
            metrics["kl"] = torch.cat(kls).mean().item()
        return loss, metrics

    def step_loss(self, traj: Trajectory, ctx: LossContext, t: int, index: Tensor | None,
                  A: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """The clipped term (and ratio, KL) of step t for the samples ``index`` (None: all of them)."""
        cfg = self.cfg
        pick = (lambda x: x) if index is None else (lambda x: x[index])
        sigma, sigma_next, eta = traj.sigma(t), traj.sigma(t - 1), traj.eta[t]
        x_t, x_prev = pick(traj.x[t]), pick(traj.x[t - 1])
        cond = ctx.cond if index is None else select(ctx.cond, index)
        if cfg.checkpoint:
            v = activation_checkpoint(ctx.model.velocity, x_t, sigma, cond, use_reentrant=False)
        else:
            v = ctx.model.velocity(x_t, sigma, cond)
        mean, std = sde_step(x_t, v, sigma, sigma_next, eta, cfg.diffusion)
        D = x_t[0].numel()
        logp = gaussian_logprob(x_prev, mean, std) / D
        old = pick((self.old_logprob or traj.logprob)[t]).to(logp) / D
        ratio = torch.exp(logp.double() - old.double())
        term = clipped_objective(ratio, A, cfg.clip_range)
        if cfg.kl_weight == 0:
            return term, ratio, None
        with torch.no_grad():
            mean_ref, _ = sde_step(x_t, ctx.reference.velocity(x_t, sigma, cond), sigma, sigma_next, eta, cfg.diffusion)
        if cfg.kl_form == "exact":
            kl = step_kl(mean, mean_ref, std).double() / D
        else:  # Flow-GRPO: mean over dimensions of (mean - mean_ref)^2 / (2 std_dev_t^2), std_dev_t without sqrt(dt)
            g = sde_sigma(sigma, sigma_next, eta, cfg.diffusion)
            kl = (mean - mean_ref).double().pow(2).flatten(1).mean(1) / (2 * g**2)
        return term + cfg.kl_weight * kl, ratio, kl

    def advantage(self, r: Tensor, parts: Mapping[str, tuple[Tensor, float]]) -> Tensor:
        """Advantages of this micro-batch alone (without a loop that normalises over the whole rollout batch)."""
        if len(r) % self.cfg.group_size:
            raise ConfigError("schedule.micro_batch", f"a multiple of method.group_size ({self.cfg.group_size})", len(r))
        return self.method.advantages(r, parts)


def trained_count(fraction: float, n: int) -> int:
    """int(fraction * n), at least 1: the peers' ``int(len(timesteps) * timestep_fraction)``."""
    return max(1, int(fraction * n))


class GRPO(Method):
    name = "grpo"
    uses_iteration = True

    def __init__(self, cfg: GRPOConfig):
        self.cfg = cfg
        self.group_size = cfg.group_size
        self.needs_reference = cfg.kl_weight > 0
        self.shared_noise = cfg.shared_noise
        self.time_grid = TimeGrid(cfg.schedule_shift, cfg.timestep_levels)
        self.updates = Updates(cfg.epochs, cfg.minibatches, cfg.shuffle)

    def start(
        self,
        T: int,
        generator: torch.Generator | None = None,
        iteration: int = 1,
        trained: Sequence[int] | Sequence[Sequence[int]] | None = None,
        old_logprob: Mapping[int, Tensor] | None = None,
        advantages: Tensor | None = None,
    ) -> GRPOStep:
        """Pins: ``trained`` (timesteps, or one list per sample), ``old_logprob`` ({t: [B]} log pi_old),
        ``advantages`` ([B], before clipping)."""
        cfg = self.cfg
        sde, trainable = self.sde_steps(T, iteration)
        if trained is None and cfg.train_steps != "per_sample":
            n = trained_count(cfg.train_fraction, len(trainable))
            order = torch.randperm(len(trainable), generator=generator)[:n] if cfg.train_steps == "random" else range(n)
            trained = [trainable[int(i)] for i in order]
        if trained is not None:
            steps = torch.tensor(trained, dtype=torch.long).sort(dim=-1, descending=True).values
            if steps.numel() == 0 or steps.dim() > 2 or any(t not in trainable for t in steps.flatten().tolist()):
                raise ConfigError("trained", f"timesteps among the trainable SDE steps {list(trainable)}",
                                  steps.tolist())
            trained = tuple(steps.tolist()) if steps.dim() == 1 else steps
        window_start = T - sde[0] if cfg.window is not None else None
        return GRPOStep(self, sde, trainable, trained, old_logprob, advantages, window_start)

    def sde_steps(self, T: int, iteration: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The rollout's stochastic steps (MixGRPO: its window at ``iteration``) and the trainable ones among them."""
        cfg = self.cfg
        cfg.validate(T)
        sde = cfg.window.steps(T, iteration, cfg.exclude_last) if cfg.window is not None else tuple(range(T, 0, -1))
        return sde, tuple(t for t in sde if t > cfg.exclude_last)

    def peak_choices(self, T: int) -> dict[str, Any]:
        """The first rollout (MixGRPO's first window) training its first n trainable steps on every sample: every
        draw trains n evaluations per sample (a per-sample draw spreads the same count over the rows)."""
        _, trainable = self.sde_steps(T, 1)
        return {"iteration": 1, "trained": list(trainable[:trained_count(self.cfg.train_fraction, len(trainable))])}

    def advantages(self, rewards: Tensor, parts: Mapping[str, tuple[Tensor, float]]) -> Tensor:
        """Group-relative advantages of a rollout batch (groups: G consecutive samples), or the weighted sum of each
        part's (per_reward)."""
        G, normalise = self.cfg.group_size, NORMALISE[self.cfg.advantage_std]
        if len(rewards) % G:
            raise ConfigError("schedule.global_batch", f"a multiple of method.group_size ({G})", len(rewards))
        if self.cfg.advantage == "reward":
            return normalise(rewards, G)
        if not parts:
            raise ConfigError("method.advantage", "reward unless the reward is weighted (it has no parts)",
                              "per_reward")
        return sum(w * normalise(scores, G) for scores, w in parts.values())


__all__ = ["GRPO", "GRPOConfig", "PRESETS", "WindowConfig", "clipped_objective", "global_advantages",
           "group_advantages"]
