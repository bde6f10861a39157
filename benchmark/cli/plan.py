"""``leapbench plan FILE [--world-size N] [--gpu-mem-gb G] [key.sub=value ...]``: predicted GPU memory, before submitting.

FILE is a run config (YAML, with the dotted overrides) or a sweep spec (every run that trains, at the spec's
Slurm world size). For each, one training step is traced on the real-size transformer, VAE and reward built
without weights (``benchmark.training.plan``): the predicted peak of GPU memory on one rank, split into
parameters, gradients, optimiser, EMA, activations and trajectory. Runs that differ only in what does not
change memory (seeds, learning rates, prompts) are traced once. Nothing is downloaded; a trace takes minutes
per distinct setting on a CPU (FLUX.1-dev at 720 px, 16 FSDP2 ranks: about 4.5 minutes of one core).

With ``--gpu-mem-gb`` each prediction is compared with the GPU's memory (after the CUDA context and a margin
for the allocator, ``sweeps.memory.usable_bytes``); the exit status is 1 when one does not fit.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from benchmark.cli.sweep import parse_set
from benchmark.core.configs import read_yaml
from benchmark.core.errors import ConfigError
from benchmark.training.config import load_config
from benchmark.training.plan import check_plannable
from sweeps.launcher import SlurmOptions, stage_options
from sweeps.memory import Planned, plan_runs, usable_bytes
from sweeps.spec import load_spec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a run config or a sweep spec (YAML)")
    parser.add_argument("--world-size", type=int, help="ranks (default: 1 for a run config, the spec's Slurm tasks)")
    parser.add_argument("--gpu-mem-gb", type=float, help="the GPU's memory in GB: mark (and exit 1 on) what does not fit")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a sweep spec's path variable")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="run config overrides")


def is_spec(path: str) -> bool:
    tree = read_yaml(path, "FILE")
    return "runs" in tree or "base" in tree or "extends" in tree


def planned_runs(args: argparse.Namespace) -> list[tuple[str, object, int]]:
    """(name, RunConfig, world size) of everything to plan."""
    if not Path(args.file).is_file():
        raise ConfigError("FILE", "a run config or a sweep spec (YAML file)", args.file)
    if not is_spec(args.file):
        return [(Path(args.file).stem, load_config(args.file, args.overrides), args.world_size or 1)]
    if args.overrides:
        raise ConfigError("overrides", "none with a sweep spec (set them in the spec)", args.overrides)
    spec = load_spec(args.file, variables=parse_set(args.set), require_paths=False)
    world = args.world_size or stage_options(spec, SlurmOptions())["train"].world_size
    from sweeps.memory import run_configs  # the spec's training runs as RunConfigs

    return [(name, cfg, world) for name, cfg in run_configs(spec)]


def run(args: argparse.Namespace) -> int:
    if args.world_size is not None and args.world_size < 1:
        raise ConfigError("--world-size", "an integer >= 1", args.world_size)
    if args.gpu_mem_gb is not None and args.gpu_mem_gb <= 0:
        raise ConfigError("--gpu-mem-gb", "a number > 0", args.gpu_mem_gb)
    runs = planned_runs(args)
    for _, cfg, world in runs:  # every run's config errors before any trace starts
        check_plannable(cfg, world)
    with tqdm(total=len(runs), desc="plan", disable=args.json) as bar:
        results: list[Planned] = plan_runs(runs, progress=lambda *_: bar.update())
    limit = usable_bytes(args.gpu_mem_gb) if args.gpu_mem_gb else None
    rows = [{"run": p.name, **p.prediction.row(), **({"fits": p.prediction.peak_bytes <= limit} if limit else {})}
            for p in results]
    if args.json:
        for p, row in zip(results, rows):
            print(json.dumps({**row, "peak_bytes": p.prediction.peak_bytes, "split_bytes": p.prediction.split,
                              "notes": p.prediction.notes}))
    else:
        table = pd.DataFrame(rows).drop(columns=["trace_s"])
        with pd.option_context("display.width", 250, "display.max_columns", None):
            print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        for note in sorted({n for p in results for n in p.prediction.notes}):
            print(f"note: {note}")
        if limit:
            print(f"fits: peak <= {limit / 2**30:.1f} GiB usable of {args.gpu_mem_gb:g} GB")
    return 0 if limit is None or all(r["fits"] for r in rows) else 1
