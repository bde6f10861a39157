"""The engine's stochastic sampler: same marginals as the flow ODE, exact Gaussian step log-densities.

``GaussianFlow`` is the exact velocity field of Gaussian data x_0 ~ N(mu, S) under x_s = (1 - s) x_0 + s x_1:
with C_s = (1 - s)^2 S + s^2 I, v(x, s) = E[x_1 - x_0 | x_s = x] = (s I - (1 - s) S) C_s^{-1} (x - (1 - s) mu) - mu.
Its flow carries N(0, I) to N(mu, S) exactly, so the law of x_0 is known for both samplers.
"""

import math

import pytest
import torch

from benchmark.core.backbones.base import shift_sigmas
from benchmark.core.backbones.flux import FluxCond
from benchmark.core.engine import (
    NoGradPlan,
    gaussian_logprob,
    rollout,
    sde_sigma,
    sde_step,
    select,
    step_kl,
    step_logprob,
)

pytestmark = pytest.mark.usefixtures("one_thread")


MU = torch.tensor([1.0, -0.5], dtype=torch.float64)
L = torch.tensor([[0.6, 0.0], [0.3, 0.4]], dtype=torch.float64)
S = L @ L.T


class GaussianFlow:
    """The exact velocity of N(mu, S) data (module docstring); a VelocityModel for the engine."""

    def __init__(self, mu, cov):
        self.mu, self.cov = mu, cov

    def velocity(self, x, sigma, cond=None):
        s, eye = sigma.double(), torch.eye(len(self.mu), dtype=torch.float64)
        C = (1 - s) ** 2 * self.cov + s**2 * eye
        A = (s * eye - (1 - s) * self.cov) @ torch.linalg.inv(C)
        return (x - (1 - s) * self.mu) @ A.T - self.mu


class ConstantNoise(NoGradPlan):
    def __init__(self, eta, diffusion="scaled"):
        self.eta, self.diffusion = eta, diffusion

    def sde_noise(self, t):
        return self.eta


N, T = 20_000, 200
# Tolerances: 4 Monte Carlo standard errors of the estimate at N samples (mean: sqrt(S_ii / N); covariance
# entry: sqrt((S_ii S_jj + S_ij^2) / N)), plus the time-discretisation bias at T = 200 steps, measured once
# with 400,000 samples: <= 0.0006 on the mean and <= 0.0025 (SDE) / 0.006 (Euler ODE) on the covariance.
MEAN_TOL = 4 * torch.sqrt(S.diagonal() / N) + 1e-3
COV_TOL = 4 * torch.sqrt((S.diagonal()[:, None] * S.diagonal()[None, :] + S**2) / N)


@pytest.mark.parametrize("eta,bias,diffusion", [(0.0, 0.007, "scaled"), (0.3, 0.003, "scaled"), (0.7, 0.003, "scaled"),
                                                (0.3, 0.003, "constant")])
def test_sde_marginals_match_the_ode_and_the_data(eta, bias, diffusion):
    """Flow-GRPO's sigma_t = eta sqrt(s / (1 - s)) and DanceGRPO's constant eta: any g keeps the flow's marginals."""
    flow = GaussianFlow(MU, S)
    sigmas = shift_sigmas(torch.linspace(1, 0, T + 1, dtype=torch.float64), 1.0)
    x_T = torch.randn(N, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    traj = rollout(flow, None, x_T, sigmas, ConstantNoise(eta, diffusion), generator=torch.Generator().manual_seed(1))
    x0 = traj.x0
    assert (x0.mean(0) - MU).abs().le(MEAN_TOL).all(), (x0.mean(0), MU)
    assert (torch.cov(x0.T) - S).abs().le(COV_TOL + bias).all(), (torch.cov(x0.T), S)
    assert len(traj.logprob) == (T if eta else 0)
    if eta:  # the noise really moved the samples: the SDE's x_0 is not the ODE's
        ode = rollout(flow, None, x_T, sigmas).x0
        assert (x0 - ode).norm(dim=1).mean() > 0.1


def test_wrong_drift_breaks_the_marginals():
    """The check above can fail: without the score correction the SDE's variance blows up."""
    flow = GaussianFlow(MU, S)
    sigmas = torch.linspace(1, 0, 51, dtype=torch.float64)
    x = torch.randn(N, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    for i in range(50):
        s, s_next = sigmas[i], sigmas[i + 1]
        _, std = sde_step(x, flow.velocity(x, s), s, s_next, 0.7)
        x = x + (s_next - s) * flow.velocity(x, s) + std * torch.randn(x.shape, generator=g, dtype=x.dtype)
    assert (torch.cov(x.T) - S).abs().max() > 10 * COV_TOL.max()


def test_constant_diffusion_is_dancegrpos_coefficient():
    """DanceGRPO's flux_step: std = eta sqrt(s - s'), drift eta^2 / (2 s) (x + (1 - s) v), finite at s = 1."""
    x_t, v, _, s, s_next = pinned_step()
    mean, std = sde_step(x_t, v, s, s_next, 0.3, "constant")
    torch.testing.assert_close(mean, x_t + (v + 0.09 / (2 * 0.6) * (x_t + 0.4 * v)) * (0.45 - 0.6), rtol=1e-6, atol=1e-6)
    assert abs(std.item() - 0.3 * math.sqrt(0.15)) < 1e-7
    assert sde_sigma(torch.tensor(1.0), torch.tensor(0.9), 0.3, "constant").item() == pytest.approx(0.3)
    _, std_first = sde_step(x_t, v, torch.tensor(1.0), torch.tensor(0.9), 0.3, "constant")
    assert abs(std_first.item() - 0.3 * math.sqrt(0.1)) < 1e-7  # no special case at s = 1


def test_select_takes_rows_of_any_conditioning():
    cond = FluxCond(torch.arange(12.0).view(3, 2, 2), torch.arange(6.0).view(3, 2))
    picked = select(cond, torch.tensor([2, 0]))
    assert isinstance(picked, FluxCond) and picked.prompt_embeds[0, 0, 0] == 8 and picked.pooled_prompt_embeds[1, 1] == 1
    assert torch.equal(select(torch.arange(4), torch.tensor([3])), torch.tensor([3])) and select(None, [0]) is None


def pinned_step(dtype=torch.float64):
    g = torch.Generator().manual_seed(3)
    x_t, v, x_prev = (torch.randn(3, 4, 5, generator=g, dtype=dtype) for _ in range(3))
    return x_t, v, x_prev, torch.tensor(0.6), torch.tensor(0.45)


def test_step_moments_follow_the_equations():
    x_t, v, _, s, s_next = pinned_step()
    eta = 0.7
    sigma_t = eta * math.sqrt(0.6 / 0.4)
    mean, std = sde_step(x_t, v, s, s_next, eta)
    expected = x_t + (v + sigma_t**2 / (2 * 0.6) * (x_t + 0.4 * v)) * (0.45 - 0.6)
    torch.testing.assert_close(mean, expected, rtol=1e-6, atol=1e-6)  # sigmas are float32 like the schedules'
    assert abs(std.item() - sigma_t * math.sqrt(0.15)) < 1e-6
    # the first step (s = 1): the next grid point in the denominator, so std = eta and the drift is finite
    _, std_first = sde_step(x_t, v, torch.tensor(1.0), torch.tensor(0.9), eta)
    assert abs(std_first.item() - eta) < 1e-6
    assert abs(sde_sigma(torch.tensor(1.0), torch.tensor(0.9), eta).item() - eta * math.sqrt(10)) < 1e-5


def test_logprob_is_the_gaussian_density_of_the_step():
    x_t, v, x_prev, s, s_next = pinned_step()
    mean, std = sde_step(x_t, v, s, s_next, 0.3)
    expected = torch.distributions.Normal(mean, std).log_prob(x_prev).flatten(1).sum(1)
    torch.testing.assert_close(step_logprob(x_t, x_prev, v, s, s_next, 0.3), expected, rtol=1e-12, atol=1e-10)
    # and a wrong point has a different density
    assert (step_logprob(x_t, x_prev + 0.1, v, s, s_next, 0.3) - expected).abs().min() > 1e-3


def test_rollout_records_the_logprob_of_the_step_taken():
    flow = GaussianFlow(MU, S)
    sigmas = torch.linspace(1, 0, 6, dtype=torch.float64)
    x_T = torch.randn(7, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    traj = rollout(flow, None, x_T, sigmas, ConstantNoise(0.5), generator=torch.Generator().manual_seed(1))
    for t in range(5, 0, -1):
        recomputed = step_logprob(traj.x[t], traj.x[t - 1], flow.velocity(traj.x[t], traj.sigma(t)), traj.sigma(t),
                                  traj.sigma(t - 1), traj.eta[t])
        torch.testing.assert_close(traj.logprob[t], recomputed, rtol=1e-12, atol=1e-12)
    # the same generator seed gives the same path; another seed another one
    again = rollout(flow, None, x_T, sigmas, ConstantNoise(0.5), generator=torch.Generator().manual_seed(1))
    other = rollout(flow, None, x_T, sigmas, ConstantNoise(0.5), generator=torch.Generator().manual_seed(2))
    assert torch.equal(again.x0, traj.x0) and not torch.allclose(other.x0, traj.x0)


def test_step_kl_is_the_gaussian_kl():
    x_t, v, _, s, s_next = pinned_step()
    mean, std = sde_step(x_t, v, s, s_next, 0.3)
    mean_ref, _ = sde_step(x_t, v + 0.2, s, s_next, 0.3)
    expected = torch.distributions.kl_divergence(torch.distributions.Normal(mean, std),
                                                 torch.distributions.Normal(mean_ref, std)).flatten(1).sum(1)
    torch.testing.assert_close(step_kl(mean, mean_ref, std), expected, rtol=1e-12, atol=1e-12)


def test_gaussian_logprob_in_float32_inputs():
    x_t, v, x_prev, s, s_next = pinned_step(torch.float32)
    mean, std = sde_step(x_t, v, s, s_next, 0.3)
    assert mean.dtype == torch.float32 and gaussian_logprob(x_prev, mean, std).shape == (3,)
