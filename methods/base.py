"""The method protocol: a config, a ``start`` that draws one rollout's choices, and the step's hooks and loss.

A method answers the engine's per-step questions (``benchmark.core.engine.Plan``) and then builds its
differentiable x_0 from the trajectory and turns rewards into a loss. Random choices (k, j, t_min,
offsets, re-noise draws) are drawn in ``start`` from the generator it is given, or pinned by keyword, so
tests and analyses can fix every one of them.

Timesteps follow Algorithm 1: t = T is the noise, t = 1 the last sampling step, x_0 the sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

import torch
from torch import Tensor

from benchmark.core.backbones.base import TimeGrid
from benchmark.core.engine import Trajectory, VelocityModel, leap
from benchmark.core.errors import ConfigError

Scores = tuple[Tensor, dict[str, tuple[Tensor, float]]]  # total [B], {part: (unweighted scores [B], weight)}


@dataclass
class LossContext:
    """What a method's loss may use besides the trajectory.

    ``score(x0)`` decodes a sample in the engine's layout and scores it, differentiably: the rewards [B] and,
    for a weighted reward, each part as (unweighted scores [B], weight) (MixGRPO's per-reward advantages),
    all from one reward call. ``reward(x0)`` is the rewards alone; give either one (a plain ``reward`` has no
    parts). ``model``/``cond`` allow extra velocity evaluations (DRaFT-LV's re-noising); ``generator``
    draws the noise of those extras when they are not pinned. ``reference`` is a frozen copy of the initial
    model, present when the method sets ``needs_reference`` (GRPO's KL term). ``advantages`` [B]: for a
    method with ``updates``, this micro-batch's share of ``Method.advantages`` over the whole rollout batch.
    """

    model: VelocityModel
    cond: Any
    reward: Callable[[Tensor], Tensor] | None = None
    generator: torch.Generator | None = None
    reference: VelocityModel | None = None
    score: Callable[[Tensor], Scores] | None = None
    advantages: Tensor | None = None

    def __post_init__(self):
        if self.score is None:
            self.score = lambda x0: (self.reward(x0), {})
        if self.reward is None:
            self.reward = lambda x0: self.score(x0)[0]


class MethodConfig:
    """What every method's config dataclass answers besides its fields (defaults here, overridden where needed).

    ``validate(num_steps)``: the checks that need T (raise ConfigError naming the field);
    ``check_reward(reward)``: the checks that need the run's reward section (a mapping);
    ``group_size``: samples per prompt in a micro-batch (GRPO's groups; the config checks the micro-batch).
    """

    name: str
    group_size: int = 1

    def validate(self, num_steps: int) -> None:
        pass

    def check_reward(self, reward: Mapping[str, Any]) -> None:
        pass


@dataclass(frozen=True)
class Updates:
    """How a method that samples before it learns (the policy-gradient peers) uses one rollout batch.

    The loop first rolls out every micro-batch of the step without gradient and scores it
    (``MethodStep.observe``), hands the rewards of the whole batch, gathered over ranks in sample order, to
    ``Method.advantages``, and then makes ``epochs`` passes over its micro-batches, each pass split into
    ``minibatches`` consecutive optimiser steps (PPO's inner loop: the sampling pass's log-probabilities stay
    those of the old policy, so from the second step on the ratio leaves 1 and the clip acts). ``shuffle``
    permutes this rank's micro-batches before each pass (Flow-GRPO's per-epoch shuffle).
    """

    epochs: int = 1
    minibatches: int = 1
    shuffle: bool = False


class MethodStep(Protocol):
    """One training rollout of a method: the engine's plan plus the loss (see ``benchmark.core.engine.Plan``).

    With ``Method.updates`` the loop calls ``observe(traj, ctx)`` once after the sampling-only rollout (the
    rewards, without gradient, as (rewards [B], parts)) and then ``loss(traj, ctx)`` once per pass, with
    ``ctx.advantages`` set.
    """

    choices: dict[str, Any]
    carries_grad: bool
    checkpoint: bool
    diffusion: str

    def grad_on(self, t: int) -> bool: ...

    def model_input(self, t: int, x_t: Tensor, traj: Trajectory) -> Tensor: ...

    def stop_at(self, t: int) -> bool: ...

    def sde_noise(self, t: int) -> float: ...

    def loss(self, traj: Trajectory, ctx: LossContext) -> tuple[Tensor, dict[str, float]]: ...

    def observe(self, traj: Trajectory, ctx: LossContext) -> Scores: ...


class Method(Protocol):
    """A method: ``name``, ``start`` and the optional capabilities the training loop reads, with their defaults.

    ``group_size`` (1): each prompt of a micro-batch is repeated this many times, consecutively, with different
    noise (GRPO's groups); ``needs_reference`` (False): the loop hands the loss a frozen copy of the initial
    model as ``LossContext.reference``; ``uses_iteration`` (False): ``start`` receives the optimiser step as
    ``iteration=`` (MixGRPO's sliding window); ``gradient_parts()`` ({}): variants of the method whose gradients
    are parts of its own (LeapAlign: the single-step part of Eq. 18), logged as gradient norms;
    ``peak_choices(T)`` ({}): the pinned draws of the heaviest rollout (ReFL's and DRTune's earliest stop).
    ``shared_noise`` (False): the samples of a group start from one x_T (DanceGRPO's ``--init_same_noise``);
    ``time_grid`` (the backbone's schedule, sigma itself): the sigmas of the training rollouts and the time the
    model is told (``benchmark.core.backbones.base.TimeGrid``); ``updates`` (None): sample the whole batch
    first, then take several optimiser steps on it (``Updates``; needs ``advantages`` and
    ``MethodStep.observe``). None keeps the direct-gradient loop: each micro-batch's rollout carries its loss.
    Methods subclass this protocol to inherit the defaults.
    """

    name: str
    group_size: int = 1
    needs_reference: bool = False
    uses_iteration: bool = False
    shared_noise: bool = False
    time_grid: TimeGrid = TimeGrid()
    updates: Updates | None = None

    def start(self, T: int, generator: torch.Generator | None = None, **pinned: Any) -> MethodStep: ...

    def gradient_parts(self) -> dict[str, Method]:
        return {}

    def peak_choices(self, T: int) -> dict[str, Any]:
        """The pinned choices of the rollout that keeps the most in memory, for ``start`` (what ``leapbench plan``
        traces and ``bench memory`` measures: a run's peak is its heaviest step); {} where no draw changes it."""
        return {}

    def advantages(self, rewards: Tensor, parts: dict[str, tuple[Tensor, float]]) -> Tensor:
        """Per-sample advantages [N] from the rewards [N] (and parts) of a whole rollout batch (``updates`` only)."""
        raise NotImplementedError(f"{self.name} samples and learns in one pass (updates is None)")


class StepDefaults:
    """Defaults shared by the plans: plain model input, no early stop, detached trajectory, ODE steps."""

    carries_grad = False
    checkpoint = False
    diffusion = "scaled"

    def model_input(self, t: int, x_t: Tensor, traj: Trajectory) -> Tensor:
        return x_t

    def stop_at(self, t: int) -> bool:
        return False

    def sde_noise(self, t: int) -> float:
        return 0.0


def randint(low: int, high: int, generator: torch.Generator | None) -> int:
    """Algorithm 1's randint: uniform over {low, ..., high}, both ends included."""
    return int(torch.randint(low, high + 1, (1,), generator=generator).item())


def connect(x_true: Tensor, x_hat: Tensor) -> Tensor:
    """Latent connector x = x_hat + sg(x - x_hat) (supplement Eq. 11, 13).

    Written as x + (x_hat - sg(x_hat)) so that the forward value is x *exactly* (bit for bit), while
    the gradient still flows into x_hat with Jacobian 1.
    """
    return x_true.detach() + (x_hat - x_hat.detach())


def discount(x: Tensor, alpha: float) -> Tensor:
    """Gradient discounting alpha x + (1 - alpha) sg(x) (supplement Eq. 17): same value, gradient scaled by alpha."""
    return alpha * x + (1 - alpha) * x.detach()


def per_sample_l1(a: Tensor, b: Tensor) -> Tensor:
    """mean(|a - b|) per sample, in float64, without gradient (the connector distances d_j, d_0)."""
    return (a.detach().double() - b.detach().double()).abs().flatten(1).mean(dim=1)


def check_steps(field: str, value: int, low: int, high: int) -> None:
    if not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(field, f"an integer in [{low}, {high}]", value)


def one_step_loss(traj: Trajectory, t: int, ctx: LossContext, choices: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
    """-r(x_0) with x_0 predicted in one step from timestep t (Algorithm 1 line 25): ReFL and DRTune."""
    x0 = leap(traj.x[t], traj.v[t], traj.sigma(t), traj.sigmas[-1])
    r = ctx.reward(x0)
    return -r.mean(), {**reward_metrics(r), **choices}


def reward_metrics(rewards: Tensor) -> dict[str, float]:
    r = rewards.detach().double()
    return {"reward_mean": r.mean().item(), "reward_std": r.std(unbiased=False).item()}
