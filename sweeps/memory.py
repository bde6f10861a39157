"""Predicted GPU memory of a sweep's training runs, checked before anything is submitted.

``sweep launch`` plans every run that trains on GPUs (``benchmark.training.plan``) at the train stage's world
size, warns where a prediction does not fit the GPU (``--gpu-mem-gb``, default 80) and, when ``--gpu-mem-gb``
is given, refuses to submit. Runs that differ only in what does not change memory share one trace, and
traces are kept in ``<root>/memory-plans.json`` (keyed by that setting and the torch version), so a relaunch
costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmark.core.configs import plain
from benchmark.core.errors import ConfigError
from benchmark.core.io import atomic_write_text
from benchmark.training.config import RunConfig
from benchmark.training.plan import Prediction, predict
from benchmark.training.telemetry import read_json_or_empty
from sweeps.spec import Spec
from sweeps.stages import training_config

DEFAULT_GPU_GB = 80.0
CONTEXT_GIB = 1.0  # the CUDA context, cuBLAS and NCCL workspaces: outside what the trace counts
FRAGMENTATION = 0.05  # the caching allocator reserves some percent above what is allocated


@dataclass
class Planned:
    name: str
    world_size: int
    prediction: Prediction


def usable_bytes(gpu_mem_gb: float) -> int:
    """What a GPU of ``gpu_mem_gb`` GiB leaves to tensors: minus the context, minus the allocator's margin."""
    return int((gpu_mem_gb - CONTEXT_GIB) * 2**30 * (1 - FRAGMENTATION))


def memory_key(cfg: RunConfig, world_size: int) -> str:
    """What decides a step's memory, as a stable string: the backbone, method, schedule shape, training and
    distributed settings and the reward's architecture; not seeds, rates, prompts, paths or logging."""
    tree = plain(cfg)
    backbone = {k: v for k, v in tree["backbone"].items() if k not in ("path", "guidance", "toy")}
    reward = {k: tree["reward"].get(k) for k in ("name", "dtype")}
    reward["parts"] = [{k: p.get(k) for k in ("name", "dtype")} for p in tree["reward"].get("parts") or []]
    s = tree["schedule"]
    key = {"backbone": backbone, "method": tree["method"], "reward": reward, "world_size": world_size,
           "schedule": {"num_steps": s["num_steps"], "micro_batch": s["micro_batch"],
                        "accumulates": cfg.accumulation(world_size) > 1},
           "train": {k: v for k, v in tree["train"].items() if k not in ("max_consecutive_skips", "compile_mode")},
           "distributed": {k: v for k, v in tree["distributed"].items() if k != "timeout_s"},
           "grad_clip": tree["optim"]["grad_clip"] is not None, "torch": torch.__version__}
    return json.dumps(key, sort_keys=True, default=str)


def run_configs(spec: Spec) -> list[tuple[str, RunConfig]]:
    """The spec's runs that train, as run configs."""
    return [(run.name, training_config(run.config, Path("plan"))) for run in spec.runs if run.train]


def plan_runs(runs: list[tuple[str, RunConfig, int]], cache: Path | None = None,
              progress: Callable[[Planned], None] | None = None) -> list[Planned]:
    """One prediction per distinct memory setting, reused from (and saved to) ``cache`` when given."""
    stored = read_json_or_empty(cache) if cache is not None else {}  # a damaged cache is traced again
    done: dict[str, Prediction] = {}
    out = []
    for name, cfg, world in runs:
        key = hashlib.sha1(memory_key(cfg, world).encode()).hexdigest()
        if key not in done:
            done[key] = Prediction(**stored[key]) if key in stored else predict(cfg, world)
        out.append(Planned(name, world, done[key]))
        if progress is not None:
            progress(out[-1])
    if cache is not None:
        stored.update({k: {f: getattr(p, f) for f in Prediction.__dataclass_fields__} for k, p in done.items()})
        atomic_write_text(cache, json.dumps(stored, indent=1))
    return out


def check_memory(spec: Spec, root: Path, world_size: int, gpu_mem_gb: float | None) -> list[Planned]:
    """Plan the spec's training runs; warn (stderr) where one does not fit ``gpu_mem_gb`` (default 80) and, when
    ``gpu_mem_gb`` is given, raise ConfigError naming every such run."""
    if gpu_mem_gb is not None and gpu_mem_gb <= CONTEXT_GIB:
        raise ConfigError("--gpu-mem-gb", f"a GPU memory in GB above the CUDA context's {CONTEXT_GIB:g}", gpu_mem_gb)
    runs = [(name, cfg, world_size) for name, cfg in run_configs(spec) if cfg.backbone.name != "toy"]
    if not runs:
        return []
    planned = plan_runs(runs, cache=root / "memory-plans.json")
    gb = gpu_mem_gb or DEFAULT_GPU_GB
    over = [p for p in planned if p.prediction.peak_bytes > usable_bytes(gb)]
    lines = [f"  {p.name}: {p.prediction.peak_bytes / 2**30:.1f} GiB predicted per rank at world size {p.world_size}"
             for p in over]
    if over and gpu_mem_gb is not None:
        raise ConfigError("--gpu-mem-gb", f"every run's predicted peak within {usable_bytes(gb) / 2**30:.1f} GiB usable "
                          f"of {gb:g} GB (leapbench plan shows the split); nothing was submitted:\n" + "\n".join(lines),
                          gpu_mem_gb)
    if over:
        print(f"warning: predicted peak memory above a {gb:g} GB GPU ({usable_bytes(gb) / 2**30:.1f} GiB usable; "
              "--gpu-mem-gb N to check another size and refuse):\n" + "\n".join(lines), file=sys.stderr)
    return planned
