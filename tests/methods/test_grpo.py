"""GRPO (methods/grpo.py): the clipped objective's exact gradient, advantages, steps, window, memory, errors."""

import math

import pytest
import torch
from torch.func import functional_call, grad

from benchmark.core.backbones.toy import ToyBackbone, ToyConfig
from benchmark.core.engine import rollout
from benchmark.core.errors import ConfigError
from methods import LossContext, build_method, method_config
from methods.grpo import WindowConfig, group_advantages

T = 6


pytestmark = pytest.mark.usefixtures("one_thread")


def toy(seed, dtype="float64"):
    torch.manual_seed(seed)
    return ToyBackbone(ToyConfig(cond_dim=2, hidden=16, depth=2, dtype=dtype))


def sde_rollout(backbone, step, cond, seed=1):
    x_T = backbone.noise(len(cond), torch.Generator().manual_seed(seed))
    return rollout(backbone, cond, x_T, backbone.schedule(T), step, generator=torch.Generator().manual_seed(seed + 1))


def test_clipped_objective_gradient_equals_the_hand_computed_one():
    """Pinned noise, old log-probs (some ratios outside [1 - eps, 1 + eps]) and advantages, KL to a reference."""
    eta, eps, beta, G = 0.7, 0.2, 0.3, 2
    backbone, reference = toy(0), toy(1)
    cond = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    cfg = {"name": "grpo", "group_size": G, "eta": eta, "clip_range": eps, "kl_weight": beta, "adv_clip": 1.5}
    method = build_method(cfg)
    probe = method.start(T, trained=(6, 3, 1))
    traj = sde_rollout(backbone, probe, cond)
    D = 2
    # per-dimension log ratios of [-0.5, -0.1, 0.1, 0.5] per sample, shuffled over the steps: some clipped
    shifts = torch.tensor([[-0.5, -0.1, 0.1, 0.5], [0.5, 0.1, -0.1, -0.5], [0.1, -0.5, 0.5, -0.1]], dtype=torch.float64)
    old = {t: traj.logprob[t] - D * shifts[i] for i, t in enumerate((6, 3, 1))}
    A_pinned = torch.tensor([1.0, -0.4, -2.0, 0.7], dtype=torch.float64)  # -2.0 is clipped to adv_clip = 1.5
    step = method.start(T, trained=(6, 3, 1), old_logprob=old, advantages=A_pinned)
    loss, metrics = step.loss(traj, LossContext(backbone, cond, reward=lambda x: x.sum(1), reference=reference))
    params = {n: p for n, p in backbone.transformer.named_parameters() if p.requires_grad}
    ours = torch.autograd.grad(loss, list(params.values()))

    def hand_loss(p):
        A = A_pinned.clamp(-1.5, 1.5)
        total = 0.0
        for i, t in enumerate((6, 3, 1)):
            s, s_next = traj.sigma(t).double(), traj.sigma(t - 1).double()
            x, x_prev = traj.x[t], traj.x[t - 1]
            v = functional_call(backbone.transformer, p, (x, traj.sigma(t), cond))
            v_ref = reference.transformer(x, traj.sigma(t), cond).detach()
            sigma_t = eta * torch.sqrt(s / (1 - (s_next if s == 1 else s)))  # Flow-GRPO's noise level
            std = sigma_t * torch.sqrt(s - s_next)
            mu = x + (v + sigma_t**2 / (2 * s) * (x + (1 - s) * v)) * (s_next - s)
            mu_ref = x + (v_ref + sigma_t**2 / (2 * s) * (x + (1 - s) * v_ref)) * (s_next - s)
            logp = torch.distributions.Normal(mu, std).log_prob(x_prev).sum(1)
            ratio = torch.exp((logp - old[t]) / D)
            # PPO's surrogate written by cases: A >= 0 caps the ratio at 1 + eps, A < 0 floors it at 1 - eps
            surrogate = torch.where(A >= 0, A * torch.minimum(ratio, torch.full_like(ratio, 1 + eps)),
                                    A * torch.maximum(ratio, torch.full_like(ratio, 1 - eps)))
            kl = ((mu - mu_ref) ** 2).sum(1) / (2 * std**2) / D
            total = total + (-surrogate + beta * kl).mean()
        return total / 3

    expected = grad(hand_loss)({k: v.detach() for k, v in params.items()})
    assert torch.allclose(loss, hand_loss({k: v.detach() for k, v in params.items()}), rtol=1e-12, atol=1e-14)
    for name, g in zip(params, ours):
        torch.testing.assert_close(g, expected[name], rtol=1e-10, atol=1e-13)
    assert 0 < metrics["clip_frac"] < 1 and metrics["kl"] > 0
    # the clip matters: without it (eps -> huge ratios kept) the gradient differs
    loose = build_method({**cfg, "clip_range": 0.9}).start(T, trained=(6, 3, 1), old_logprob=old, advantages=A_pinned)
    loose_loss, _ = loose.loss(traj, LossContext(backbone, cond, reward=lambda x: x.sum(1), reference=reference))
    loose_grad = torch.autograd.grad(loose_loss, list(params.values()))
    assert max((a - b).abs().max().item() for a, b in zip(loose_grad, ours)) > 1e-3


def test_on_policy_ratio_is_one_and_gradient_is_advantage_times_score():
    """With the sampling pass's own log-probs rho = 1 exactly, and the loss gradient is -mean(A grad log pi) / D."""
    backbone = toy(0)
    cond = torch.randn(4, 2, dtype=torch.float64)
    method = build_method({"name": "grpo", "group_size": 2, "eta": 0.5, "train_fraction": 1.0})
    step = method.start(T, torch.Generator().manual_seed(0))
    assert step.trained == (6, 5, 4, 3, 2, 1)
    traj = sde_rollout(backbone, step, cond)
    r = torch.tensor([1.0, 3.0, 2.0, 2.5], dtype=torch.float64)
    loss, metrics = step.loss(traj, LossContext(backbone, cond, reward=lambda x: r))
    assert metrics["ratio_dev"] == 0.0 and metrics["clip_frac"] == 0.0
    A = group_advantages(r, 2)
    torch.testing.assert_close(A, torch.tensor([-1, 1, -1, 1], dtype=torch.float64) / math.sqrt(2), atol=1e-7, rtol=0)
    params = [p for p in backbone.transformer.parameters() if p.requires_grad]
    ours = torch.autograd.grad(loss, params)
    from benchmark.core.engine import step_logprob

    logp = sum(step_logprob(traj.x[t], traj.x[t - 1], backbone.velocity(traj.x[t], traj.sigma(t), cond),
                            traj.sigma(t), traj.sigma(t - 1), 0.5) for t in step.trained)
    expected = torch.autograd.grad(-(A * logp).mean() / (2 * 6), params)
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)


def test_reward_is_called_without_gradient_and_may_be_non_differentiable():
    backbone = toy(0, "float32")
    cond = torch.randn(4, 2)
    step = build_method({"name": "grpo", "group_size": 4, "eta": 0.7, "train_fraction": 0.5}).start(T)

    def counting_reward(x0):  # a GenEval-like 0/1 score: no gradient exists
        assert not torch.is_grad_enabled()
        return (x0[:, 0] > 0).float() + torch.arange(4.0) * 0.1

    loss, _ = step.loss(sde_rollout(backbone, step, cond), LossContext(backbone, cond, reward=counting_reward))
    loss.backward()
    assert sum(p.grad.abs().sum() for p in backbone.transformer.parameters() if p.grad is not None) > 0


def test_per_reward_advantages_are_summed_with_weights():
    r1 = torch.tensor([1.0, 2.0, 0.0, 4.0])
    r2 = torch.tensor([100.0, 300.0, 200.0, 100.0])
    parts = {"a": (r1, 1.0), "b": (r2, 0.5)}
    step = build_method({"name": "grpo", "group_size": 2, "advantage": "per_reward"}).start(T)
    expected = 1.0 * group_advantages(r1, 2) + 0.5 * group_advantages(r2, 2)
    torch.testing.assert_close(step.advantage(r1 + 0.5 * r2, parts), expected)
    total = build_method({"name": "grpo", "group_size": 2}).start(T)
    assert not torch.allclose(total.advantage(r1 + 0.5 * r2, parts), expected)  # the large reward dominates there
    with pytest.raises(ConfigError, match="method.advantage"):
        step.advantage(r1, {})  # a single reward has no parts


def test_trained_steps_random_or_first():
    random_ = build_method({"name": "grpo", "train_fraction": 0.6})
    picks = {random_.start(16, torch.Generator().manual_seed(s)).trained for s in range(5)}
    assert all(len(p) == 9 for p in picks) and len(picks) > 1  # floor(0.6 * 16) = 9, DanceGRPO's int()
    first = build_method({"name": "grpo", "train_fraction": 0.25, "train_steps": "first"}).start(16)
    assert first.trained == (16, 15, 14, 13)
    assert build_method({"name": "grpo", "train_fraction": 0.01}).start(16).trained.__len__() == 1


def test_mixgrpo_window_slides_and_rolls_back():
    w = WindowConfig(size=4, shift_every=25, stride=1)
    assert w.steps(25, 1) == w.steps(25, 25) == (25, 24, 23, 22)
    assert w.steps(25, 26) == (24, 23, 22, 21)
    assert w.steps(25, 21 * 25 + 1) == (4, 3, 2, 1)  # the last position
    assert w.steps(25, 22 * 25 + 1) == (25, 24, 23, 22)  # rolled back
    assert WindowConfig(size=4, shift_every=2, stride=3, roll_back=False).steps(10, 100) == (4, 3, 2, 1)
    method = build_method({"name": "grpo", "group_size": 2, "eta": 0.7, "train_fraction": 1.0,
                           "window": {"size": 2, "shift_every": 3, "stride": 2}})
    step = method.start(T, iteration=4)  # the second window position: steps 4, 3
    assert step.trained == (4, 3) and step.choices["window_start"] == 2
    assert [step.sde_noise(t) for t in range(T, 0, -1)] == [0, 0, 0.7, 0.7, 0, 0]
    backbone, cond = toy(0), torch.randn(2, 2, dtype=torch.float64)
    traj = sde_rollout(backbone, step, cond)
    ode = rollout(backbone, cond, traj.x[T], backbone.schedule(T))
    assert sorted(traj.logprob) == [3, 4]
    assert all(torch.equal(traj.x[t], ode.x[t]) for t in (6, 5, 4))  # ODE up to the window
    assert not torch.allclose(traj.x[2], ode.x[2])


class Counter:
    def __init__(self, module):
        self.grad, self.no_grad = 0, 0
        module.register_forward_pre_hook(self)

    def __call__(self, module, args):
        self.grad += torch.is_grad_enabled()
        self.no_grad += not torch.is_grad_enabled()


@pytest.mark.parametrize("checkpoint", [False, True])
def test_rollout_keeps_nothing_and_the_loss_only_the_trained_steps(checkpoint):
    backbone, cond = toy(0, "float32"), torch.randn(4, 2)
    counter = Counter(backbone.transformer)
    step = build_method({"name": "grpo", "group_size": 2, "train_fraction": 0.5, "checkpoint": checkpoint}).start(T)
    traj = sde_rollout(backbone, step, cond)
    assert (counter.grad, counter.no_grad) == (0, T) and not traj.v[T].requires_grad
    loss, _ = step.loss(traj, LossContext(backbone, cond, reward=lambda x: x.sum(1)))
    loss.backward()
    assert counter.grad == 3 * (2 if checkpoint else 1)  # checkpointing recomputes the 3 kept forwards


@pytest.mark.parametrize("preset", ["dancegrpo", "mixgrpo", "flowgrpo"])
def test_peak_choices_train_as_many_evaluations_as_a_draw(preset):
    """The pinned heaviest rollout of a preset (what ``leapbench plan`` traces) trains the same number of
    evaluations per sample as the preset's own draws (DanceGRPO: a permutation per sample), at iteration 1."""
    method = build_method({"name": "grpo", "preset": preset})
    T_ = 16
    pins = method.peak_choices(T_)
    pinned, drawn = method.start(T_, **pins), method.start(T_, torch.Generator().manual_seed(3), iteration=1)
    rows = drawn.trained_steps(2, torch.Generator().manual_seed(4))
    assert pins["iteration"] == 1 and pinned.trained_steps(2, None) == [tuple(pins["trained"])] * 2
    assert [len(r) for r in rows] == [len(pins["trained"])] * 2 and set(pins["trained"]) <= set(drawn.trainable)


BAD = [
    ({"group_size": 1}, "method.group_size", ">= 2"),
    ({"eta": 0}, "method.eta", "> 0"),
    ({"eta": -0.3}, "method.eta", "> 0"),
    ({"clip_range": 0}, "method.clip_range", "(0, 1)"),
    ({"clip_range": 1.0}, "method.clip_range", "(0, 1)"),
    ({"train_fraction": 0}, "method.train_fraction", "(0, 1]"),
    ({"train_fraction": 1.5}, "method.train_fraction", "(0, 1]"),
    ({"kl_weight": -0.1}, "method.kl_weight", ">= 0"),
    ({"adv_clip": 0}, "method.adv_clip", "> 0"),
    ({"train_steps": "last"}, "method.train_steps", "random, first"),
    ({"advantage": "mean"}, "method.advantage", "reward, per_reward"),
    ({"window": {"size": 0}}, "method.window.size", ">= 1"),
    ({"window": {"shift_every": 0}}, "method.window.shift_every", ">= 1"),
    ({"clip": 0.2}, "method.clip", "a known field (name, group_size, eta"),
    ({"diffusion": "linear"}, "method.diffusion", "scaled, constant"),
    ({"reward_on": "x0"}, "method.reward_on", "sample, prediction"),
    ({"kl_form": "approx"}, "method.kl_form", "exact, flow_grpo"),
    ({"advantage_std": "prompt"}, "method.advantage_std", "group, global"),
    ({"minibatches": 0}, "method.minibatches", ">= 1"),
    ({"epochs": 0}, "method.epochs", ">= 1"),
    ({"exclude_last": -1}, "method.exclude_last", ">= 0"),
    ({"timestep_levels": -1000}, "method.timestep_levels", ">= 0"),
    ({"schedule_shift": 0}, "method.schedule_shift", "> 0 or null"),
    ({"preset": "grpo"}, "method.preset", "one of dancegrpo, mixgrpo, flowgrpo"),
]


@pytest.mark.parametrize("values,field,expected", BAD, ids=lambda v: str(v) if isinstance(v, dict) else None)
def test_bad_config_gives_one_clear_error(values, field, expected):
    with pytest.raises(ConfigError) as err:
        method_config({"name": "grpo", **values})
    assert err.value.field == field and str(err.value).startswith(f"{field}: expected") and expected in str(err.value)


def test_window_must_fit_the_schedule():
    with pytest.raises(ConfigError, match=r"method\.window\.size: expected at most schedule.num_steps \(16\)"):
        build_method({"name": "grpo", "window": {"size": 20}}).start(16)


def test_exclusions_and_per_sample_steps():
    """DanceGRPO never trains the last step and draws a permutation per sample; MixGRPO's window stays off the
    last two steps; per-sample pins must give one row per sample."""
    method = build_method({"name": "grpo", "group_size": 2, "train_steps": "per_sample", "exclude_last": 1})
    step = method.start(T)
    assert step.trainable == (6, 5, 4, 3, 2) and step.trained is None
    table = step.trained_steps(4, torch.Generator().manual_seed(0))
    assert [len(r) for r in table] == [3] * 4 and all(1 not in r for r in table) and len(set(table)) > 1
    pinned = method.start(T, trained=[[6, 2], [3, 4]])
    assert pinned.trained_steps(2, None) == [(6, 2), (4, 3)]
    with pytest.raises(ConfigError, match="one row of timesteps per sample"):
        pinned.trained_steps(3, None)
    with pytest.raises(ConfigError, match="trainable SDE steps"):
        method.start(T, trained=[1])
    window = build_method({"name": "grpo", "exclude_last": 2, "window": {"size": 3, "shift_every": 1}})
    assert [window.start(T, iteration=i).sde for i in (1, 2, 3)] == [{6, 5, 4}, {5, 4, 3}, {6, 5, 4}]
    with pytest.raises(ConfigError, match=r"method\.window\.size: expected at most schedule.num_steps - "
                                          r"method\.exclude_last \(4\)"):
        build_method({"name": "grpo", "exclude_last": 2, "window": {"size": 5}}).start(T)
    with pytest.raises(ConfigError, match="method.exclude_last: expected less than schedule.num_steps"):
        build_method({"name": "grpo", "exclude_last": 6}).start(T)


def test_reward_on_the_prediction_and_global_advantages():
    """DanceGRPO scores x_1 - sigma_1 v(x_1); Flow-GRPO divides by the population std of the whole batch + 1e-4."""
    backbone, cond = toy(0), torch.randn(4, 2, dtype=torch.float64)
    step = build_method({"name": "grpo", "group_size": 2, "reward_on": "prediction"}).start(T)
    traj = sde_rollout(backbone, step, cond)
    seen = []
    step.observe(traj, LossContext(backbone, cond, reward=lambda x: seen.append(x) or x.sum(1)))
    x1, v1 = traj.x[1], backbone.velocity(traj.x[1], traj.sigma(1), cond)
    torch.testing.assert_close(seen[0], x1 - traj.sigma(1).double() * v1, rtol=0, atol=1e-15)
    assert not torch.allclose(seen[0], traj.x0)
    r = torch.tensor([1.0, 3.0, 2.0, 6.0], dtype=torch.float64)
    flow = build_method({"name": "grpo", "group_size": 2, "advantage_std": "global"})
    expected = torch.tensor([-1.0, 1.0, -2.0, 2.0], dtype=torch.float64) / (r.std(unbiased=False) + 1e-4)
    torch.testing.assert_close(flow.advantages(r, {}), expected, rtol=1e-15, atol=0)
