"""``leapbench bench {memory,step,rollout,real,save}``: tables of measured ratios; ``--json`` for one object per line."""

from __future__ import annotations

import argparse
import json

import pandas as pd
import torch
from tqdm import tqdm

from benchmark.cli.bench.harness import BENCH_METHODS, BenchSetup
from benchmark.cli.bench.memory import ratios, run_cases
from benchmark.cli.bench.real import run_real
from benchmark.cli.bench.rollout import bench_rollout
from benchmark.cli.bench.save import bench_save
from benchmark.cli.bench.step import bench_method
from benchmark.core.devices import check_device
from benchmark.core.errors import ConfigError
from benchmark.training.config import COMPILE_MODES


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("which", choices=["memory", "step", "rollout", "real", "save"])
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    p.add_argument("--device", default="cpu")
    p.add_argument("--resolution", type=int, default=None, help="image size of the tiny FLUX (default: 128 memory, 64 else)")
    p.add_argument("--steps", type=int, nargs="+", default=None, help="T values (memory: 10 25 50; else 25)")
    p.add_argument("--methods", nargs="+", default=None, choices=list(BENCH_METHODS))
    p.add_argument("--repeats", type=int, default=3, help="rollout, real: timed runs")
    p.add_argument("--predict", action="store_true", help="memory, real: also the predicted step share (leapbench plan's)")
    p.add_argument("--rounds", type=int, default=15, help="step: alternating rounds of each step and its floor")
    p.add_argument("--ops", action="store_true", help="step: count the operators a step dispatches beyond its floor")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU intra-op threads (0: torch's default); 1 keeps millisecond timings steady on a busy "
                        "machine, where OpenMP threads wait on each other")
    p.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE",
                   help="step, rollout: torch.compile the transformer's blocks (mode: default, reduce-overhead, ...)")
    p.add_argument("--tiny", action="store_true", help="real, save: a tiny config instead of FLUX.1-dev's / the save model (a check that it runs)")
    p.add_argument("--modes", nargs="+", default=["lora", "full"], choices=["lora", "full"], help="real: fine-tuning modes")
    p.add_argument("--resolutions", type=int, nargs="+", default=[512, 720], help="real: image sizes")


def emit(rows: list[dict], as_json: bool, title: str) -> None:
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    print(f"\n{title}")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4g}"))


def check(args: argparse.Namespace) -> None:
    """Every flag's range and the device, before anything is built."""
    if args.repeats < 1:
        raise ConfigError("--repeats", "an integer >= 1", args.repeats)
    if args.rounds < 1:
        raise ConfigError("--rounds", "an integer >= 1", args.rounds)
    if args.threads < 0:
        raise ConfigError("--threads", "an integer >= 0 (0: torch's default)", args.threads)
    if args.steps is not None and min(args.steps) < 2:
        raise ConfigError("--steps", "sampling steps T >= 2", args.steps)
    if args.resolution is not None and (args.resolution < 4 or args.resolution % 4):
        raise ConfigError("--resolution", "a positive multiple of 4 pixels (the tiny FLUX)", args.resolution)
    if args.which == "real":
        multiple = 4 if args.tiny else 16
        bad = [r for r in args.resolutions if r < multiple or r % multiple]
        if bad:
            raise ConfigError("--resolutions", f"positive multiples of {multiple} pixels", bad)
    if args.compile is not None and args.compile not in COMPILE_MODES:
        raise ConfigError("--compile", f"one of {', '.join(COMPILE_MODES)}", args.compile)
    check_device(args.device)


def run(args: argparse.Namespace) -> int:
    check(args)
    before = torch.get_num_threads()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        return run_bench(args)
    finally:
        torch.set_num_threads(before)


def run_bench(args: argparse.Namespace) -> int:
    methods = args.methods or [m for m in BENCH_METHODS if args.which != "step" or m != "full_backprop_ckpt"]
    if args.which == "memory":
        steps = args.steps or [10, 25, 50]
        with tqdm(total=len(methods) * len(steps), desc="memory cases", disable=args.json) as bar:
            rows = run_cases(methods, steps, args.resolution or 128, args.device, progress=lambda r: bar.update(),
                             predicted=args.predict)
        emit(rows, args.json, f"peak memory of one training step ({args.device}; tiny FLUX at {args.resolution or 128}px)")
        emit(ratios(rows), args.json, "ratio of the largest T to the smallest")
        return 0
    if args.which == "save":
        with tqdm(total=3, desc="save cases", disable=args.json) as bar:
            rows, exported = bench_save(args.tiny, progress=lambda r: bar.update())
        emit(rows, args.json, "rank 0's memory while saving a checkpoint (cpu, gloo; bytes)")
        emit([exported], args.json, "exporting the W=2 sharded checkpoint in one process (bytes)")
        return 0
    if args.which == "real":
        rows = run_real(args.resolutions, (args.steps or [25])[0], device=args.device, tiny=args.tiny, modes=args.modes,
                        predict_memory=args.predict)
        emit(rows, args.json, f"real-size FLUX.1-dev transformer (random init){' [tiny config]' if args.tiny else ''}")
        return 0
    setup = BenchSetup.build(resolution=args.resolution or 64, device=args.device, compile_mode=args.compile)
    steps = (args.steps or [25])[0]
    if args.which == "step":
        rows = [bench_method(setup, m, steps, args.rounds, args.ops)
                for m in tqdm(methods, desc="methods", disable=args.json)]
        keep = ["method", "steps", "measured_s", "floor_s", "ratio", "round_ratio_q1", "round_ratio_median",
                "round_ratio_q3", "samples", "s_per_sample", "rollout_s", "grad_eval_s", "decode_s", "reward_s",
                "backward_s", "optimizer_s", "n_v_grad", "n_v_nograd"]
        keep += ["ops_step", "ops_beyond", "ops_beyond_top"] if args.ops else []
        emit(rows if args.json else [{k: r[k] for k in keep} for r in rows], args.json,
             f"one training step against its floor ({args.device}, {torch.get_num_threads()} threads, "
             f"{setup.backbone.height}px, T={steps}, fastest of {args.rounds} rounds)")
        return 0

    with torch.no_grad():
        emit([bench_rollout(setup, steps, args.repeats)], args.json, f"no-grad rollout, ours vs FluxPipeline ({args.device})")
    return 0
