"""``leapbench plot {curves,gradnorm,ablation,radar,grid} ... --out FIG.png``.

    curves   RUN_DIR...  reward (± std) and GenEval over training steps, one line per run
    gradnorm RUN_DIR...  gradient norms (total, single-step and nested parts) over steps
    ablation SCORES...   a metric against an ablated value; each run's value is read from its config.yaml
                         (--values-from config --key method.alpha --run-dirs DIR...) or its name
                         (--values-from name --pattern 'alpha([0-9.]+)'); prompt-bootstrap CIs
    radar    [SCORES...] GenEval task accuracies per run, and/or the paper's (--paper)
    grid     SAMPLES...  rows = sample directories (runs), columns = their first N prompts
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pandas as pd
import yaml

from benchmark.core.errors import ConfigError
from benchmark.core.io import check_writable, remove_stale_temporaries
from evaluators import report
from evaluators.report import GENEVAL_TASKS, paper_table, read_scores
from evaluators.report.stats import estimate
from evaluators.score import check_images, list_samples, sampling_labels


def add_arguments(parser: argparse.ArgumentParser) -> None:
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    for name, what in (("curves", "training curves"), ("gradnorm", "gradient norms")):
        p = kinds.add_parser(name, help=f"{what} from run directories")
        p.add_argument("runs", nargs="+", help="run directories (metrics.jsonl)")
        p.add_argument("--out", required=True)
        p.add_argument("--labels", nargs="+", help="one label per run (default: directory names)")
        if name == "curves":
            p.add_argument("--metrics", nargs="+", default=["reward_mean", "geneval"])
            p.add_argument("--smooth", type=int, default=1, help="rolling mean window in logged steps")
        else:
            p.add_argument("--window", type=int, default=10, help="rolling mean window in steps")
            p.add_argument("--linear", action="store_true", help="linear instead of log y axis")
    p = kinds.add_parser("ablation", help="a metric against an ablated hyperparameter")
    p.add_argument("scores", nargs="*", help="scores files or directories")
    p.add_argument("--out", required=True)
    p.add_argument("--ablation", default="value", help="name of the ablated quantity (x axis label)")
    p.add_argument("--values-from", choices=("config", "name"), default="config")
    p.add_argument("--key", help="dotted config key holding the value, e.g. method.alpha (config)")
    p.add_argument("--run-dirs", nargs="+", default=[], help="run directories named as the scores' runs (config)")
    p.add_argument("--pattern", help="regex with one group taking the value from the run name (name)")
    p.add_argument("--metric", action="append", help="metric key, e.g. hpsv2.1 or geneval/counting (repeatable)")
    p.add_argument("--paper", help="also plot a paper ablation table, e.g. ablation_lambda")
    p.add_argument("--resamples", type=int, default=1000)
    p = kinds.add_parser("radar", help="GenEval task accuracies on a radar chart")
    p.add_argument("scores", nargs="*", help="scores files or directories with geneval rows")
    p.add_argument("--out", required=True)
    p.add_argument("--paper", action="store_true", help="add the paper's GenEval rows")
    p.add_argument("--paper-methods", nargs="+", help="only these paper rows (default: all)")
    p = kinds.add_parser("grid", help="sample grid: rows = sample directories, columns = prompts")
    p.add_argument("samples", nargs="+", help="samples directories (leapbench sample)")
    p.add_argument("--out", required=True)
    p.add_argument("--labels", nargs="+", help="one label per row (default: sampling.json run or dir name)")
    p.add_argument("--prompts", type=int, default=4, help="the first N prompts")
    p.add_argument("--image", type=int, default=0, help="which image of each prompt")
    p.add_argument("--cell", type=int, default=256, help="pixels per cell")


def labelled(paths: list[str], labels: list[str] | None, field: str = "--labels") -> dict[str, Path]:
    if labels is not None and len(labels) != len(paths):
        raise ConfigError(field, f"one label per input ({len(paths)})", labels)
    return dict(zip(labels or [Path(p).name for p in paths], map(Path, paths)))


def scores_frame(paths: list[str]):
    try:
        return read_scores(paths)
    except (OSError, ValueError) as err:
        raise ConfigError("SCORES", f"readable scores files ({err})", paths) from None


def config_value(run_dir: Path, key: str):
    file = run_dir / "config.yaml"
    node = yaml.safe_load(file.read_text()) if file.is_file() else None
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError("--key", f"a key present in {file}", key)
        node = node[part]
    return node


def ablation_frame(args: argparse.Namespace):
    """Long frame (ablation, value, metric, mean, ci_low, ci_high) of our runs, as ``plot_ablation`` reads."""

    scores = scores_frame(args.scores)
    runs = set(scores["run"])
    if args.values_from == "config":
        if not args.key or not args.run_dirs:
            raise ConfigError("--key/--run-dirs", "a dotted config key and the run directories", None)
        dirs = {Path(d).name: Path(d) for d in args.run_dirs}
        unknown = sorted(set(dirs) - runs)
        if unknown:
            raise ConfigError("--run-dirs", f"runs named as in the scores ({sorted(runs)})", unknown)
        values = {name: config_value(d, args.key) for name, d in dirs.items()}
    else:
        try:
            pattern = re.compile(args.pattern or "")
        except re.error as err:
            raise ConfigError("--pattern", f"a regular expression ({err})", args.pattern) from None
        if pattern.groups != 1:
            raise ConfigError("--pattern", "a regular expression with one group", args.pattern)
        values = {r: m.group(1) for r in runs if (m := pattern.search(r))}
        if not values:
            raise ConfigError("--pattern", f"a pattern matching some run names ({sorted(runs)})", args.pattern)
    records = []
    for metric in args.metric or ["hpsv2.1"]:
        name, _, tag = metric.partition("/")
        for run, value in values.items():
            mine = scores[(scores["run"] == run) & (scores["metric"] == name)]
            tags = GENEVAL_TASKS if metric == "geneval" else [tag]
            groups = [mine[mine["tag"] == t] for t in tags]
            if not all(len(g) for g in groups):
                raise ConfigError("--metric", f"a metric scored for every run (none for {run})", metric)
            e = estimate(groups, resamples=args.resamples)
            records.append({"ablation": args.ablation, "value": value, "metric": metric, "mean": e.mean,
                            "ci_low": e.ci_low, "ci_high": e.ci_high})
    return pd.DataFrame(records)


def radar_frame(args: argparse.Namespace):

    if not args.scores and not args.paper:
        raise ConfigError("radar", "scores files and/or --paper", None)
    parts = []
    if args.scores:
        scores = scores_frame(args.scores)
        geneval = scores[scores["metric"] == "geneval"]
        if geneval.empty:
            raise ConfigError("SCORES", "scores with geneval rows", args.scores)
        parts.append(geneval.groupby(["run", "tag"])["value"].mean().unstack("tag"))
    if args.paper:
        paper = paper_table("table2_geneval").set_index("method")
        if args.paper_methods:
            unknown = sorted(set(args.paper_methods) - set(paper.index))
            if unknown:
                raise ConfigError("--paper-methods", f"methods of the paper's table ({list(paper.index)})", unknown)
            paper = paper.loc[args.paper_methods]
        paper = paper[[f"geneval/{t}" for t in GENEVAL_TASKS]].rename(index=lambda m: f"{m} (paper)")
        parts.append(paper.rename(columns=lambda c: c.removeprefix("geneval/")))
    frame = pd.concat(parts)
    missing = [t for t in GENEVAL_TASKS if t not in frame or frame[t].isna().any()]
    if missing:
        raise ConfigError("SCORES", "geneval rows for all six tasks", missing)
    return frame


def grid_images(args: argparse.Namespace) -> tuple[list[list], list[str], list[str]]:
    if args.prompts < 1 or args.image < 0:
        raise ConfigError("--prompts/--image", "--prompts >= 1 and --image >= 0", (args.prompts, args.image))
    dirs = [Path(d) for d in args.samples]
    labels = args.labels or [sampling_labels(d).get("run", d.name) for d in dirs]
    labelled(args.samples, labels)
    tables = [{(s.prompt_id, s.image): s for s in list_samples(d)} for d in dirs]
    prompt_ids = sorted({p for p, _ in tables[0]})[: args.prompts]
    images = [[t[(p, args.image)].path if (p, args.image) in t else None for p in prompt_ids] for t in tables]
    prompts = [next(s.prompt for (q, _), s in tables[0].items() if q == p) for p in prompt_ids]
    return images, labels, prompts


def check_options(args: argparse.Namespace) -> None:
    """Counts and the output, before any input is read."""
    for flag in ("smooth", "window", "resamples", "cell"):
        if getattr(args, flag, 1) < 1:
            raise ConfigError(f"--{flag}", "an integer >= 1", getattr(args, flag))
    out = Path(args.out)
    if out.suffix.lower() != ".png" or out.is_dir():
        raise ConfigError("--out", "a .png file (figures are written as PNG)", args.out)
    check_writable(out, "--out")
    remove_stale_temporaries(out.parent)


def figure(args: argparse.Namespace) -> Path:
    """Check the inputs of ``args.kind`` and draw it."""

    if args.kind in ("curves", "gradnorm"):
        runs = labelled(args.runs, args.labels)
        missing = [str(d) for d in runs.values() if not (d / "metrics.jsonl").is_file()]
        if missing:
            raise ConfigError("RUN_DIR", "training run directories with metrics.jsonl", missing)
        if args.kind == "curves":
            return report.plot_training_curves(runs, args.out, metrics=args.metrics, smooth=args.smooth)
        return report.plot_grad_norms(runs, args.out, window=args.window, log=not args.linear)
    if args.kind == "ablation":
        if not args.scores and not args.paper:
            raise ConfigError("ablation", "scores files and/or --paper", None)
        frames = [ablation_frame(args)] if args.scores else []
        if args.paper:
            paper = report.paper_ablation(args.paper)
            frames.append(paper.assign(ablation=paper["ablation"] + " (paper)"))
        return report.plot_ablation(pd.concat(frames, ignore_index=True), args.out)
    if args.kind == "radar":
        return report.plot_geneval_radar(radar_frame(args), args.out)
    images, labels, prompts = grid_images(args)
    check_images((p for row in images for p in row if p is not None), same_size=False)
    return report.plot_sample_grid(images, args.out, row_labels=labels, col_labels=prompts, cell=args.cell)


def run(args: argparse.Namespace) -> int:
    check_options(args)
    try:
        out = figure(args)
    except ConfigError:
        raise
    except (ValueError, KeyError, FileNotFoundError) as err:  # data the plot cannot use
        raise ConfigError(args.kind, f"inputs that can be plotted ({err})") from None
    print(f"wrote {out}")
    return 0
