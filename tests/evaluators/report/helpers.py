"""Synthetic training runs (metrics.jsonl and config.yaml) for the plot and table tests."""

import json

import numpy as np


def make_run(path, seed, geneval=True, nested=True):
    """A run directory with 40 steps of plausible telemetry (seeded) and a LeapAlign config."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    with open(path / "metrics.jsonl", "w") as f:
        for step in range(40):
            record = {"step": step, "reward_mean": 0.3 + 0.002 * step + rng.normal(0, 0.003),
                      "reward_std": 0.01, "loss": 0.2, "grad_norm": float(rng.lognormal(0, 0.5))}
            if nested:
                record |= {"grad_norm_single": record["grad_norm"] * 0.7,
                           "grad_norm_nested": record["grad_norm"] * 0.3}
            if geneval and step % 10 == 0:
                record["geneval"] = 0.65 + 0.002 * step
            f.write(json.dumps(record) + "\n")
    (path / "config.yaml").write_text("method:\n  name: leapalign\n  alpha: 0.3\n")
    return path
