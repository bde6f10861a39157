"""ReFL (Xu et al., ImageReward), adapted to flow matching as in the LeapAlign supplement, Algorithm 1.

Roll out without gradient down to an early-stop timestep t_min = randint(1, m) (line 2), evaluate the
velocity there with gradient (line 10) and predict the sample in one step (line 25, Eq. 9):

    x_0 ~= x_{t_min} - sigma_{t_min} * v_theta(x_{t_min})

Loss: -r(x_0) (line 41, w = 1). The paper draws t_min from the last m = 11 of T = 25 steps (A5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from benchmark.core.engine import Trajectory
from benchmark.core.errors import ConfigError
from methods.base import LossContext, Method, MethodConfig, StepDefaults, check_steps, one_step_loss, randint


@dataclass
class ReFLConfig(MethodConfig):
    name: Literal["refl"] = "refl"
    m: int = 11  # early-stop range: t_min ~ randint(1, m)

    def __post_init__(self):
        if not isinstance(self.m, int) or self.m < 1:
            raise ConfigError("method.m", "an integer >= 1 (early-stop range)", self.m)

    def validate(self, num_steps: int) -> None:
        check_steps("method.m", self.m, 1, num_steps)


class ReFLStep(StepDefaults):
    def __init__(self, t_min: int):
        self.t_min = t_min
        self.choices = {"t_min": t_min}

    def grad_on(self, t: int) -> bool:
        return t == self.t_min

    def stop_at(self, t: int) -> bool:
        return t == self.t_min

    def loss(self, traj: Trajectory, ctx: LossContext) -> tuple[Tensor, dict[str, Any]]:
        return one_step_loss(traj, self.t_min, ctx, self.choices)


class ReFL(Method):
    name = "refl"

    def __init__(self, cfg: ReFLConfig):
        self.cfg = cfg

    def start(self, T: int, generator: torch.Generator | None = None, t_min: int | None = None) -> ReFLStep:
        self.cfg.validate(T)
        if t_min is None:
            t_min = randint(1, self.cfg.m, generator)
        check_steps("t_min", t_min, 1, T)
        return ReFLStep(t_min)

    def peak_choices(self, T: int) -> dict[str, int]:
        """t_min = 1: the longest rollout (one kept evaluation whatever t_min is)."""
        return {"t_min": 1}
