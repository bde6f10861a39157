"""Full backpropagation through the sampler: the AlignProp / DRaFT-K baseline.

The last K steps (all T when ``last_k`` is None) keep their velocities and the state carries the graph,
so the gradient of -r(x_0) flows through every Jacobian dx_{t-1}/dx_t of those steps:

    x_{t-1} = x_t + (sigma_{t-1} - sigma_t) v_theta(x_t),   t = K, ..., 1   (no stop-gradient anywhere)

Memory grows linearly with K; with ``checkpoint`` each kept evaluation is recomputed in the backward
pass (DRaFT's gradient checkpointing), so only the states are stored. Loss: -r(x_0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from benchmark.core.engine import Trajectory
from benchmark.core.errors import ConfigError
from methods.base import LossContext, Method, MethodConfig, StepDefaults, check_steps, reward_metrics


@dataclass
class FullBackpropConfig(MethodConfig):
    name: Literal["full_backprop"] = "full_backprop"
    last_k: int | None = None  # backpropagate through the last K steps; None = the whole trajectory
    checkpoint: bool = True

    def __post_init__(self):
        if self.last_k is not None and (not isinstance(self.last_k, int) or self.last_k < 1):
            raise ConfigError("method.last_k", "an integer >= 1 or null (all steps)", self.last_k)

    def validate(self, num_steps: int) -> None:
        if self.last_k is not None:
            check_steps("method.last_k", self.last_k, 1, num_steps)


class FullBackpropStep(StepDefaults):
    carries_grad = True

    def __init__(self, K: int, checkpoint: bool):
        self.K, self.checkpoint = K, checkpoint
        self.choices: dict[str, Any] = {"K": K}

    def grad_on(self, t: int) -> bool:
        return t <= self.K

    def loss(self, traj: Trajectory, ctx: LossContext) -> tuple[Tensor, dict[str, Any]]:
        r = ctx.reward(traj.x0)
        return -r.mean(), {**reward_metrics(r), **self.choices}


class FullBackprop(Method):
    name = "full_backprop"

    def __init__(self, cfg: FullBackpropConfig):
        self.cfg = cfg

    def start(self, T: int, generator: torch.Generator | None = None) -> FullBackpropStep:
        self.cfg.validate(T)
        return FullBackpropStep(self.cfg.last_k or T, self.cfg.checkpoint)
