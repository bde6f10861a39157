"""``leapbench demo``: pretrained + every method (GRPO and its peers' presets too) as a small sweep on a CPU, then
the table and plots.

The toy backbone (default) is a flow pre-trained on 2-D data whose structure (which blob) is decided early
in the trajectory; the reward prefers the blob the pretrained flow rarely produces. Every method gets the
same budget (iterations, batch, learning rate, T, seed) and runs as a job of submitit's local executor
through the same sweep launcher as a Slurm sweep; each run is then sampled from held-out noise and scored.
The GRPO presets (DanceGRPO, MixGRPO, Flow-GRPO as they train: ``method.preset``) sample at their own T and take
several optimiser steps per rollout batch; they get the same samples and optimiser steps (batch x iterations),
in rollout batches of batch x their steps per rollout, are evaluated like every run (the demo's T), and the
table gives every method's training seconds per 1k samples.
``--backbone tiny-flux`` runs the same through the FLUX code path (tiny random transformer, tiny reward).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from pathlib import Path

from tqdm import tqdm

from benchmark.cli.demo.page import write_report
from benchmark.cli.demo.pretrain import BUNDLED, pretrain
from benchmark.cli.demo.report import LABELS, build_table, write_plots, write_table
from benchmark.core.errors import ConfigError
from benchmark.core.io import check_writable
from benchmark.core.testing import PROMPTS, tiny_cache
from methods import method_config, preset_tree
from sweeps.jobs import is_done
from sweeps.launcher import launch
from sweeps.records import job_states
from sweeps.spec import load_spec

PRESETS = ["dancegrpo", "mixgrpo", "flowgrpo"]  # GRPO as each peer trains (methods/grpo_presets.py)
METHODS = ["refl", "draft_lv", "drtune", "leapalign", "full_backprop", "grpo", *PRESETS]
# per-method settings: the paper's defaults (A5) where they exist; LeapAlign's hinge at 0 (the toy reward is <= 0)
# GRPO: groups of 8 noises per (unconditioned) prompt, SDE noise 0.7 (MixGRPO's); same lr and iterations
TOY_METHODS = {"refl": {}, "draft_lv": {}, "drtune": {}, "leapalign": {"lam": 0.0},
               "full_backprop": {"checkpoint": False}, "grpo": {"group_size": 8, "eta": 0.7}}
FLUX_METHODS = {"refl": {"m": 3}, "draft_lv": {"n": 1}, "drtune": {"m": 3}, "leapalign": {"lam": 1.0},
                "full_backprop": {}, "grpo": {"group_size": 2}}
# the presets' method settings, but groups of 8 (toy) / 2 (tiny FLUX) as the GRPO row's, and one reward (MixGRPO's
# aggregation of a single part is its own advantage)
TOY_PRESETS = {"dancegrpo": {"group_size": 8}, "mixgrpo": {"group_size": 8, "advantage": "reward"},
               "flowgrpo": {"group_size": 8}}
FLUX_PRESETS = {"dancegrpo": {"group_size": 2}, "mixgrpo": {"group_size": 2, "advantage": "reward"},
                "flowgrpo": {"group_size": 2}}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("results/demo"), help="where the table, plots and runs go")
    p.add_argument("--backbone", choices=["toy", "tiny-flux"], default="toy")
    p.add_argument("--iterations", type=int, default=None, help="optimiser steps per method (toy 300, tiny-flux 20)")
    p.add_argument("--samples", type=int, default=None, help="held-out samples (toy 2000; tiny-flux: per prompt, 4)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS)
    p.add_argument("--cluster", choices=["local", "debug"], default="local",
                   help="local: submitit's local executor (a process per run); debug: in this process")
    p.add_argument("--pretrain", action="store_true", help="pre-train the toy flow here instead of the bundled one")


def toy_spec(out: Path, args: argparse.Namespace) -> dict:
    base_dir = BUNDLED
    if args.pretrain:
        base_dir = out / "base_toy"
        pretrain().save_pretrained(base_dir)
    base = {
        "backbone": {"name": "toy", "path": str(base_dir), "dtype": "float32"},
        "reward": {"name": "toy_mode"},
        "schedule": {"num_steps": 25, "iterations": args.iterations or 300, "global_batch": 64, "micro_batch": 64},
        "optim": {"lr": 1e-4, "weight_decay": 0.0, "ema_decay": 0.9},
    }
    return {"base": base, "methods": TOY_METHODS, "presets": TOY_PRESETS,
            "eval": {"images": args.samples or 2000, "steps": base["schedule"]["num_steps"]}}


def tiny_flux_spec(out: Path, args: argparse.Namespace) -> dict:
    cache = tiny_cache(out / "cache", "flux", PROMPTS)
    base = {
        "backbone": {"name": "flux", "tiny": True, "height": 32, "width": 32, "dtype": "float32"},
        "reward": {"name": "tiny_conv"},
        "prompts": {"cache": str(cache)},
        "schedule": {"num_steps": 4, "iterations": args.iterations or 20, "global_batch": 4, "micro_batch": 2},
        "optim": {"lr": 1e-3, "ema_decay": 0.5},
    }
    return {"base": base, "methods": FLUX_METHODS, "presets": FLUX_PRESETS,
            "eval": {"images": args.samples or 4, "steps": base["schedule"]["num_steps"]}}


def make_spec(out: Path, args: argparse.Namespace) -> dict:
    parts = (toy_spec if args.backbone == "toy" else tiny_flux_spec)(out, args)
    base = {**parts["base"], "seed": 0,
            "checkpoint": {"every": 0, "keep": 1},
            "logging": {"progress": False, "tensorboard": False, "grad_parts_every": 0}}
    runs = [{"name": "pretrained", "train": False}]
    runs += [{"name": m, "method": {"name": m, **parts["methods"][m]}} for m in args.methods if m not in PRESETS]
    runs += [preset_run(m, parts["presets"][m], base) for m in args.methods if m in PRESETS]
    return {
        "name": f"demo-{args.backbone}", "base": base, "runs": runs, "eval": parts["eval"],
        "slurm": {"nodes": 1, "gpus_per_node": 0, "cpus_per_task": 1, "time": 60},  # one CPU process per run
        "stages": {"train": "sweeps.stages:train", "sample": "benchmark.cli.demo.stages:sample",
                   "score": "benchmark.cli.demo.stages:score"},
    }


def preset_run(preset: str, values: dict, base: dict) -> dict:
    """A preset's run on the demo's budget: the preset overrides the base where it is written, so the run states
    the budget again (lr, backbone, no LoRA), keeps the preset's T, and takes rollout batches of the batch x the
    preset's optimiser steps per rollout for iterations / that: the samples and optimiser steps of every method."""
    method = {"name": "grpo", "preset": preset, **values}
    updates = method_config(method).minibatches * method_config(method).epochs
    s = base["schedule"]
    schedule = {**s, "num_steps": preset_tree(method)["schedule"]["num_steps"],
                "iterations": max(1, s["iterations"] // updates), "global_batch": s["global_batch"] * updates}
    return {"name": preset, "method": method, "schedule": schedule, "optim": base["optim"],
            "backbone": base["backbone"], "train.lora.rank": 0}


@contextlib.contextmanager
def one_thread_per_job():
    """The jobs inherit the environment at submission: give them one OpenMP thread each (six processes
    spinning two threads each on two cores ran 100x slower), and restore the caller's environment after."""
    saved = {var: os.environ.get(var) for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update(dict.fromkeys(saved, "1"))
    try:
        yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def wait(spec, root: Path, records) -> None:
    """Follow the runs' stage markers with a progress bar; stop with the log's tail if a job fails."""

    total = sum(len(run.stages) for run in spec.runs)
    with tqdm(total=total, desc="runs x stages (train, sample, score)", unit="stage") as bar:
        while True:
            done = sum(is_done(run.run_dir(root), stage) for run in spec.runs for stage, _ in run.stages)
            bar.update(done - bar.n)
            if done == total:
                return
            failed = [r for r in records if job_states([r]).get(r.job_id) in ("FAILED", "CANCELLED")]
            if failed:
                raise RuntimeError(f"demo job(s) failed: {[r.name for r in failed]}; see the logs in {root / 'logs'}")
            time.sleep(0.5)


def run(args: argparse.Namespace) -> int:
    start = time.time()
    for flag in ("iterations", "samples"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise ConfigError(f"--{flag}", "an integer >= 1 (omitted: the backbone's default)", getattr(args, flag))
    out = args.out.resolve()
    if out.exists() and not out.is_dir():
        raise ConfigError("--out", "a directory", str(args.out))
    check_writable(out, "--out")
    out.mkdir(parents=True, exist_ok=True)
    tree = make_spec(out, args)
    spec = load_spec(tree)
    root = out / "sweep"
    print(f"leapbench demo: {len(spec.runs)} runs ({', '.join(r.name for r in spec.runs)}) on the {args.backbone} "
          f"backbone, {tree['base']['schedule']['iterations']} iterations each, cluster={args.cluster}")
    with one_thread_per_job():
        records = launch(spec, cluster=args.cluster, root=root)
    if args.cluster == "local":
        wait(spec, root, records)
    run_dirs = {run.name: run.run_dir(root) for run in spec.runs}
    table = build_table(run_dirs)
    s = tree["base"]["schedule"]
    budget = (f"every method: {s['iterations']} iterations x batch {s['global_batch']}, T={s['num_steps']}, "
              f"lr {tree['base']['optim']['lr']}, seed 0")
    if set(args.methods) & set(PRESETS):
        own = ", ".join(f"{LABELS[p]} {preset_tree({'name': 'grpo', 'preset': p})['schedule']['num_steps']}"
                        for p in PRESETS if p in args.methods)
        budget += (f" (the GRPO presets: the same samples and optimiser steps, in rollout batches of "
                   f"{s['global_batch']} x their optimiser steps per rollout, sampled at their own T: {own})")
    files = write_table(table, out, budget) + write_plots(run_dirs, out, "toy" if args.backbone == "toy" else "flux")
    files.append(write_report(run_dirs, out, args.backbone, budget))
    print()
    print((out / "table.md").read_text())
    print(f"wrote {', '.join(str(f.relative_to(out)) for f in files)} to {out} in {time.time() - start:.0f} s")
    return 0
