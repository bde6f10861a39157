"""LeapAlign (Liang et al., 2026): reward gradients through a leap trajectory built from the rollout.

Two timesteps k > j are drawn from the grid (Algorithm 1 line 7); the rollout runs without gradient
except the velocities at k and j. The leap trajectory (supplement A7, Eq. 10-13, 17):

    x_hat_{j|k} = x_k - (sigma_k - sigma_j) v_theta(x_k)
    x_j^c       = x_hat_{j|k} + sg(x_j - x_hat_{j|k})                              (latent connector)
    x_hat_{0|j} = x_j^c - sigma_j v_theta(alpha x_j^c + (1 - alpha) sg(x_j^c))     (gradient discounting)
    x_0^c       = x_hat_{0|j} + sg(x_0 - x_hat_{0|j})

so that d x_0 / d theta = -sigma_j dv(x_j)/dtheta - (sigma_k - sigma_j) dv(x_k)/dtheta
                          + alpha sigma_j (sigma_k - sigma_j) dv(x_j)/dx_j dv(x_k)/dtheta      (Eq. 18).

Loss: sg(w) max(0, lambda - r(x_0^c)) with the trajectory-similarity weight
w = 1 / (max(d_j, tau) + max(d_0, tau)), d_j = mean|x_j - x_hat_{j|k}|, d_0 = mean|x_0 - x_hat_{0|j}|.

The ablations of the paper are config values: ``leaps`` (1, 2, 3, ...: the chain t_1 > ... > t_L with a
connector and discount at every intermediate point), ``timestep_range``, a fixed ``distance`` between
consecutive leap points, ``reward_on`` (the connected x_0 or x_hat_{0|j}), ``weighting`` (both, d_j only,
d_0 only, none) and ``nested_only`` (supplement A3: the first leap is updated only through the nested
gradient, i.e. the identity path x_j^c -> x_hat_{0|j} is stopped).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import torch
from torch import Tensor

from benchmark.core.engine import Trajectory, leap
from benchmark.core.errors import ConfigError
from methods.base import (
    LossContext,
    Method,
    MethodConfig,
    StepDefaults,
    connect,
    discount,
    per_sample_l1,
    randint,
    reward_metrics,
)

WEIGHTINGS = ("both", "dj", "d0", "none")
REWARD_INPUTS = ("x0", "x0_hat")


@dataclass
class LeapAlignConfig(MethodConfig):
    name: Literal["leapalign"] = "leapalign"
    alpha: float = 0.3  # gradient discounting (A5: 0.3 for HPSv2.1, 0.1 for PickScore and HPSv3)
    lam: float = 0.55  # hinge threshold lambda (A5: 0.55 HPSv2.1, 0.4 PickScore, 13.5 HPSv3)
    tau: float = 0.1  # distance clamp of the similarity weight
    leaps: int = 2
    timestep_range: tuple[int, int] | None = None  # [lo, hi] in Algorithm 1 timesteps; None = {1, ..., T}
    distance: int | None = None  # fixed t_i - t_{i+1}; None = random points
    reward_on: str = "x0"
    weighting: str = "both"
    nested_only: bool = False
    loss_scale: float = 1.0

    def __post_init__(self):
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not 0 <= self.alpha <= 1:
            raise ConfigError("method.alpha", "a number in [0, 1]", self.alpha)
        if not isinstance(self.leaps, int) or self.leaps < 1:
            raise ConfigError("method.leaps", "an integer >= 1", self.leaps)
        if not self.tau > 0:
            raise ConfigError("method.tau", "a number > 0", self.tau)
        if not self.loss_scale > 0:
            raise ConfigError("method.loss_scale", "a number > 0", self.loss_scale)
        if self.timestep_range is not None:
            lo_hi = tuple(self.timestep_range)
            if len(lo_hi) != 2 or not all(isinstance(v, int) for v in lo_hi) or not 1 <= lo_hi[0] <= lo_hi[1]:
                raise ConfigError("method.timestep_range", "[lo, hi] with integers 1 <= lo <= hi", self.timestep_range)
            self.timestep_range = lo_hi
            if lo_hi[1] - lo_hi[0] + 1 < self.leaps:
                raise ConfigError(
                    "method.timestep_range", f"a range holding at least {self.leaps} timesteps (method.leaps)", lo_hi
                )
        if self.distance is not None:
            if not isinstance(self.distance, int) or self.distance < 1:
                raise ConfigError("method.distance", "an integer >= 1 or null (random)", self.distance)
            if self.leaps < 2:
                raise ConfigError("method.distance", "null when method.leaps is 1 (no second leap point)", self.distance)
        if self.reward_on not in REWARD_INPUTS:
            raise ConfigError("method.reward_on", f"one of {', '.join(REWARD_INPUTS)}", self.reward_on)
        if self.weighting not in WEIGHTINGS:
            raise ConfigError("method.weighting", f"one of {', '.join(WEIGHTINGS)}", self.weighting)
        if self.weighting == "dj" and self.leaps < 2:
            raise ConfigError("method.weighting", "both, d0 or none when method.leaps is 1 (no d_j)", self.weighting)

    def window(self, T: int) -> tuple[int, int]:
        """The timesteps the leap points are drawn from, checked against T."""
        lo, hi = self.timestep_range or (1, T)
        if hi > T:
            raise ConfigError("method.timestep_range", f"[lo, hi] within [1, {T}] (schedule.num_steps)", [lo, hi])
        span = (self.leaps - 1) * (self.distance or 1)
        if hi - lo < span:
            raise ConfigError("method.timestep_range", f"a range wider than {span} for the leap chain", [lo, hi])
        return lo, hi

    def validate(self, num_steps: int) -> None:
        self.window(num_steps)


class LeapAlignStep(StepDefaults):
    """One rollout: leap points t_1 > ... > t_L (t_1 = k, t_2 = j for two leaps)."""

    def __init__(self, cfg: LeapAlignConfig, ts: tuple[int, ...]):
        self.cfg, self.ts = cfg, ts
        self.x_hat: dict[int, Tensor] = {}  # x_hat_{t_i | t_(i-1)} at every point after the first
        self.conn: dict[int, Tensor] = {}  # connected states x_t^c
        self.choices: dict[str, Any] = {"ts": list(ts)}
        if len(ts) == 2:
            self.choices.update(k=ts[0], j=ts[1])

    def grad_on(self, t: int) -> bool:
        return t in self.ts

    def model_input(self, t: int, x_t: Tensor, traj: Trajectory) -> Tensor:
        i = self.ts.index(t)
        if i == 0:
            self.conn[t] = x_t.detach()
            return self.conn[t]
        self.x_hat[t] = self._leap_from(self.ts[i - 1], traj, traj.sigma(t))
        self.conn[t] = connect(x_t, self.x_hat[t])
        return discount(self.conn[t], self.cfg.alpha)

    def _leap_from(self, p: int, traj: Trajectory, sigma_to: Tensor) -> Tensor:
        """x_hat_{.|p} = x_p^c - (sigma_p - sigma_to) v(x_p); with nested_only the identity path is stopped."""
        base = self.conn[p].detach() if self.cfg.nested_only else self.conn[p]
        return leap(base, traj.v[p], traj.sigma(p), sigma_to)

    def loss(self, traj: Trajectory, ctx: LossContext) -> tuple[Tensor, dict[str, Any]]:
        cfg = self.cfg
        x0_hat = self._leap_from(self.ts[-1], traj, traj.sigmas[-1])
        self.x_hat[0] = x0_hat
        x0 = connect(traj.x0, x0_hat) if cfg.reward_on == "x0" else x0_hat
        r = ctx.reward(x0)
        w, distances = self.weight(traj)
        raw = torch.relu(cfg.lam - r)
        loss = cfg.loss_scale * (w.to(raw.dtype) * raw).mean()
        metrics = {**reward_metrics(r), "weight": w.mean().item(), **distances, **self.choices}
        metrics["hinge_active"] = (raw > 0).double().mean().item()
        return loss, metrics

    def weight(self, traj: Trajectory) -> tuple[Tensor, dict[str, float]]:
        """w = 1 / sum of the clamped connector distances chosen by ``weighting`` (no gradient)."""
        tau = self.cfg.tau
        d_mid = [per_sample_l1(traj.x[t], self.x_hat[t]) for t in self.ts[1:]]
        d_0 = per_sample_l1(traj.x0, self.x_hat[0])
        terms = {"both": d_mid + [d_0], "dj": d_mid, "d0": [d_0], "none": []}[self.cfg.weighting]
        w = 1 / sum(d.clamp_min(tau) for d in terms) if terms else torch.ones_like(d_0)
        distances = {"d_0": d_0.mean().item()}
        if d_mid:
            distances["d_j"] = torch.stack(d_mid).mean().item()
        return w, distances


class LeapAlign(Method):
    name = "leapalign"

    def __init__(self, cfg: LeapAlignConfig):
        self.cfg = cfg

    def gradient_parts(self) -> dict[str, "LeapAlign"]:
        """The single-step part of Eq. 18 is the gradient at alpha = 0; the nested part is the rest."""
        return {"single": LeapAlign(dataclasses.replace(self.cfg, alpha=0.0))}

    def start(
        self,
        T: int,
        generator: torch.Generator | None = None,
        ts: Sequence[int] | None = None,
        k: int | None = None,
        j: int | None = None,
    ) -> LeapAlignStep:
        lo, hi = self.cfg.window(T)
        if k is not None or j is not None:
            ts = (k, j)
        ts = tuple(ts) if ts is not None else self._draw(lo, hi, generator)
        if len(ts) != self.cfg.leaps or any(not isinstance(t, int) or not lo <= t <= hi for t in ts):
            raise ConfigError("ts", f"{self.cfg.leaps} timesteps in [{lo}, {hi}]", ts)
        if any(a <= b for a, b in zip(ts, ts[1:])):
            raise ConfigError("ts", "strictly decreasing leap points (k > j)", ts)
        return LeapAlignStep(self.cfg, ts)

    def _draw(self, lo: int, hi: int, generator: torch.Generator | None) -> tuple[int, ...]:
        L, d = self.cfg.leaps, self.cfg.distance
        if d is not None:
            first = randint(lo + (L - 1) * d, hi, generator)
            return tuple(first - i * d for i in range(L))
        picks = torch.randperm(hi - lo + 1, generator=generator)[:L] + lo
        return tuple(sorted(picks.tolist(), reverse=True))
