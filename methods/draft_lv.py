"""DRaFT-LV (Clark et al., Directly Fine-Tuning Diffusion Models on Differentiable Rewards), Algorithm 1.

The rollout keeps only the last step's velocity (t_min = 1, line 10): x_0 = x_1 - sigma_1 v_theta(x_1).
Then n times (lines 43-47) the sample is re-noised to the last step's noise level and denoised again
with gradient, with the flow-matching scheduler alpha_1 = 1 - sigma_1, beta_1 = sigma_1 (Eq. 2):

    x_1^i = (1 - sigma_1) sg(x_0) + sigma_1 eps_i,    x_0^i = x_1^i - sigma_1 v_theta(x_1^i)

Loss: -(r(x_0) + sum_i r(x_0^i)) (lines 41 and 47 accumulate the gradients). The paper uses n = 2 (A5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from benchmark.core.engine import Trajectory, leap
from benchmark.core.errors import ConfigError
from methods.base import LossContext, Method, MethodConfig, StepDefaults, reward_metrics


@dataclass
class DRaFTLVConfig(MethodConfig):
    name: Literal["draft_lv"] = "draft_lv"
    n: int = 2  # re-noising steps

    def __post_init__(self):
        if not isinstance(self.n, int) or self.n < 0:
            raise ConfigError("method.n", "an integer >= 0 (re-noising steps)", self.n)

    def validate(self, num_steps: int) -> None:
        pass


class DRaFTLVStep(StepDefaults):
    def __init__(self, n: int, eps: list[Tensor] | None):
        self.n, self.eps = n, eps
        self.choices: dict[str, Any] = {"t_min": 1}

    def grad_on(self, t: int) -> bool:
        return t == 1

    def loss(self, traj: Trajectory, ctx: LossContext) -> tuple[Tensor, dict[str, Any]]:
        sigma_1, sigma_0 = traj.sigma(1), traj.sigmas[-1]
        x0 = leap(traj.x[1], traj.v[1], sigma_1, sigma_0)
        rewards = [ctx.reward(x0)]
        for i in range(self.n):
            eps = self.eps[i] if self.eps is not None else self._draw(x0, ctx.generator)
            x1_i = (1 - sigma_1) * x0.detach() + sigma_1 * eps.to(x0.dtype)
            x0_i = leap(x1_i, ctx.model.velocity(x1_i, sigma_1, ctx.cond), sigma_1, sigma_0)
            rewards.append(ctx.reward(x0_i))
        r = torch.stack(rewards)  # [n + 1, B]
        metrics = {**reward_metrics(rewards[0]), "reward_lv_mean": r[1:].mean().item() if self.n else 0.0}
        return -r.sum(0).mean(), {**metrics, **self.choices}

    @staticmethod
    def _draw(x0: Tensor, generator: torch.Generator | None) -> Tensor:
        return torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)


class DRaFTLV(Method):
    name = "draft_lv"

    def __init__(self, cfg: DRaFTLVConfig):
        self.cfg = cfg

    def start(
        self, T: int, generator: torch.Generator | None = None, eps: list[Tensor] | None = None
    ) -> DRaFTLVStep:
        if eps is not None and len(eps) != self.cfg.n:
            raise ConfigError("eps", f"{self.cfg.n} pinned re-noise draws (method.n)", len(eps))
        return DRaFTLVStep(self.cfg.n, eps)
