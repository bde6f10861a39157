"""``leapbench table SCORES... --layout table2 --out DIR [--name NAME] [--baseline pretrained] [--no-paper]``.

Builds one of the paper's tables from per-image scores (parquet/CSV files or directories of them) with
prompt-bootstrap 95% intervals and deltas to the baseline run, writes ``<name>.md``, ``<name>.tex`` and
``<name>.csv`` into DIR, and prints the Markdown. The paper's own rows are appended unless --no-paper.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.core.errors import ConfigError
from benchmark.core.io import check_writable, remove_stale_temporaries
from evaluators.report import LAYOUTS, build_table, read_scores, to_markdown, write_tables
from evaluators.report.tables import AUTO


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scores", nargs="+", help="scores files (.parquet, .csv) or directories of .parquet")
    parser.add_argument("--layout", default="table2", choices=[*sorted(LAYOUTS), AUTO],
                        help="a paper table, or all: one column per metric in the scores (no paper rows)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--name", help="file name stem (default: the layout)")
    parser.add_argument("--baseline", help="run or method the deltas are taken against ('none': no deltas; "
                        "default: pretrained, when the scores have it)")
    parser.add_argument("--no-paper", action="store_true", help="leave out the paper's reported rows")
    parser.add_argument("--prompt-set", action="append", default=[], metavar="METRIC=SET",
                        help="score METRIC only on prompt set SET (e.g. hpsv2.1=hpdv2); repeatable")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    prompt_sets = {}
    for text in args.prompt_set:
        metric, sep, name = text.partition("=")
        if not sep or not metric or not name:
            raise ConfigError("--prompt-set", "METRIC=SET", text)
        prompt_sets[metric] = name
    if args.resamples < 1:
        raise ConfigError("--resamples", "an integer >= 1", args.resamples)
    name = args.name or args.layout
    if not name or "/" in name or name.startswith("."):
        raise ConfigError("--name", "a file name stem (no '/', not starting with '.')", name)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError("--out", "a directory", str(out))
    check_writable(out, "--out")
    remove_stale_temporaries(out)
    try:
        scores = read_scores(args.scores)
    except (OSError, ValueError) as err:
        raise ConfigError("SCORES", f"readable scores files ({err})", args.scores) from None
    metrics = sorted(set(scores["metric"]))
    if args.layout != AUTO and not {c.metric for c in LAYOUTS[args.layout]} & set(metrics):
        raise ConfigError("--layout", f"a layout with a column these scores fill (they hold {', '.join(metrics)}; "
                          "--layout auto has a column for each)", args.layout)
    for metric, prompt_set in prompt_sets.items():
        if scores[(scores["metric"] == metric) & (scores["prompt_set"] == prompt_set)].empty:
            raise ConfigError("--prompt-set", f"a metric and prompt set the scores hold (metrics {', '.join(metrics)}; "
                              f"prompt sets {', '.join(sorted(set(scores['prompt_set'])))})", f"{metric}={prompt_set}")
    baseline = args.baseline
    if baseline is None and "pretrained" in set(scores["run"]) | set(scores["method"]):
        baseline = "pretrained"
    elif baseline is not None and baseline.lower() == "none":
        baseline = None
    try:
        reference = None if args.no_paper or args.layout == AUTO else "paper"
        table = build_table(scores, args.layout, reference=reference, baseline=baseline,
                            prompt_sets=prompt_sets, resamples=args.resamples, seed=args.seed)
    except ValueError as err:
        raise ConfigError("--layout/--baseline", f"settings these scores can fill ({err})") from None
    paths = write_tables(table, out, name)
    print(to_markdown(table))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
