"""``bench step``: one training step's time against the floor of its parts, measured side by side.

The floor is what the step cannot avoid: as many no-grad velocity evaluations, kept evaluations with forward
and backward, decodes and rewards with forward and backward (forward only where the step made them without
gradient: the GRPO presets score without it) as the step made (counted by a probe), and as many AdamW steps, run back to back in the same process without the engine and the method around them. Step and
floor alternate for ``rounds`` rounds and each keeps its fastest round: other processes only ever add time,
so the fastest round is the steadiest estimate, and alternating exposes both to the same conditions.
measured / floor near 1 means the engine and the methods add nothing beyond the model's own work; the
quartiles of the per-round ratios show how noisy the machine was. With ``ops``, the aten operators one step
and one floor dispatch are counted (torch.profiler; the same count on every run): what the step does beyond
its parts, op by op. ``s_per_sample`` is the step's time over the samples it drew (1 for the reward-gradient
methods, a group for the GRPO presets): their costs compared on one engine.

The floor used to be each part's fastest of 20 isolated calls, against the step's median: with any
background load a sequence of millisecond-scale calls runs slower than the luckiest single call, so that
ratio moved between 1.03 and 1.33 from run to run without the step changing (docs/performance.md).
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from typing import Callable

import torch

from benchmark.cli.bench.harness import BenchSetup, Probe, sync, train_step


def timed(fn: Callable[[], None], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def parts(setup: BenchSetup) -> dict[str, Callable[[], None]]:
    """One call of each part a step is made of, keyed like ``Probe.calls``: no-grad velocity, velocity
    forward + backward, decode and reward forward + backward, and each of those two without gradient."""
    bb, dev = setup.backbone, setup.device
    x = bb.noise(setup.batch, torch.Generator(dev).manual_seed(1))
    sigma = bb.schedule(10)[5].to(dev)

    def v_nograd():
        with torch.no_grad():
            bb.velocity(x, sigma, setup.cond)

    def v_grad():
        bb.velocity(x, sigma, setup.cond).square().mean().backward()

    def decode():
        bb.decode(x.clone().requires_grad_()).mean().backward()

    def reward():
        setup.reward(torch.rand(setup.batch, 3, bb.height, bb.width, device=dev, requires_grad=True)).sum().backward()

    def decode_nograd():
        with torch.no_grad():
            bb.decode(x)

    def reward_nograd():
        with torch.no_grad():
            setup.reward(torch.rand(setup.batch, 3, bb.height, bb.width, device=dev))

    return {"v_nograd": v_nograd, "v_grad": v_grad, "decode": decode, "reward": reward,
            "decode_nograd": decode_nograd, "reward_nograd": reward_nograd}


def floor_of(setup: BenchSetup, calls: dict[str, int], updates: int) -> Callable[[], None]:
    """The step's parts back to back, each as often as the step made it, then ``updates`` AdamW steps (as the
    step ends; a GRPO preset takes several per rollout)."""
    each = parts(setup)
    params = [p for p in setup.backbone.transformer.parameters() if p.requires_grad]

    def floor():
        for name, fn in each.items():
            for _ in range(calls.get(name, 0)):
                fn()
        for _ in range(updates):
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            setup.optimizer.step()
        setup.optimizer.zero_grad(set_to_none=True)

    return floor


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def op_counts(fn: Callable[[], object]) -> Counter:
    """The aten operators one call of ``fn`` dispatches, by name (nested ones included)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return Counter({e.key: e.count for e in prof.key_averages() if e.key.startswith("aten::")})


def ops_beyond(step: Counter, floor: Counter) -> dict:
    """How many more operators the step dispatches than its floor, and the kinds that make the difference."""
    extra = Counter({k: step[k] - floor[k] for k in step | floor})
    top = ", ".join(f"{k.removeprefix('aten::')} {n:+d}" for k, n in extra.most_common(4) if n > 0)
    return {"ops_step": step.total(), "ops_floor": floor.total(), "ops_beyond": step.total() - floor.total(),
            "ops_beyond_top": top}


def bench_method(setup: BenchSetup, method: str, steps: int, rounds: int, ops: bool = False) -> dict:
    """``rounds`` alternating rounds of the step (seed 0: the same choices, so the same counts, every round)
    and its floor; the fastest of each, their ratio and the quartiles of the per-round ratios."""
    probe = Probe(setup.device)
    split = train_step(setup, method, steps, probe=probe)  # the counts and split; also the warm-up
    floor = floor_of(setup, probe.calls, split["updates"])
    floor()  # warm-up
    step_s, floor_s = [], []
    for _ in range(rounds):
        step_s.append(train_step(setup, method, steps, seed=0)["total"])
        floor_s.append(timed(floor, setup.device))
    q1, median, q3 = quartiles([s / f for s, f in zip(step_s, floor_s)])
    counted = ops_beyond(op_counts(lambda: train_step(setup, method, steps, seed=0)), op_counts(floor)) if ops else {}
    return {
        "method": method, "steps": steps, "measured_s": min(step_s), "floor_s": min(floor_s),
        "ratio": min(step_s) / min(floor_s), "round_ratio_q1": q1, "round_ratio_median": median, "round_ratio_q3": q3,
        "rounds": rounds, "samples": split["samples"], "s_per_sample": min(step_s) / split["samples"],
        "updates": split["updates"], "rollout_s": split["rollout"], "grad_eval_s": probe.seconds["v_grad"],
        "nograd_eval_s": probe.seconds["v_nograd"], "decode_s": probe.seconds["decode"] + probe.seconds["decode_nograd"],
        "reward_s": probe.seconds["reward"] + probe.seconds["reward_nograd"], "backward_s": split["backward"],
        "optimizer_s": split["optimizer"], **{f"n_{k}": v for k, v in probe.calls.items()}, **counted,
    }
