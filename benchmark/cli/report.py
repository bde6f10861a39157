"""``leapbench report SPEC_OR_ROOT [--out DIR]``: one static HTML page for a sweep or a set of runs.

    leapbench report sweeps/specs/table2-hpdv2.yaml            # a sweep: its spec's table layout, job states
    leapbench report results/runs/                             # a run directory, a sweep root or a folder of runs
    leapbench report results/runs/ --layout table2 --baseline pretrained --out /tmp/share

The page (``DIR/index.html``, default ``<root>/report``) opens from the file system, with no server and no
network: the results table (CIs, deltas, the paper's rows, sortable, the protocol of each number), training
curves, a sample browser (the same prompt and seed across runs and checkpoints, per-image scores, the prompts
where runs disagree most) and the runs' status, compute and config differences. Zip the folder to share it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from benchmark.core.errors import ConfigError
from evaluators.report import LAYOUTS, build_table, read_scores
from evaluators.report.page import write_report
from evaluators.report.paper import LAYOUT_TABLES
from evaluators.report.runs import discover_runs
from evaluators.report.tables import AUTO


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SPEC_OR_ROOT", help="a sweep spec (.yaml) or a directory of runs")
    parser.add_argument("--out", help="output folder (default: <root>/report)")
    parser.add_argument("--root", help="sweep root of a spec (default results/sweeps/<spec name>)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a path variable of the spec")
    parser.add_argument("--layout", default=AUTO, choices=[AUTO, *sorted(LAYOUTS)],
                        help="table layout for a directory of runs (a spec uses its collect: section); "
                        "auto: a column per metric scored")
    parser.add_argument("--baseline", help="run or method for deltas ('none': no deltas; default: pretrained, "
                        "when present)")
    parser.add_argument("--no-paper", action="store_true", help="leave out the paper's rows")
    parser.add_argument("--max-prompts", type=int, default=120, help="prompts in the sample browser (0: all)")
    parser.add_argument("--thumb", type=int, default=256, help="thumbnail size in pixels")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (directory of runs)")


def check(args: argparse.Namespace) -> Path:
    source = Path(args.source)
    if not source.exists():
        raise ConfigError("SPEC_OR_ROOT", "a sweep spec file or a directory of runs", str(source))
    for name, low in (("--max-prompts", 0), ("--thumb", 16), ("--resamples", 1)):
        if getattr(args, name[2:].replace("-", "_")) < low:
            raise ConfigError(name, f"an integer >= {low}", getattr(args, name[2:].replace("-", "_")))
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise ConfigError("--out", "a directory", args.out)
    return source


def from_spec(args: argparse.Namespace, source: Path) -> Path:
    # the sweep modules bring the training and evaluation stack (torch, the scorers): only a spec needs them
    from benchmark.cli.sweep import parse_set  # heavy: the sweep stack
    from sweeps.collect import ablation_figure, sweep_table  # heavy: the sweep stack
    from sweeps.report import write_sweep_report  # heavy: the sweep stack
    from sweeps.spec import load_spec  # heavy: the sweep stack

    spec = load_spec(source, variables=parse_set(args.set), require_paths=False)
    root = Path(args.root or Path("results/sweeps") / spec.name)
    if not root.is_dir():
        raise ConfigError("--root", f"the sweep root of {spec.name} (runs/, jobs.json)", str(root))
    out = Path(args.out or root / "report")
    try:
        table, scores, baseline = sweep_table(spec, root)
    except FileNotFoundError:  # nothing scored yet: the page shows the runs' state
        table, scores, baseline = None, pd.DataFrame(), spec.collect.get("baseline")
    (out / "img").mkdir(parents=True, exist_ok=True)
    ablation = ablation_figure(spec, root, table, out / "img" / "ablation.png") if table is not None else None
    return write_sweep_report(spec, root, out, table, scores, baseline, [ablation] if ablation else [],
                              max_prompts=args.max_prompts, thumb=args.thumb)


def from_runs(args: argparse.Namespace, root: Path) -> Path:
    runs = discover_runs(root)
    if not runs:
        raise ConfigError("SPEC_OR_ROOT", "a run directory, a sweep root or a folder of run directories", str(root))
    files = [r.run_dir / "scores.parquet" for r in runs if r.file("scores.parquet")]
    table, scores, baseline = None, pd.DataFrame(), None
    if files:
        try:
            scores = read_scores(files)
        except (OSError, ValueError) as err:
            raise ConfigError("scores.parquet", f"readable scores files ({err})", [str(f) for f in files]) from None
        baseline = args.baseline
        if baseline is None and "pretrained" in set(scores["run"]) | set(scores["method"]):
            baseline = "pretrained"
        elif baseline is not None and baseline.lower() == "none":
            baseline = None
        reference = "paper" if args.layout in LAYOUT_TABLES and not args.no_paper else None
        try:
            table = build_table(scores, args.layout, reference, baseline, resamples=args.resamples)
        except ValueError as err:
            raise ConfigError("--layout/--baseline", f"settings these scores can fill ({err})") from None
    note = ("Mean over images; ± half the 95% prompt-bootstrap interval; (Δ) against the baseline row "
            f"({baseline or 'none'}); bold best, underlined second best per column. Hover a number for details.")
    return write_report(Path(args.out or root / "report"), title=f"Runs in {root.resolve().name}", table=table,
                        scores=scores, runs=runs, baseline=baseline, meta=str(root.resolve()), table_note=note,
                        max_prompts=args.max_prompts, thumb=args.thumb)


def run(args: argparse.Namespace) -> int:
    source = check(args)
    try:
        page = from_runs(args, source) if source.is_dir() else from_spec(args, source)
    except PermissionError as err:
        raise ConfigError("--out", "a folder this user can write", str(err)) from None
    print(f"wrote {page}\nopen file://{page.resolve()}")
    return 0
