"""``bench step``: one training step's time against the floor of its parts, measured alone.

The floor is what the step cannot avoid: each no-grad velocity evaluation, each kept evaluation's
forward + backward, each decode's and reward's forward + backward (forward only where the step made it
without gradient: the GRPO presets score without it), as many of each as the step made, counted by a probe,
and each optimizer step, each timed alone in the same process. measured / floor near 1 means the engine and
methods add nothing beyond the model's own work. ``s_per_sample`` is the step's time over the samples it drew
(1 for the reward-gradient methods, a group for the GRPO presets): their costs compared on one engine.
"""

from __future__ import annotations

import statistics
import time

import torch

from benchmark.cli.bench.harness import BenchSetup, Probe, sync, train_step


def times_of(fn, repeats: int, device) -> list[float]:
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def part_times(setup: BenchSetup, repeats: int) -> dict[str, float]:
    """Seconds of each part alone (the fastest of ``repeats`` runs): no-grad velocity, velocity fwd+bwd, decode
    fwd+bwd, reward fwd+bwd, AdamW."""
    bb, dev = setup.backbone, setup.device
    x = bb.noise(setup.batch, torch.Generator(dev).manual_seed(1))
    sigma = bb.schedule(10)[5].to(dev)
    params = [p for p in bb.transformer.parameters() if p.requires_grad]

    def nograd():
        with torch.no_grad():
            bb.velocity(x, sigma, setup.cond)

    def fwd_bwd():
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

    def optimizer():
        for p in params:
            p.grad = torch.zeros_like(p)
        setup.optimizer.step()

    # the floor is a lower bound: each part's fastest of many runs (a median of isolated ms-scale calls is
    # inflated by dispatch and cache effects the step itself does not pay)
    out = {name: min(times_of(fn, repeats, dev)) for name, fn in
           [("v_nograd", nograd), ("v_grad", fwd_bwd), ("decode", decode), ("reward", reward),
            ("decode_nograd", decode_nograd), ("reward_nograd", reward_nograd), ("optimizer", optimizer)]}
    setup.optimizer.zero_grad(set_to_none=True)
    return out


def bench_method(setup: BenchSetup, method: str, steps: int, parts: dict[str, float], repeats: int) -> dict:
    train_step(setup, method, steps)  # warm-up
    # one seed for every repeat: the method's random choices (t_min, k, j) fix how many evaluations a step makes
    measured = statistics.median(train_step(setup, method, steps, seed=0)["total"] for _ in range(repeats))
    probe = Probe(setup.device)
    split = train_step(setup, method, steps, probe=probe)
    floor = sum(probe.calls[k] * parts[k] for k in probe.calls) + split["updates"] * parts["optimizer"]
    return {
        "method": method, "steps": steps, "measured_s": measured, "floor_s": floor, "ratio": measured / floor,
        "samples": split["samples"], "s_per_sample": measured / split["samples"], "updates": split["updates"],
        "rollout_s": split["rollout"], "grad_eval_s": probe.seconds["v_grad"], "nograd_eval_s": probe.seconds["v_nograd"],
        "decode_s": probe.seconds["decode"] + probe.seconds["decode_nograd"],
        "reward_s": probe.seconds["reward"] + probe.seconds["reward_nograd"], "backward_s": split["backward"],
        "optimizer_s": split["optimizer"], **{f"n_{k}": v for k, v in probe.calls.items()},
        **{f"part_{k}_s": v for k, v in parts.items()},
    }
