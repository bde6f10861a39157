"""The rollout engine: Algorithm 1 of the LeapAlign supplement (A4), written once for every method.

Time follows the paper: discrete timesteps t = T, ..., 1, 0 with x_T the noise and x_0 the sample. The
continuous time of x_t is its sigma, ``sigma_t = sigmas[T - t]`` (sigmas run from 1 down to 0), so the
Euler step and the one-step leap prediction (supplement Eq. 9) read

    x_{t-1}   = x_t + (sigma_{t-1} - sigma_t) * v(x_t)
    x_hat_j|k = x_k - (sigma_k - sigma_j) * v(x_k)

Per step the engine asks the method's plan three questions (Algorithm 1 lines 10-26): does this velocity
evaluation keep activations (``grad_on``), what is the model input (``model_input``), and does the rollout
stop here (``stop_at``). Every evaluation the plan does not keep runs under ``torch.no_grad``, so a
method's memory is the few evaluations it marks, whatever T is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint as activation_checkpoint


class VelocityModel(Protocol):
    """What the engine needs from a backbone: ``v = velocity(x, sigma, cond)``."""

    def velocity(self, x: Tensor, sigma: Tensor, cond: Any) -> Tensor: ...


class Plan(Protocol):
    """A method's answers for one rollout (Algorithm 1 lines 10-26); see ``methods.base``."""

    carries_grad: bool  # x_{t-1} keeps the graph of x_t and v_t (DRTune, full backprop)
    checkpoint: bool  # recompute kept evaluations in backward instead of storing activations

    def grad_on(self, t: int) -> bool: ...

    def model_input(self, t: int, x_t: Tensor, traj: "Trajectory") -> Tensor: ...

    def stop_at(self, t: int) -> bool: ...


class NoGradPlan:
    """Plain sampling: nothing kept, no early stop."""

    carries_grad = False
    checkpoint = False

    def grad_on(self, t: int) -> bool:
        return False

    def model_input(self, t: int, x_t: Tensor, traj: "Trajectory") -> Tensor:
        return x_t

    def stop_at(self, t: int) -> bool:
        return False


@dataclass
class Trajectory:
    """States and velocities of one rollout, keyed by the paper's timestep t (T = noise, 0 = sample).

    ``x[t]`` is the state at sigma_t and ``v[t]`` the velocity evaluated there; both are detached except
    where the plan kept them (``v``) or carried the graph (``x``). ``x_in[t]`` is the model input of each
    kept evaluation (the connector at LeapAlign's t_j, the stop-grad input of DRTune). ``stopped_at`` is
    the last timestep evaluated when the plan stopped early, else 0.
    """

    sigmas: Tensor
    x: dict[int, Tensor] = field(default_factory=dict)
    v: dict[int, Tensor] = field(default_factory=dict)
    x_in: dict[int, Tensor] = field(default_factory=dict)
    stopped_at: int = 0

    @property
    def T(self) -> int:
        return len(self.sigmas) - 1

    def sigma(self, t: int) -> Tensor:
        """sigma_t, the continuous time of x_t (a 0-dim float32 tensor)."""
        return self.sigmas[self.T - t]

    @property
    def x0(self) -> Tensor:
        return self.x[0]


def euler_step(x_t: Tensor, v_t: Tensor, sigma_t: Tensor, sigma_next: Tensor) -> Tensor:
    """x_{t-1} = x_t + (sigma_{t-1} - sigma_t) v_t, in at least float32 like diffusers' FlowMatchEulerDiscreteScheduler."""
    dtype = torch.promote_types(x_t.dtype, torch.float32)
    step = (sigma_next - sigma_t).to(dtype)
    return (x_t.to(dtype) + step * v_t.to(dtype)).to(x_t.dtype)


def leap(x_k: Tensor, v_k: Tensor, sigma_k: Tensor, sigma_j: Tensor) -> Tensor:
    """One-step leap prediction, supplement Eq. 9: x_hat_{j|k} = x_k - (sigma_k - sigma_j) v(x_k)."""
    return euler_step(x_k, v_k, sigma_k, sigma_j)


def rollout(
    model: VelocityModel,
    cond: Any,
    x_T: Tensor,
    sigmas: Tensor,
    plan: Plan | None = None,
    progress: Callable[[int], None] | None = None,
) -> Trajectory:
    """Integrate the flow ODE from x_T along ``sigmas`` (length T + 1, ending at 0), asking ``plan`` per step.

    Algorithm 1 lines 9-34: per timestep t the plan decides whether the velocity keeps activations and
    what the model input is; the state then moves by an Euler step. Unless the plan carries the graph,
    the next state is detached (line 33), so activations live only in the evaluations the plan keeps.
    """
    plan = plan or NoGradPlan()
    traj = Trajectory(sigmas=sigmas)
    T = traj.T
    x = x_T
    for t in range(T, 0, -1):
        sigma_t, sigma_next = sigmas[T - t], sigmas[T - t + 1]
        traj.x[t] = x
        keep = plan.grad_on(t)
        if keep:
            x_in = plan.model_input(t, x, traj)
            traj.x_in[t] = x_in
            if plan.checkpoint:
                v = activation_checkpoint(model.velocity, x_in, sigma_t, cond, use_reentrant=False)
            else:
                v = model.velocity(x_in, sigma_t, cond)
        else:
            with torch.no_grad():
                v = model.velocity(x.detach(), sigma_t, cond)
        traj.v[t] = v
        if progress is not None:
            progress(t)
        if plan.stop_at(t):
            traj.stopped_at = t
            return traj
        if not plan.carries_grad:
            x, v = x.detach(), v.detach()
        x = euler_step(x, v, sigma_t, sigma_next)
    traj.x[0] = x
    return traj
