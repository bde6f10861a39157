"""A tiny 4-run sweep spec (tiny FLUX, CPU, a few steps) shared by the sweep tests."""

from __future__ import annotations

from pathlib import Path

from benchmark.core.testing import TINY_METHODS, tiny_tree

TINY_STAGES = {s: f"tests.sweeps.tiny_stages:{s}" for s in ("train", "sample", "score")}


def tiny_spec(tmp: Path, name: str = "tiny", methods=("refl", "drtune", "leapalign"), iterations: int = 4,
              pretrained: bool = True) -> dict:
    base = tiny_tree(tmp)
    base.pop("run_dir")
    base["schedule"]["iterations"] = iterations
    base["logging"]["grad_parts_every"] = 0
    runs = ([{"name": "pretrained", "train": False}] if pretrained else []) + [
        {"name": m, "method": {"name": m, **TINY_METHODS[m]}} for m in methods]
    return {
        "name": name, "base": base, "runs": runs,
        "eval": {"cache": base["prompts"]["cache"], "steps": 2, "images": 2, "batch_size": 2, "limit": 2,
                 "prompt_set": "tiny"},
        "stages": TINY_STAGES,
        "slurm": {"gpus_per_node": 0, "cpus_per_task": 1, "time": 20, "signal_delay_s": 30},
        "collect": {"layout": "rewards", "reference": None, "baseline": "pretrained", "resamples": 50},
    }
