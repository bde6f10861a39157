"""Algorithm 1 of the LeapAlign supplement, written naively: one full graph, explicit stop-grads, no engine.

Every velocity is evaluated with autograd on; "grad off" (Algorithm 1 lines 11-14) is modelled by
stop-gradient on what that region produces. Connectors use the paper's form x_hat + sg(x - x_hat).
This file shares no code with ``benchmark.core.engine`` or ``methods`` on purpose: it is the reference.
"""

import torch


def sg(x):
    return x.detach()


def mean_abs(a, b):
    return (a - b).abs().flatten(1).mean(1)


def refl(model, cond, x, sigmas, reward, t_min):
    T = len(sigmas) - 1
    s = lambda t: sigmas[T - t]  # noqa: E731
    for t in range(T, 0, -1):
        v = model(x, s(t), cond)
        if t == t_min:
            x0 = x - s(t) * v  # line 25, one-step prediction to sigma = 0
            return -reward(x0).mean()
        x = sg(x + (s(t - 1) - s(t)) * sg(v))


def drtune(model, cond, x, sigmas, reward, t_min, t_train):
    T = len(sigmas) - 1
    s = lambda t: sigmas[T - t]  # noqa: E731
    for t in range(T, 0, -1):
        v = model(sg(x), s(t), cond)  # line 16
        if t not in t_train:
            v = sg(v)  # line 18
        if t == t_min:
            return -reward(x - s(t) * v).mean()
        x = x + (s(t - 1) - s(t)) * v  # the state keeps the graph


def draft_lv(model, cond, x, sigmas, reward, eps):
    T = len(sigmas) - 1
    s = lambda t: sigmas[T - t]  # noqa: E731
    for t in range(T, 0, -1):
        v = model(x, s(t), cond)
        if t != 1:
            v = sg(v)
        x = x + (s(t - 1) - s(t)) * v
        if t != 1:
            x = sg(x)
    total = reward(x)
    for e in eps:  # lines 43-47
        x1 = (1 - s(1)) * sg(x) + s(1) * e
        total = total + reward(x1 + (0 - s(1)) * model(x1, s(1), cond))
    return -total.mean()


def full_backprop(model, cond, x, sigmas, reward, K):
    T = len(sigmas) - 1
    s = lambda t: sigmas[T - t]  # noqa: E731
    for t in range(T, 0, -1):
        v = model(x, s(t), cond)
        x = x + (s(t - 1) - s(t)) * v
        if t > K:
            x = sg(x)
    return -reward(x).mean()


def leapalign(model, cond, x, sigmas, reward, ts, alpha, lam, tau, reward_on="x0", weighting="both",
              nested_only=False):
    """Lines 6-41 for a chain of leap points ts = (t_1 > ... > t_L); two points are (k, j)."""
    T = len(sigmas) - 1
    s = lambda t: sigmas[T - t]  # noqa: E731
    x_hat, x_at = {}, {}
    prev = None  # (connected state, its velocity, its timestep) of the previous leap point
    for t in range(T, 0, -1):
        x_at[t] = x
        if t in ts and prev is not None:
            x_hat[t] = (sg(prev[0]) if nested_only else prev[0]) - (s(prev[2]) - s(t)) * prev[1]
            x = x_hat[t] + sg(x - x_hat[t])  # line 20
            v = model(alpha * x + (1 - alpha) * sg(x), s(t), cond)  # line 21
        else:
            v = model(x, s(t), cond)
        if t not in ts:
            v = sg(v)
        if t in ts:
            prev = (x, v, t)
        x = sg(x) + (s(t - 1) - s(t)) * sg(v)  # lines 32-34
    x_0 = x
    x_hat[0] = (sg(prev[0]) if nested_only else prev[0]) - s(prev[2]) * prev[1]  # line 31
    d_mid = [mean_abs(x_at[t], x_hat[t]) for t in ts[1:]]
    d_0 = mean_abs(x_0, x_hat[0])
    terms = {"both": d_mid + [d_0], "dj": d_mid, "d0": [d_0], "none": []}[weighting]
    w = sg(1 / sum(torch.clamp(d, min=tau) for d in terms)) if terms else torch.ones_like(d_0)  # line 37
    x0 = x_hat[0] + sg(x_0 - x_hat[0]) if reward_on == "x0" else x_hat[0]  # line 38
    return (w * torch.relu(lam - reward(x0))).mean()
