"""Each method keeps activations for exactly the velocity evaluations Algorithm 1 says: counted, not timed.

A forward hook counts the model's calls made with autograd on (those store activations) and those made
without it; every evaluation the method does not mark must run under no_grad.
"""

import pytest
import torch

from benchmark.core.backbones.flux import FluxCond
from benchmark.core.backbones.tiny import POOLED_DIM, TEXT_DIM, tiny_flux
from benchmark.core.backbones.toy import ToyBackbone, ToyConfig
from benchmark.core.engine import rollout
from methods import LossContext, build_method

T = 25


class Counter:
    def __init__(self, module):
        self.grad, self.no_grad = 0, 0
        module.register_forward_pre_hook(self)  # a pre-hook also sees checkpointing's recompute, which stops early

    def __call__(self, module, args):
        if torch.is_grad_enabled():
            self.grad += 1
        else:
            self.no_grad += 1


def run_step(backbone, cond, method_cfg, **pinned):
    counter = Counter(backbone.transformer)
    step = build_method(method_cfg).start(T, generator=torch.Generator().manual_seed(0), **pinned)
    traj = rollout(backbone, cond, backbone.noise(len(cond), torch.Generator().manual_seed(1)), backbone.schedule(T), step)
    loss, _ = step.loss(traj, LossContext(backbone, cond, reward=lambda x: backbone.decode(x).flatten(1).mean(1)))
    loss.backward()
    return counter


CASES = [  # (config, pinned choices, kept evaluations, evaluations without grad)
    ({"name": "leapalign"}, {"k": 20, "j": 4}, 2, T - 2),
    ({"name": "leapalign", "leaps": 3}, {"ts": (25, 10, 1)}, 3, T - 3),
    ({"name": "leapalign", "leaps": 1}, {"ts": (13,)}, 1, T - 1),
    ({"name": "refl"}, {"t_min": 7}, 1, T - 7),  # stops at t_min = 7: steps 25..8 without grad
    ({"name": "draft_lv", "n": 2}, {}, 1 + 2, T - 1),
    ({"name": "draft_lv", "n": 0}, {}, 1, T - 1),
    ({"name": "drtune", "K": 2}, {"t_min": 1, "s": 5}, 2, T - 2),  # t_train = {5, 17}
    ({"name": "drtune", "K": 5}, {"t_min": 2, "s": 3}, 5, T - 1 - 5),  # t_train = {3, 8, 13, 18, 23}, stop at 2
    ({"name": "full_backprop", "last_k": 4, "checkpoint": False}, {}, 4, T - 4),
]


@pytest.mark.parametrize("cfg,pinned,kept,without", CASES, ids=lambda v: str(v) if isinstance(v, dict) else None)
def test_toy_kept_evaluations(cfg, pinned, kept, without):
    backbone = ToyBackbone(ToyConfig(cond_dim=2))
    counter = run_step(backbone, torch.randn(2, 2), cfg, **pinned)
    assert (counter.grad, counter.no_grad) == (kept, without)


def test_flux_leapalign_keeps_two_evaluations():
    backbone = tiny_flux()
    cond = FluxCond(torch.randn(1, 4, TEXT_DIM), torch.randn(1, POOLED_DIM))
    counter = run_step(backbone, cond, {"name": "leapalign"}, k=18, j=6)
    assert (counter.grad, counter.no_grad) == (2, T - 2)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in backbone.transformer.proj_out.parameters())


def test_full_backprop_checkpointing_recomputes_instead_of_storing():
    """With checkpointing the kept forwards run once more in backward (K extra calls), same gradient."""
    torch.manual_seed(0)
    backbone = ToyBackbone(ToyConfig(cond_dim=2, dtype="float64"))
    cond = torch.randn(2, 2, dtype=torch.float64)
    grads = {}
    for checkpoint in (False, True):
        backbone.transformer.zero_grad()
        counter = run_step(backbone, cond, {"name": "full_backprop", "last_k": 5, "checkpoint": checkpoint})
        grads[checkpoint] = torch.cat([p.grad.flatten() for p in backbone.transformer.parameters() if p.grad is not None])
        assert counter.grad == (10 if checkpoint else 5)
    assert torch.allclose(grads[True], grads[False], rtol=1e-12, atol=0)


def evaluations(cfg, pinned) -> tuple[int, int]:
    """(kept, all) velocity evaluations of one step of ``cfg`` with ``pinned`` choices on the toy."""
    backbone = ToyBackbone(ToyConfig(cond_dim=2))
    counter = run_step(backbone, torch.randn(2, 2), cfg, **pinned)
    return counter.grad, counter.grad + counter.no_grad


@pytest.mark.parametrize("cfg, draws", [
    ({"name": "refl", "m": 11}, [{"t_min": t} for t in range(1, 12)]),
    ({"name": "drtune", "K": 2, "m": 11}, [{"t_min": t, "s": s} for t in range(1, 12) for s in range(1, 14)]),
    ({"name": "drtune", "K": 3, "m": 5}, [{"t_min": t, "s": s} for t in range(1, 6) for s in range(1, 10)]),
    ({"name": "leapalign"}, [{"k": k, "j": j} for k in (25, 9, 2) for j in range(1, k)]),
    ({"name": "draft_lv", "n": 2}, [{}]),
])
def test_peak_choices_are_the_heaviest_draw(cfg, draws):
    """``Method.peak_choices`` (what ``leapbench plan`` traces and ``bench memory`` measures) keeps as many
    evaluations as the heaviest of every possible draw, and rolls out as far: the most kept, then the most in all."""
    method = build_method(cfg)
    heaviest = max(evaluations(cfg, d) for d in draws)
    assert evaluations(cfg, method.peak_choices(T)) == heaviest
