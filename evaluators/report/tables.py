"""The paper's tables from per-image scores: one row per run, bootstrap CIs, deltas and paper reference rows.

`build_table` returns a `Table` whose `cells` is a long DataFrame, one row per (table row, column):

    row, source ("ours" | "paper"), method, group, key, mean, ci_low, ci_high, delta, n_prompts, n_images,
    rank, is_baseline, protocol

`key` is a metric (``hpsv2.1``) or ``metric/tag`` (``geneval/counting``); ``geneval`` alone is the overall
GenEval score, the unweighted mean of the six task accuracies. `rank` is 1 for the best and 2 for the second
best value of a column, ranked separately among our rows and among the paper's rows, on the value as
displayed (so equal printed values share a rank; higher is better for every metric here). `delta` is the
difference to the baseline row of the same source: our `baseline` run, or the paper's ``pretrained`` row.
`protocol` says how our number was computed (``evaluators.report.scores.PROTOCOLS``; several joined by "+" when a
cell mixes them; ``paper`` for the paper's rows): only ``official`` numbers are comparable with the paper's rows.
The writers in `writers.py` render a `Table` as Markdown, LaTeX or CSV and mark every other protocol.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from evaluators.report.paper import paper_reference
from evaluators.report.scores import GENEVAL_TASKS, validate_scores
from evaluators.report.stats import estimate


@dataclass(frozen=True)
class Column:
    """One table column: the score key, its printed label, and how it is printed (value * scale)."""

    key: str
    label: str
    decimals: int = 4
    scale: float = 1.0

    @property
    def metric(self) -> str:
        return self.key.split("/")[0]

    @property
    def tag(self) -> str:
        return self.key.partition("/")[2]


REWARD_COLUMNS = (Column("hpsv2.1", "HPSv2.1"), Column("hpsv3", "HPSv3"), Column("pickscore", "PickScore"),
                  Column("ur_alignment", "UR-Alignment"), Column("ur_iq", "UR-IQ"),
                  Column("imagereward", "ImageReward"))
TASK_LABELS = {"single_object": "Single Obj.", "two_object": "Two Obj.", "counting": "Counting",
               "colors": "Colors", "position": "Position", "color_attr": "Attr. Binding"}
# GenEval tasks are printed in percent, like the paper; the overall as a fraction, like the paper.
GENEVAL_COLUMNS = (Column("geneval", "GenEval"),
                   *(Column(f"geneval/{task}", TASK_LABELS[task], 2, 100.0) for task in GENEVAL_TASKS))
LAYOUTS: dict[str, tuple[Column, ...]] = {
    "table2": REWARD_COLUMNS + GENEVAL_COLUMNS,
    "rewards": REWARD_COLUMNS,
    "geneval": GENEVAL_COLUMNS,
    "sd35m": REWARD_COLUMNS,
    "table3": (Column("hpsv2.1", "HPSv2.1"), Column("pickscore", "PickScore"), Column("hpsv3", "HPSv3")),
}
AUTO = "auto"  # a layout of the metrics the scores hold (``metric_columns``), for runs beyond the paper's tables
CELL_COLUMNS = ["row", "source", "method", "group", "key", "mean", "ci_low", "ci_high", "delta",
                "n_prompts", "n_images", "rank", "is_baseline", "protocol"]
PAPER = "paper"


@dataclass
class Table:
    layout: str
    columns: tuple[Column, ...]
    cells: pd.DataFrame

    @property
    def rows(self) -> list[str]:
        """Row labels in print order: our runs, then the paper's rows."""
        return list(dict.fromkeys(self.cells["row"]))

    def wide(self, value: str = "mean") -> pd.DataFrame:
        """Rows x column keys of one cell field (``mean``, ``ci_low``, ``delta``, ...)."""
        grid = self.cells.pivot(index="row", columns="key", values=value)
        return grid.reindex(index=self.rows, columns=[c.key for c in self.columns])


def metric_columns(scores: pd.DataFrame) -> tuple[Column, ...]:
    """A column per metric in the scores: the paper's columns first, in their order (GenEval overall and the
    tasks present), then any other metric under its own name (e.g. the demo's ``reward``)."""
    present = set(scores["metric"]) | {f"geneval/{t}" for t in scores.loc[scores["metric"] == "geneval", "tag"]}
    if all(f"geneval/{task}" in present for task in GENEVAL_TASKS):
        present.add("geneval")
    known = [c for c in REWARD_COLUMNS + GENEVAL_COLUMNS if c.key in present]
    others = sorted(present - {c.key for c in REWARD_COLUMNS + GENEVAL_COLUMNS} - {"geneval"})
    return (*known, *(Column(metric, metric) for metric in others))


def _column_groups(scores: pd.DataFrame, column: Column) -> list[pd.DataFrame]:
    """The score groups a column averages: one (metric, tag) group, or the six tasks for GenEval overall."""
    if column.key == "geneval":
        groups = [scores[(scores["metric"] == "geneval") & (scores["tag"] == task)] for task in GENEVAL_TASKS]
        return groups if all(len(g) for g in groups) else []
    group = scores[(scores["metric"] == column.metric) & (scores["tag"] == column.tag)]
    return [group] if len(group) else []


def _our_cells(scores: pd.DataFrame, columns: tuple[Column, ...], resamples: int, seed: int) -> pd.DataFrame:
    records = []
    for run, run_scores in scores.groupby("run", sort=False):
        method = run_scores["method"].iloc[0]
        for column in columns:
            groups = _column_groups(run_scores, column)
            stats = asdict(estimate(groups, resamples=resamples, seed=seed)) if groups else {}
            protocols = sorted(set().union(*(set(g["protocol"]) for g in groups))) if groups else []
            records.append({"row": run, "source": "ours", "method": method, "group": "", "key": column.key,
                            "protocol": "+".join(p or "unrecorded" for p in protocols), **stats})
    return pd.DataFrame.from_records(records)


def _paper_cells(reference: pd.DataFrame, columns: tuple[Column, ...]) -> pd.DataFrame:
    records = [{"row": f"{ref['method']} (paper)", "source": "paper", "method": ref["method"],
                "group": ref.get("group", ""), "key": column.key, "mean": ref.get(column.key, np.nan),
                "protocol": PAPER}
               for _, ref in reference.iterrows() for column in columns]
    return pd.DataFrame.from_records(records)


def _baseline_rows(cells: pd.DataFrame, baseline: str | None) -> dict[str, str]:
    """Source -> label of the row that deltas are taken against."""
    found = {}
    ours = cells[cells["source"] == "ours"].drop_duplicates("row")
    if baseline is not None:
        match = ours[(ours["row"] == baseline) | (ours["method"] == baseline)]["row"].tolist()
        if len(match) != 1:
            raise ValueError(f"baseline {baseline!r} must name exactly one run or method; matched {match} "
                             f"among {ours['row'].tolist()}")
        found["ours"] = match[0]
    pretrained = cells[(cells["source"] == "paper") & (cells["group"] == "pretrained")]["row"].unique()
    if len(pretrained) == 1:
        found["paper"] = pretrained[0]
    return found


def _add_deltas_and_ranks(cells: pd.DataFrame, columns: tuple[Column, ...], baseline: str | None) -> pd.DataFrame:
    base_means = {}
    baselines = _baseline_rows(cells, baseline)
    cells["is_baseline"] = cells["row"].isin(list(baselines.values()))
    for source, row in baselines.items():
        base = cells[cells["row"] == row]
        base_means[source] = dict(zip(base["key"], base["mean"]))
    cells["delta"] = [m - base_means[s][k] if s in base_means else np.nan
                      for s, k, m in zip(cells["source"], cells["key"], cells["mean"])]
    spec = {c.key: c for c in columns}
    shown = [round(m * spec[k].scale, spec[k].decimals) for k, m in zip(cells["key"], cells["mean"])]
    cells["rank"] = pd.Series(shown, index=cells.index).groupby([cells["source"], cells["key"]]).rank(
        method="dense", ascending=False)
    return cells


def build_table(scores: pd.DataFrame, layout: str = "table2", reference: pd.DataFrame | str | None = "paper",
                baseline: str | None = "pretrained", *, prompt_sets: Mapping[str, str] | None = None,
                resamples: int = 1000, seed: int = 0) -> Table:
    """Build a results table from per-image scores (see `scores.py` for the format).

    layout: a key of `LAYOUTS` (``table2`` = the paper's Table 2: six rewards, GenEval overall and tasks), or
        ``"auto"`` for a column per metric present (no paper table belongs to it: use reference=None).
    reference: paper rows to print under ours: ``"paper"`` for the layout's own paper table, a DataFrame with
        `method`, optional `group` and metric-key columns (e.g. `paper_table(...)`), or None for none.
    baseline: run name or method of our row that deltas are taken against; None for no deltas.
    prompt_sets: optional metric -> prompt set, to score e.g. ``hpsv2.1`` only on ``hpdv2`` prompts.
    resamples, seed: the prompt bootstrap (95% percentile interval); the same seed for every cell.
    """
    if layout != AUTO and layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; have {sorted(LAYOUTS)} or {AUTO!r}")
    scores = validate_scores(scores).dropna(subset=["value"])
    columns = metric_columns(scores) if layout == AUTO else LAYOUTS[layout]
    for metric, prompt_set in (prompt_sets or {}).items():
        scores = scores[(scores["metric"] != metric) | (scores["prompt_set"] == prompt_set)]
    if scores.empty:
        raise ValueError("no scores to tabulate")
    parts = [_our_cells(scores, columns, resamples, seed)]
    if isinstance(reference, str):
        if reference != "paper":
            raise ValueError(f"reference must be 'paper', a DataFrame or None, not {reference!r}")
        reference = paper_reference(layout)
    if reference is not None:
        parts.append(_paper_cells(reference, columns))
    cells = pd.concat([p for p in parts if len(p)], ignore_index=True).reindex(columns=CELL_COLUMNS)
    cells["group"] = cells["group"].fillna("")
    cells["protocol"] = cells["protocol"].fillna("")
    cells = _add_deltas_and_ranks(cells, columns, baseline)
    return Table(layout, columns, cells.astype({"n_prompts": "Int64", "n_images": "Int64", "rank": "Int64"}))
