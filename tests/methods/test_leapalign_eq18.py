"""LeapAlign's parameter gradient equals supplement Eq. 18, term by term (toy backbone, float64).

With a linear reward r(x_0) = <c, x_0> and the hinge active, the loss gradient is -w c^T dx_0/dtheta and

    dx_0/dtheta = -sigma_j J_theta v(x_j) - (sigma_k - sigma_j) J_theta v(x_k)
                  + alpha sigma_j (sigma_k - sigma_j) J_x v(x_j) J_theta v(x_k)           (Eq. 18)

Each Jacobian is computed on its own with torch.func at the rollout's states; the engine's gradient must
equal the single-step part at alpha = 0, grow by exactly alpha times the nested part, and drop the
single-step k term under ``nested_only`` (supplement A3, Eq. 1).
"""

import pytest
import torch
from torch.func import functional_call, jacrev

from benchmark.core.backbones.toy import ToyBackbone, ToyConfig
from benchmark.core.engine import rollout
from methods import LossContext, build_method

T, K, J, B, D = 10, 8, 3, 2, 3
TOL = 1e-10  # float64; the two sides differ only in summation order


@pytest.fixture(scope="module")
def toy():
    torch.manual_seed(3)
    backbone = ToyBackbone(ToyConfig(dim=D, hidden=16, depth=2, cond_dim=2, shift=2.0, dtype="float64"))
    g = torch.Generator().manual_seed(4)
    cond = torch.randn(B, 2, generator=g, dtype=torch.float64)
    x_T = backbone.noise(B, g)
    c = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    return backbone, cond, x_T, c


def engine_step(backbone, cond, x_T, c, **cfg):
    """Loss gradient (flattened) of LeapAlign at (k, j) = (K, J), the trajectory, and what the reward saw."""
    step = build_method({"name": "leapalign", "lam": 1e3, "weighting": "none", **cfg}).start(T, k=K, j=J)
    traj = rollout(backbone, cond, x_T, backbone.schedule(T), step)
    seen = {}

    def reward(x0):
        seen["x0"] = x0
        return x0 @ c

    loss, _ = step.loss(traj, LossContext(backbone, cond, reward=reward))
    params = [p for p in backbone.transformer.parameters() if p.requires_grad]
    grad = torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])
    return grad, traj, seen["x0"]


def eq18_terms(backbone, traj, cond, c):
    """-(1/B) sum_b c^T (term) for the single-step terms and the nested term, each [P]."""
    net = backbone.transformer
    params = {n: p.detach() for n, p in net.named_parameters()}
    trained = [n for n, p in net.named_parameters() if p.requires_grad]
    sigma_k, sigma_j = traj.sigma(K), traj.sigma(J)

    def v(p, x, sigma, cb):  # one sample
        return functional_call(net, p, (x[None], sigma, cb[None]))[0]

    def flat(jac):  # dict of [D, *shape] -> [D, P]
        return torch.cat([jac[n].reshape(D, -1) for n in trained], dim=1)

    single_k, single_j, nested = 0, 0, 0
    for b in range(B):
        x_k, x_j = traj.x[K][b], traj.x[J][b]
        Jth_k = flat(jacrev(v, argnums=0)(params, x_k, sigma_k, cond[b]))
        Jth_j = flat(jacrev(v, argnums=0)(params, x_j, sigma_j, cond[b]))
        Jx_j = jacrev(v, argnums=1)(params, x_j, sigma_j, cond[b])
        single_j = single_j + c @ (-sigma_j * Jth_j)
        single_k = single_k + c @ (-(sigma_k - sigma_j) * Jth_k)
        nested = nested + c @ (sigma_j * (sigma_k - sigma_j) * Jx_j @ Jth_k)
    # dL/dtheta = -(1/B) sum_b w c^T dx_0/dtheta with w = 1 (weighting none), hinge active
    return -single_k / B, -single_j / B, -nested / B


def close(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_gradient_is_eq18(toy, alpha):
    backbone, cond, x_T, c = toy
    grad, traj, _ = engine_step(backbone, cond, x_T, c, alpha=alpha)
    single_k, single_j, nested = eq18_terms(backbone, traj, cond, c)
    assert nested.norm() > 1e-3 * (single_k + single_j).norm()  # the nested term is not negligible here
    assert close(grad, single_k + single_j + alpha * nested) < TOL


def test_terms_separately(toy):
    """alpha = 0 gives the single-step terms alone; alpha = 1 minus alpha = 0 is exactly the nested term."""
    backbone, cond, x_T, c = toy
    g0, traj, _ = engine_step(backbone, cond, x_T, c, alpha=0.0)
    g1, _, _ = engine_step(backbone, cond, x_T, c, alpha=1.0)
    single_k, single_j, nested = eq18_terms(backbone, traj, cond, c)
    assert close(g0, single_k + single_j) < TOL
    assert close(g1 - g0, nested) < TOL


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_nested_only_drops_the_single_step_k_term(toy, alpha):
    backbone, cond, x_T, c = toy
    grad, traj, _ = engine_step(backbone, cond, x_T, c, alpha=alpha, nested_only=True)
    single_k, single_j, nested = eq18_terms(backbone, traj, cond, c)
    assert close(grad, single_j + alpha * nested) < TOL


def test_connected_x0_is_the_rollout_x0_exactly(toy):
    backbone, cond, x_T, c = toy
    _, traj, x0_seen = engine_step(backbone, cond, x_T, c, alpha=0.3)
    assert x0_seen.requires_grad
    assert torch.equal(x0_seen, traj.x0)  # bit for bit, not merely close
    plain = rollout(backbone, cond, x_T, backbone.schedule(T)).x0  # and the leap hooks did not alter the rollout
    assert torch.equal(traj.x0, plain)
