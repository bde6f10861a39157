"""DRTune (Wu et al., Deep Reward Supervisions), as in the LeapAlign supplement, Algorithm 1.

Draw t_min = randint(1, m) (line 2) and K training timesteps spaced floor(T / K) apart (lines 4-5):

    s = randint(1, T - (K - 1) floor(T / K)),   t_train = {s + i floor(T / K) | i = 0, ..., K - 1}

Every velocity sees a stop-gradient input, v_t = v_theta(sg(x_t)) (line 16), and keeps its gradient only
when t is in t_train (lines 17-18), but the state is *not* detached: x_{t-1} = x_t + (sigma_{t-1} -
sigma_t) v_t carries the training steps' gradients down to t_min, where the sample is predicted in one
step, x_0 ~= x_{t_min} - sigma_{t_min} v_{t_min} (line 25). Loss: -r(x_0) (line 41).

A training step below t_min is never reached (Algorithm 1 breaks at t_min), so a rollout keeps
|{t in t_train : t >= t_min}| evaluations, K when all lie at or above t_min.
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
class DRTuneConfig(MethodConfig):
    name: Literal["drtune"] = "drtune"
    K: int = 2  # number of training timesteps
    m: int = 11  # early-stop range: t_min ~ randint(1, m)

    def __post_init__(self):
        if not isinstance(self.K, int) or self.K < 1:
            raise ConfigError("method.K", "an integer >= 1 (training timesteps)", self.K)
        if not isinstance(self.m, int) or self.m < 1:
            raise ConfigError("method.m", "an integer >= 1 (early-stop range)", self.m)

    def validate(self, num_steps: int) -> None:
        check_steps("method.K", self.K, 1, num_steps)
        check_steps("method.m", self.m, 1, num_steps)


class DRTuneStep(StepDefaults):
    carries_grad = True

    def __init__(self, t_min: int, t_train: tuple[int, ...]):
        self.t_min, self.t_train = t_min, t_train
        self.choices = {"t_min": t_min, "t_train": list(t_train)}

    def grad_on(self, t: int) -> bool:
        return t in self.t_train

    def model_input(self, t: int, x_t: Tensor, traj: Trajectory) -> Tensor:
        return x_t.detach()

    def stop_at(self, t: int) -> bool:
        return t == self.t_min

    def loss(self, traj: Trajectory, ctx: LossContext) -> tuple[Tensor, dict[str, Any]]:
        return one_step_loss(traj, self.t_min, ctx, self.choices)


class DRTune(Method):
    name = "drtune"

    def __init__(self, cfg: DRTuneConfig):
        self.cfg = cfg

    def start(
        self, T: int, generator: torch.Generator | None = None, t_min: int | None = None, s: int | None = None
    ) -> DRTuneStep:
        self.cfg.validate(T)
        K, stride = self.cfg.K, T // self.cfg.K
        if t_min is None:
            t_min = randint(1, self.cfg.m, generator)
        if s is None:
            s = randint(1, T - (K - 1) * stride, generator)
        check_steps("t_min", t_min, 1, T)
        check_steps("s", s, 1, T - (K - 1) * stride)
        return DRTuneStep(t_min, tuple(s + i * stride for i in range(K)))

    def peak_choices(self, T: int) -> dict[str, int]:
        """t_min = s = 1: all K training timesteps are reached (1, 1 + floor(T / K), ...) on the longest rollout."""
        return {"t_min": 1, "s": 1}
