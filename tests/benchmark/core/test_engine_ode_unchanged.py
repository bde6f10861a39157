"""Adding the stochastic sampler left the deterministic path bit for bit as it was.

``frozen_rollout`` is the engine's ``rollout`` loop exactly as it stood before the SDE sampler was added
(copied, not imported). Every state x_t, every velocity and x_0 of the current engine must be
``torch.equal`` to it, for plain sampling and for the direct-gradient methods' plans, on a seeded toy
backbone and a seeded tiny FLUX. (Checked on the day of the change: the current engine and this copy
agreed on all cases below before the engine was edited.)
"""

import pytest
import torch
from torch.utils.checkpoint import checkpoint as activation_checkpoint

from benchmark.core.backbones.flux import FluxCond
from benchmark.core.backbones.tiny import POOLED_DIM, TEXT_DIM, tiny_flux
from benchmark.core.backbones.toy import ToyBackbone, ToyConfig
from benchmark.core.engine import NoGradPlan, Trajectory, euler_step, rollout
from methods import build_method

pytestmark = pytest.mark.usefixtures("one_thread")


def frozen_rollout(model, cond, x_T, sigmas, plan):
    """The pre-SDE ``benchmark.core.engine.rollout`` (ODE only), frozen."""
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
        if plan.stop_at(t):
            traj.stopped_at = t
            return traj
        if not plan.carries_grad:
            x, v = x.detach(), v.detach()
        x = euler_step(x, v, sigma_t, sigma_next)
    traj.x[0] = x
    return traj


PLANS = [  # (method config or None for plain sampling, pinned choices)
    (None, {}),
    ({"name": "leapalign"}, {"k": 9, "j": 3}),
    ({"name": "refl", "m": 5}, {"t_min": 4}),
    ({"name": "drtune", "K": 2, "m": 5}, {"t_min": 2, "s": 3}),
    ({"name": "full_backprop", "last_k": 3, "checkpoint": True}, {}),
]


def plan_for(cfg, pinned, T):
    return NoGradPlan() if cfg is None else build_method(cfg).start(T, torch.Generator().manual_seed(0), **pinned)


def assert_identical(model, cond, x_T, sigmas, cfg, pinned):
    T = len(sigmas) - 1
    ours = rollout(model, cond, x_T, sigmas, plan_for(cfg, pinned, T))
    ref = frozen_rollout(model, cond, x_T, sigmas, plan_for(cfg, pinned, T))
    assert ours.x.keys() == ref.x.keys() and ours.v.keys() == ref.v.keys() and ours.stopped_at == ref.stopped_at
    assert all(torch.equal(ours.x[t], ref.x[t]) for t in ref.x)
    assert all(torch.equal(ours.v[t], ref.v[t]) for t in ref.v)
    if 0 in ref.x:
        assert torch.equal(ours.x0, ref.x0)
    assert not ours.logprob  # no stochastic step was taken


@pytest.mark.parametrize("cfg,pinned", PLANS, ids=lambda v: str(v) if isinstance(v, dict) or v is None else None)
def test_toy_ode_rollout_is_bit_identical(cfg, pinned):
    torch.manual_seed(3)
    backbone = ToyBackbone(ToyConfig(cond_dim=2, shift=3.0))
    cond = torch.randn(4, 2)
    x_T = backbone.noise(4, torch.Generator().manual_seed(5))
    assert_identical(backbone, cond, x_T, backbone.schedule(10), cfg, pinned)


@pytest.mark.parametrize("cfg,pinned", PLANS[:3], ids=lambda v: str(v) if isinstance(v, dict) or v is None else None)
def test_tiny_flux_ode_rollout_is_bit_identical(cfg, pinned):
    backbone = tiny_flux(seed=7)
    g = torch.Generator().manual_seed(11)
    cond = FluxCond(torch.randn(2, 4, TEXT_DIM, generator=g), torch.randn(2, POOLED_DIM, generator=g))
    x_T = backbone.noise(2, torch.Generator().manual_seed(13))
    assert_identical(backbone, cond, x_T, backbone.schedule(10), cfg, pinned)


def frozen_euler_step(x_t, v_t, sigma_t, sigma_next):
    """``euler_step`` before it skipped casts to the dtype a tensor already has, frozen."""
    dtype = torch.promote_types(x_t.dtype, torch.float32)
    step = (sigma_next - sigma_t).to(dtype)
    return (x_t.to(dtype) + step * v_t.to(dtype)).to(x_t.dtype)


@pytest.mark.parametrize("x_dtype,v_dtype", [(torch.float32, torch.float32), (torch.bfloat16, torch.bfloat16),
                                             (torch.float32, torch.bfloat16), (torch.float64, torch.float32)])
def test_euler_step_is_bit_identical_in_values_and_gradients(x_dtype, v_dtype):
    g = torch.Generator().manual_seed(0)
    sigmas = torch.tensor([0.93, 0.71])
    results = []
    for step in (euler_step, frozen_euler_step):
        x = torch.randn(3, 5, generator=g.manual_seed(1)).to(x_dtype).requires_grad_()
        v = torch.randn(3, 5, generator=g.manual_seed(2)).to(v_dtype).requires_grad_()
        out = step(x, v, sigmas[0], sigmas[1])
        out.square().sum().backward()
        results.append((out.detach(), out.dtype, x.grad, v.grad))
    (ours, dtype, gx, gv), (theirs, dtype_ref, gx_ref, gv_ref) = results
    assert dtype == dtype_ref == x_dtype
    assert torch.equal(ours, theirs) and torch.equal(gx, gx_ref) and torch.equal(gv, gv_ref)
