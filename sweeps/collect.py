"""``collect(spec, root, out)``: the runs' scores -> the evaluation package's tables and plots, for one spec.

The spec's ``collect:`` section picks the table ``layout`` (default ``rewards``), the ``baseline`` run or
method for deltas (default ``pretrained`` when such a run exists), the paper ``reference`` rows ("paper",
or null for none) and, for ablations, ``ablation``: the dotted config key that varies (e.g. method.alpha).
Writes ``<out>/<spec>.md|.tex|.csv``, ``<spec>-scores.parquet``, training curves, the ablation plot and the
report page ``<out>/report/index.html`` (``sweeps.report``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmark.core.errors import ConfigError
from evaluators.report import build_table, plot_ablation, plot_training_curves, read_scores, write_scores, write_tables
from evaluators.report.tables import Table
from sweeps.report import write_sweep_report
from sweeps.spec import Spec
from sweeps.stages import SCORES


def lookup(tree: dict, dotted: str):
    for part in dotted.split("."):
        tree = tree[part]
    return tree


def sweep_table(spec: Spec, root: Path | str) -> tuple[Table, pd.DataFrame, str | None]:
    """The spec's results table from the scores of its runs so far, with those scores and the baseline used."""
    root = Path(root).resolve()
    scored = [r for r in spec.runs if (r.run_dir(root) / SCORES).is_file()]
    if not scored:
        raise ConfigError("--root", f"a sweep root where some run of {spec.name} has {SCORES} (none has yet; "
                          "see `sweep status`)", str(root))
    scores = read_scores([r.run_dir(root) / SCORES for r in scored])
    settings = spec.collect
    layout = settings.get("layout", "rewards")
    baseline = settings.get("baseline", "pretrained" if any(not r.train for r in scored) else None)
    reference = settings.get("reference", "paper")
    try:
        table = build_table(scores, layout, reference, baseline, resamples=int(settings.get("resamples", 1000)))
    except KeyError:  # no paper table for this layout
        table = build_table(scores, layout, None, baseline, resamples=int(settings.get("resamples", 1000)))
    return table, scores, baseline


def ablation_figure(spec: Spec, root: Path | str, table: Table, out: Path) -> tuple[Path, str] | None:
    """The spec's ablation plot (``collect: {ablation: method.alpha}``): each metric against the ablated value,
    with its CIs, and its caption; None for a spec that ablates nothing."""
    key = spec.collect.get("ablation")
    if not key:
        return None
    cells = table.cells[table.cells["source"] == "ours"]
    value = {r.name: lookup(r.config, key) for r in spec.runs if (r.run_dir(root) / SCORES).is_file()}
    frame = pd.DataFrame({"ablation": key.split(".")[-1], "value": [str(value.get(row)) for row in cells["row"]],
                          "metric": cells["key"], "mean": cells["mean"], "ci_low": cells["ci_low"],
                          "ci_high": cells["ci_high"]})
    frame = frame[[row in value and value[row] is not None for row in cells["row"]]]
    return plot_ablation(frame, out), f"Ablation of {key}: each metric against its value, 95% prompt-bootstrap CIs."


def collect(spec: Spec, root: Path | str, out: Path | str) -> list[Path]:
    root, out = Path(root).resolve(), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table, scores, baseline = sweep_table(spec, root)
    scored = [r for r in spec.runs if (r.run_dir(root) / SCORES).is_file()]
    written = list(write_tables(table, out, spec.name))
    written.append(write_scores(scores, out / f"{spec.name}-scores.parquet"))
    trained = {r.name: r.run_dir(root) for r in scored if r.train and (r.run_dir(root) / "metrics.jsonl").is_file()}
    if trained:
        written.append(plot_training_curves(trained, out / f"{spec.name}-curves.png"))
    ablation = ablation_figure(spec, root, table, out / f"{spec.name}-ablation.png")
    if ablation:
        written.append(ablation[0])
    figures = [ablation] if ablation else []
    written.append(write_sweep_report(spec, root, out / "report", table, scores, baseline, figures))
    return written
