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

A fourth question, ``sde_noise(t)``, turns step t into a stochastic one (the policy-gradient methods,
``methods.grpo``): 0 (every direct-gradient method) keeps the Euler step above, bit for bit; eta > 0
samples x_{t-1} from the Gaussian transition of the reverse SDE with the ODE's marginals (``sde_step``).

The SDE (Flow-GRPO, Liu et al. 2025, Eq. 8-9; DanceGRPO, Xue et al. 2025). Rectified flow interpolates
x_s = (1 - s) x_0 + s x_1 with x_1 ~ N(0, I), s = sigma, and v(x, s) = E[x_1 - x_0 | x_s = x]. From
x = (1 - s) x0_hat + s x1_hat and v = x1_hat - x0_hat we get x1_hat = x + (1 - s) v, and Tweedie's
formula for the Gaussian part s x_1 gives the score

    grad log p_s(x) = -E[x_1 | x_s = x] / s = -(x + (1 - s) v) / s.

The probability-flow ODE dx = v ds and, for any diffusion coefficient g(s), the SDE run backwards in s

    dx = [v - g^2 / 2 * grad log p_s(x)] ds + g dw       (ds < 0)

share the marginals p_s (their Fokker-Planck equations agree: the g^2 / 2 Laplacian cancels the score
term). With Flow-GRPO's g = sigma_t = eta sqrt(s / (1 - s)), one Euler-Maruyama step from s to s' < s is

    x_{s'} ~ N(mean, std^2 I),  mean = x + (v + sigma_t^2 / (2 s) (x + (1 - s) v)) (s' - s),
                                std  = sigma_t sqrt(s - s').

At s = 1 (the first step) sigma_t is infinite; as Flow-GRPO does, the next grid point replaces s in the
denominator there: sigma_t = eta sqrt(1 / (1 - s')), so that std = eta and the drift stays finite.

DanceGRPO's ``flux_step`` (fastvideo/train_grpo_flux.py) takes the constant coefficient g = eta instead
(``diffusion="constant"``): same mean and std formulas with sigma_t = eta at every step.
"""

from __future__ import annotations

import dataclasses
import math
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

    def sde_noise(self, t: int) -> float: ...  # eta of step t -> t-1; 0 = the deterministic Euler step

    diffusion: str  # the SDE's coefficient g(s): "scaled" (Flow-GRPO) or "constant" (DanceGRPO); see sde_sigma


DIFFUSIONS = ("scaled", "constant")


class NoGradPlan:
    """Plain sampling: nothing kept, no early stop."""

    carries_grad = False
    checkpoint = False
    diffusion = "scaled"

    def grad_on(self, t: int) -> bool:
        return False

    def model_input(self, t: int, x_t: Tensor, traj: "Trajectory") -> Tensor:
        return x_t

    def stop_at(self, t: int) -> bool:
        return False

    def sde_noise(self, t: int) -> float:
        return 0.0


@dataclass
class Trajectory:
    """States and velocities of one rollout, keyed by the paper's timestep t (T = noise, 0 = sample).

    ``x[t]`` is the state at sigma_t and ``v[t]`` the velocity evaluated there; both are detached except
    where the plan kept them (``v``) or carried the graph (``x``). ``x_in[t]`` is the model input of each
    kept evaluation (the connector at LeapAlign's t_j, the stop-grad input of DRTune). ``stopped_at`` is
    the last timestep evaluated when the plan stopped early, else 0. For each stochastic step t -> t-1,
    ``eta[t]`` is its noise level and ``logprob[t]`` the (detached) log-density [B] of the x_{t-1} drawn,
    under the sampling policy: the "old" log-probabilities of a policy-gradient update.
    """

    sigmas: Tensor
    x: dict[int, Tensor] = field(default_factory=dict)
    v: dict[int, Tensor] = field(default_factory=dict)
    x_in: dict[int, Tensor] = field(default_factory=dict)
    stopped_at: int = 0
    eta: dict[int, float] = field(default_factory=dict)
    logprob: dict[int, Tensor] = field(default_factory=dict)

    @property
    def T(self) -> int:
        return len(self.sigmas) - 1

    def sigma(self, t: int) -> Tensor:
        """sigma_t, the continuous time of x_t (a 0-dim float32 tensor)."""
        return self.sigmas[self.T - t]

    @property
    def x0(self) -> Tensor:
        return self.x[0]


def select(cond: Any, index: Tensor) -> Any:
    """The rows ``index`` of a backbone's conditioning: a tensor, a dataclass of tensors (FLUX, SD3) or None."""
    if cond is None:
        return None
    if isinstance(cond, Tensor):
        return cond[index]
    return dataclasses.replace(cond, **{f.name: getattr(cond, f.name)[index] for f in dataclasses.fields(cond)})


def cast(t: Tensor, dtype: torch.dtype) -> Tensor:
    """``t.to(dtype)`` (``t`` itself when it has that dtype), without dispatching an op for a tensor that has."""
    return t if t.dtype == dtype else t.to(dtype)


def detached(t: Tensor) -> Tensor:
    """``t.detach()``, without dispatching an op for a tensor outside any graph."""
    return t.detach() if t.requires_grad else t


def euler_step(x_t: Tensor, v_t: Tensor, sigma_t: Tensor, sigma_next: Tensor) -> Tensor:
    """x_{t-1} = x_t + (sigma_{t-1} - sigma_t) v_t, in at least float32 like diffusers' FlowMatchEulerDiscreteScheduler.

    Called once per step: the casts are skipped where the dtypes already agree (the same values and graph as
    ``.to``, a few ops fewer per step; ``bench step`` counts them)."""
    dtype = torch.float64 if x_t.dtype == torch.float64 else torch.float32  # promote_types(x_t.dtype, float32)
    step = cast(sigma_next - sigma_t, dtype)
    return cast(cast(x_t, dtype) + step * cast(v_t, dtype), x_t.dtype)


def leap(x_k: Tensor, v_k: Tensor, sigma_k: Tensor, sigma_j: Tensor) -> Tensor:
    """One-step leap prediction, supplement Eq. 9: x_hat_{j|k} = x_k - (sigma_k - sigma_j) v(x_k)."""
    return euler_step(x_k, v_k, sigma_k, sigma_j)


def sde_sigma(sigma: Tensor, sigma_next: Tensor, eta: float, diffusion: str = "scaled") -> Tensor:
    """The diffusion coefficient sigma_t of step s -> s' (float64, 0-dim).

    "scaled": Flow-GRPO's eta sqrt(s / (1 - s)), with s' for s in the denominator at s = 1
    (flow_grpo/diffusers_patch/sd3_sde_with_logprob.py, sde_step_with_logprob); "constant": DanceGRPO's eta
    (fastvideo/train_grpo_flux.py, flux_step).
    """
    s, s_next = sigma.double(), sigma_next.double()
    if diffusion == "constant":
        return torch.full_like(s, eta)
    return eta * torch.sqrt(s / (1 - torch.where(s >= 1, s_next, s)))


def sde_step(x_t: Tensor, v_t: Tensor, sigma: Tensor, sigma_next: Tensor, eta: float,
             diffusion: str = "scaled") -> tuple[Tensor, Tensor]:
    """Mean and std of x_{t-1} | x_t for the reverse SDE (module docstring), in at least float32.

    mean = x + (v + sigma_t^2 / (2 s) (x + (1 - s) v)) (s' - s),  std = sigma_t sqrt(s - s')  (0-dim).
    """
    dtype = torch.promote_types(x_t.dtype, torch.float32)
    x, v = x_t.to(dtype), v_t.to(dtype)
    g = sde_sigma(sigma, sigma_next, eta, diffusion)
    s = sigma.double()
    drift_scale = (g**2 / (2 * s)).to(dtype)
    mean = x + (v + drift_scale * (x + (1 - s.to(dtype)) * v)) * (sigma_next - sigma).to(dtype)
    std = (g * torch.sqrt(s - sigma_next.double())).to(dtype)
    return mean, std


def gaussian_logprob(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """log N(x; mean, std^2 I) summed over all but the batch dimension: [B]."""
    dtype = torch.promote_types(mean.dtype, torch.float32)
    z = (x.to(dtype) - mean.to(dtype)) / std.to(dtype)
    per_dim = -0.5 * z**2 - torch.log(std.to(dtype)) - 0.5 * math.log(2 * math.pi)
    return per_dim.flatten(1).sum(1)


def step_logprob(x_t: Tensor, x_prev: Tensor, v: Tensor, sigma: Tensor, sigma_next: Tensor, eta: float,
                 diffusion: str = "scaled") -> Tensor:
    """log p(x_{t-1} = x_prev | x_t) of the SDE step with velocity ``v`` (the policy's or a reference's): [B]."""
    mean, std = sde_step(x_t, v, sigma, sigma_next, eta, diffusion)
    return gaussian_logprob(x_prev, mean, std)


def step_kl(mean: Tensor, mean_ref: Tensor, std: Tensor) -> Tensor:
    """KL(N(mean, std^2 I) || N(mean_ref, std^2 I)) = ||mean - mean_ref||^2 / (2 std^2), per sample: [B]."""
    return (mean - mean_ref).pow(2).flatten(1).sum(1) / (2 * std**2)


def rollout(
    model: VelocityModel,
    cond: Any,
    x_T: Tensor,
    sigmas: Tensor,
    plan: Plan | None = None,
    progress: Callable[[int], None] | None = None,
    generator: torch.Generator | None = None,
) -> Trajectory:
    """Integrate the flow ODE from x_T along ``sigmas`` (length T + 1, ending at 0), asking ``plan`` per step.

    Algorithm 1 lines 9-34: per timestep t the plan decides whether the velocity keeps activations and
    what the model input is; the state then moves by an Euler step. Unless the plan carries the graph,
    the next state is detached (line 33), so activations live only in the evaluations the plan keeps.
    Where ``plan.sde_noise(t)`` is eta > 0 the step is the SDE's Gaussian transition instead, its noise
    drawn from ``generator``, and its log-density is recorded in ``traj.logprob[t]``.
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
                v = model.velocity(detached(x), sigma_t, cond)
        traj.v[t] = v
        if progress is not None:
            progress(t)
        if plan.stop_at(t):
            traj.stopped_at = t
            return traj
        if not plan.carries_grad:
            x, v = detached(x), detached(v)
        eta = plan.sde_noise(t)
        if eta > 0:
            mean, std = sde_step(x, v, sigma_t, sigma_next, eta, plan.diffusion)
            eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
            x = (mean + std * eps).to(x.dtype)
            traj.eta[t] = eta
            traj.logprob[t] = gaussian_logprob(x, mean, std).detach()
        else:
            x = euler_step(x, v, sigma_t, sigma_next)
    traj.x[0] = x
    return traj
