"""What the benchmarks measure: one training step of a method on a FLUX backbone, split into its parts.

A step is the training loop's step without the bookkeeping: draw the method's choices, roll out,
build the loss (decode + reward inside), backward, AdamW. For a method that samples before it learns (the
GRPO presets, ``Method.updates``) it is the loop's step of ``benchmark.training.policy`` on one group of the
preset's size: every sample rolled out (no gradient) and scored, the group's advantages, then the preset's
optimiser steps; its cost per sample is the step's over the group size. ``Probe`` wraps the backbone's
velocity, decode and the reward to count calls (with and without autograd) and to time them, so the
benchmarks can compare a step with the floor of its parts measured alone.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from benchmark.core.backbones.flux import FluxBackbone, FluxCond
from benchmark.core.backbones.tiny import POOLED_DIM, TEXT_DIM, tiny_flux
from benchmark.core.engine import rollout
from benchmark.training.trainer import compile_blocks
from evaluators.rewards.toy import TinyConvReward
from methods import LossContext, Method, build_method

BENCH_METHODS = {
    "leapalign": {"name": "leapalign", "lam": 1e3},  # hinge always active: every step backpropagates
    "refl": {"name": "refl"},
    "draft_lv": {"name": "draft_lv"},
    "drtune": {"name": "drtune"},
    "full_backprop": {"name": "full_backprop", "checkpoint": False},
    "full_backprop_ckpt": {"name": "full_backprop", "checkpoint": True},
    # the policy-gradient peers as they train (a single bench reward: MixGRPO's aggregation of one part is its own)
    "dancegrpo": {"name": "grpo", "preset": "dancegrpo"},
    "mixgrpo": {"name": "grpo", "preset": "mixgrpo", "advantage": "reward"},
    "flowgrpo": {"name": "grpo", "preset": "flowgrpo"},
}


def bench_config(method: str, steps: int) -> dict:
    """The method's bench config at T steps: ReFL's and DRTune's early-stop window scaled like the paper's
    last 11 of 25 steps."""
    cfg = dict(BENCH_METHODS[method])
    if cfg["name"] in ("refl", "drtune"):
        cfg["m"] = max(1, round(steps * 11 / 25))
    return cfg


PARTS = ("v_grad", "v_nograd", "decode", "reward", "decode_nograd", "reward_nograd")  # what the probe counts


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Probe:
    """Counts and times the backbone's velocity calls, decodes and reward calls during a step."""

    device: torch.device
    calls: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PARTS, 0))
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PARTS, 0.0))

    def wrap(self, fn, kind: str | None = None):
        def timed(*args, **kwargs):
            grad = torch.is_grad_enabled()
            key = ("v_grad" if grad else "v_nograd") if kind is None else kind if grad else f"{kind}_nograd"
            sync(self.device)
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            sync(self.device)
            self.seconds[key] += time.perf_counter() - start
            self.calls[key] += 1
            return out

        return timed


class ProbedBackbone:
    """The backbone seen through a probe: same contract, every call counted and timed."""

    def __init__(self, backbone: FluxBackbone, probe: Probe):
        self.inner, self.probe = backbone, probe
        self.transformer = backbone.transformer
        self.velocity = probe.wrap(backbone.velocity)
        self.decode = probe.wrap(backbone.decode, "decode")


@dataclass
class BenchSetup:
    backbone: FluxBackbone
    cond: FluxCond
    reward: TinyConvReward
    optimizer: torch.optim.Optimizer
    device: torch.device
    batch: int

    @classmethod
    def build(cls, resolution: int = 128, batch: int = 1, device: str = "cpu", layers: int = 1, seed: int = 0,
              compile_mode: str | None = None):
        dev = torch.device(device)
        backbone = tiny_flux(height=resolution, width=resolution, seed=seed, layers=layers)
        backbone.transformer.to(dev).train()
        if compile_mode:
            compile_blocks(backbone.transformer, compile_mode)
        backbone.vae.to(dev).requires_grad_(False)
        g = torch.Generator().manual_seed(seed)
        cond = FluxCond(torch.randn(batch, 16, TEXT_DIM, generator=g), torch.randn(batch, POOLED_DIM, generator=g)).to(dev)
        optimizer = torch.optim.AdamW(backbone.transformer.parameters(), lr=1e-5, weight_decay=1e-4)
        return cls(backbone, cond, TinyConvReward().to(dev), optimizer, dev, batch)


def train_step(setup: BenchSetup, method: str, steps: int, seed: int = 0, probe: Probe | None = None,
               heaviest: bool = False) -> dict:
    """One training step (rollout, loss, backward, AdamW) with per-part seconds, call counts, the samples it drew
    and its optimiser steps. ``heaviest``: the method's choices pinned to its heaviest rollout
    (``Method.peak_choices``) instead of drawn from ``seed``."""
    backbone = ProbedBackbone(setup.backbone, probe) if probe else setup.backbone
    reward = probe.wrap(setup.reward, "reward") if probe else setup.reward
    strategy = build_method(bench_config(method, steps))
    if strategy.updates is not None:
        return policy_step(setup, strategy, steps, seed, backbone, reward, heaviest)
    g = torch.Generator().manual_seed(seed)
    step = strategy.start(steps, g, **(strategy.peak_choices(steps) if heaviest else {}))
    x_T = setup.backbone.noise(setup.batch, torch.Generator(setup.device).manual_seed(seed))
    sigmas = setup.backbone.schedule(steps).to(setup.device)
    timings = {}
    sync(setup.device)
    start = time.perf_counter()
    traj = rollout(backbone, setup.cond, x_T, sigmas, step)
    sync(setup.device)
    timings["rollout"] = time.perf_counter() - start
    ctx = LossContext(backbone, setup.cond, reward=lambda x0: reward(backbone.decode(x0), None), generator=g)
    start = time.perf_counter()
    loss, _ = step.loss(traj, ctx)
    sync(setup.device)
    timings["loss"] = time.perf_counter() - start
    start = time.perf_counter()
    loss.backward()
    sync(setup.device)
    timings["backward"] = time.perf_counter() - start
    start = time.perf_counter()
    setup.optimizer.step()
    setup.optimizer.zero_grad(set_to_none=True)
    sync(setup.device)
    timings["optimizer"] = time.perf_counter() - start
    timings["total"] = sum(timings.values())
    return {**timings, "samples": setup.batch, "updates": 1}


class Timer:
    """Seconds per part, summed over the calls of a step (the device synchronised around each)."""

    def __init__(self, device: torch.device):
        self.device, self.seconds = device, dict.fromkeys(("rollout", "loss", "backward", "optimizer"), 0.0)

    @contextmanager
    def __call__(self, part: str):
        sync(self.device)
        start = time.perf_counter()
        yield
        sync(self.device)
        self.seconds[part] += time.perf_counter() - start


def policy_step(setup: BenchSetup, method: Method, steps: int, seed: int, backbone, reward, heaviest: bool) -> dict:
    """One group of ``method.group_size`` samples through the loop of ``benchmark.training.policy``: rollouts of
    the bench's batch without gradient, scores, advantages, then ``epochs x minibatches`` optimiser steps."""
    timer, device = Timer(setup.device), setup.device
    flow, sigmas = method.time_grid.model(backbone), method.time_grid.sigmas(setup.backbone, steps).to(device)
    sampled = []
    for i in range(method.group_size // setup.batch):
        g = torch.Generator().manual_seed(seed + i)
        step = method.start(steps, g, **{"iteration": 1, **(method.peak_choices(steps) if heaviest else {})})
        ctx = LossContext(flow, setup.cond, score=lambda x0: (reward(backbone.decode(x0), None), {}), generator=g)
        x_T = setup.backbone.noise(setup.batch, torch.Generator(device).manual_seed(seed + i))
        with timer("rollout"), torch.no_grad():
            traj = rollout(flow, setup.cond, x_T, sigmas, step, generator=torch.Generator(device).manual_seed(seed + i))
        with timer("loss"):
            step.observe(traj, ctx)
        sampled.append((step, traj, ctx))
    advantages = method.advantages(torch.cat([step.scores[0] for step, _, _ in sampled]), {})
    for (_, _, ctx), share in zip(sampled, advantages.split(setup.batch)):
        ctx.advantages = share
    per_update = len(sampled) // method.updates.minibatches
    for _ in range(method.updates.epochs):
        for m in range(method.updates.minibatches):
            for step, traj, ctx in sampled[m * per_update:(m + 1) * per_update]:
                with timer("loss"):
                    loss, _ = step.loss(traj, ctx)
                with timer("backward"):
                    (loss / per_update).backward()
            with timer("optimizer"):
                setup.optimizer.step()
                setup.optimizer.zero_grad(set_to_none=True)
    updates = method.updates.epochs * method.updates.minibatches
    return {**timer.seconds, "total": sum(timer.seconds.values()), "samples": method.group_size, "updates": updates}
