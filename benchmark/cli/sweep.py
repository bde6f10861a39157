"""``leapbench sweep launch|status|collect SPEC``: submit a spec's runs, watch them, tabulate their scores.

    leapbench sweep launch sweeps/specs/table2-hpdv2.yaml --cluster slurm --partition gpu --account proj \\
        --time 24:00:00 --nodes 2 --gpus-per-node 8 --cpus-per-task 12 --mem-per-task-gb 120 \\
        --sbatch=--exclusive --set FLUX_DIR=/models/FLUX.1-dev [--dry-run]
    leapbench sweep status sweeps/specs/table2-hpdv2.yaml
    leapbench sweep collect sweeps/specs/table2-hpdv2.yaml --out results/tables
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from benchmark.core.errors import ConfigError
from benchmark.core.io import check_writable
from sweeps.collect import collect
from sweeps.launcher import SlurmOptions, preview, sbatch_preview
from sweeps.launcher import launch as submit
from sweeps.spec import load_spec
from sweeps.status import sweep_status


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (("launch", "validate every run, then submit what is not done"),
                         ("status", "a table of the runs: stage, job state, step, last reward, job ids"),
                         ("collect", "scores -> tables and plots")):
        p = sub.add_parser(action, help=text)
        p.add_argument("spec", help="sweep spec (YAML)")
        p.add_argument("--root", help="sweep root: runs/, logs/, jobs.json (default results/sweeps/<spec name>)")
        p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                       help="a path variable of the spec (wins over the environment)")
        if action == "launch":
            p.add_argument("--cluster", choices=("slurm", "local", "debug"), default="slurm")
            p.add_argument("--dry-run", action="store_true", help="print the jobs and their sbatch parameters only, "
                           "with every missing input listed (exit 2 if any); nothing is submitted or written")
            p.add_argument("--gpu-mem-gb", type=float, help="refuse when a run's predicted peak memory does not fit "
                           "a GPU of this size (without: warn above 80 GB); see leapbench plan")
            p.add_argument("--no-memory-check", action="store_true",
                           help="submit without predicting the training runs' GPU memory (minutes per setting)")
            g = p.add_argument_group("Slurm (override the spec's slurm: section)")
            for flag in ("partition", "account", "qos", "constraint", "time"):
                g.add_argument(f"--{flag}")
            for flag in ("nodes", "gpus-per-node", "cpus-per-task"):
                g.add_argument(f"--{flag}", type=int)
            g.add_argument("--mem-per-task-gb", type=float)
            g.add_argument("--sbatch", action="append", default=[], metavar="--KEY=VALUE",
                           help="an extra sbatch option (repeatable), e.g. --sbatch=--exclusive")
        if action == "collect":
            p.add_argument("--out", help="output folder (default <root>/collected)")


def parse_set(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError("--set", "NAME=VALUE", item)
        out[name] = value
    return out


def run(args: argparse.Namespace) -> int:
    dry = getattr(args, "dry_run", False)
    spec = load_spec(args.spec, variables=parse_set(args.set), require_paths=args.action == "launch" and not dry)
    root = Path(args.root or Path("results/sweeps") / spec.name)
    if args.action == "launch" and not dry:
        check_writable(root, "--root")
    if args.action == "collect":
        check_writable(Path(args.out) if args.out else root / "collected", "--out")
    if args.action == "launch":
        return launch(args, spec, root)
    if args.action == "status":

        with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 60):
            print(sweep_status(spec, root).to_string(index=False))
        return 0

    for path in collect(spec, root, Path(args.out) if args.out else root / "collected"):
        print(path)
    return 0


def launch(args: argparse.Namespace, spec, root: Path) -> int:
    slurm = SlurmOptions(partition=args.partition, account=args.account, qos=args.qos, constraint=args.constraint,
                         time=args.time, nodes=args.nodes, gpus_per_node=args.gpus_per_node,
                         cpus_per_task=args.cpus_per_task, mem_per_task_gb=args.mem_per_task_gb, extra=args.sbatch)
    missing: list[str] = []
    if args.dry_run:  # the whole plan, even when inputs are missing: each one is listed after it
        records, missing = preview(spec, args.cluster, root, slurm)
    else:
        records = submit(spec, args.cluster, root, slurm, gpu_mem_gb=args.gpu_mem_gb,
                         memory_check=not args.no_memory_check)
    verb = "would submit" if args.dry_run else "submitted"
    print(f"sweep {spec.name}: {len(spec.runs)} runs, {verb} {len(records)} jobs (root {root.resolve()})")
    for r in records:
        dep = f" after {r.dependency}" if r.dependency else ""
        print(f"  {r.job_id or '-':>14}  {r.name:<32} {'+'.join(r.stages):<18}{dep}")
        if args.dry_run and r.cluster == "slurm":
            print("    " + sbatch_preview(r).replace("\n", "\n    "))
    if missing:
        raise ConfigError(f"sweep {spec.name}", f"every input present and valid before launching; {len(missing)} "
                          "missing or invalid:\n" + "\n".join(f"  {m}" for m in missing))
    return 0
