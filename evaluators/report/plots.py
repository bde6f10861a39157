"""Figures as PNG: training curves, gradient norms, ablations, the GenEval radar chart.

Each function takes data and an output path, writes the PNG atomically and returns the path. Figures are
`matplotlib.figure.Figure` objects rendered by Agg (no pyplot state, no display needed); their pixel size is
exactly figsize * dpi (no tight bounding box), so callers and tests can rely on it.

Run telemetry: a run directory holds `metrics.jsonl` (one JSON object per logged step: ``step``,
``reward_mean``, ``reward_std``, ``loss``, ``grad_norm``, optionally ``grad_norm_single``,
``grad_norm_nested``, ``geneval``, ...) and `config.yaml` (the resolved config). `runs` arguments accept a
mapping label -> run directory or DataFrame, or a list of run directories (labelled by directory name).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from benchmark.core.configs import read_yaml
from benchmark.core.errors import ConfigError
from benchmark.core.io import atomic_path, read_jsonl
from evaluators.report.scores import GENEVAL_TASKS
from evaluators.report.tables import TASK_LABELS

Runs = Mapping[str, "pd.DataFrame | Path | str"] | Iterable["Path | str"]


def read_run(run_dir: Path | str) -> tuple[pd.DataFrame, dict]:
    """A run's telemetry (sorted by step) and its resolved config ({} when there is no config.yaml)."""
    run_dir = Path(run_dir)
    file = run_dir / "metrics.jsonl"
    rows = read_jsonl(file)  # a cut-short last line (a killed run) is dropped, other damage is an error
    if not rows or not all(isinstance(r.get("step"), int) for r in rows):
        raise ConfigError(str(file), "telemetry rows with an integer step (leapbench train's metrics.jsonl)",
                          f"{len(rows)} rows")
    metrics = pd.DataFrame.from_records(rows).sort_values("step", ignore_index=True)
    config_path = run_dir / "config.yaml"
    config = read_yaml(config_path, str(config_path)) if config_path.is_file() else {}
    return metrics, config or {}


def _telemetry(runs: Runs) -> dict[str, pd.DataFrame]:
    items = runs.items() if isinstance(runs, Mapping) else ((Path(r).name, r) for r in runs)
    return {label: data if isinstance(data, pd.DataFrame) else read_run(data)[0] for label, data in items}


def save_figure(fig: Figure, out: Path | str) -> Path:
    """Render `fig` to PNG at its own size and dpi, atomically."""
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=fig.dpi)
    return Path(out)


def _curve_panels(runs: dict[str, pd.DataFrame], keys: Sequence[str], figsize, dpi):
    present = [k for k in keys if any(k in f and f[k].notna().any() for f in runs.values())]
    if not present:
        raise ValueError(f"none of {list(keys)} is in the telemetry")
    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    return fig, present, fig.subplots(1, len(present), squeeze=False)[0]


def plot_training_curves(runs: Runs, out: Path | str, *, metrics: Sequence[str] = ("reward_mean", "geneval"),
                         smooth: int = 1, band: bool = True, figsize: tuple[float, float] = (10.0, 4.0),
                         dpi: int = 100) -> Path:
    """One panel per metric present (reward mean with a ±std band unless `band` is off, GenEval at its
    evaluation steps), one line per run; `smooth` is a rolling-mean window in logged steps."""
    runs = _telemetry(runs)
    fig, present, axes = _curve_panels(runs, metrics, figsize, dpi)
    for ax, key in zip(axes, present):
        for i, (label, frame) in enumerate(runs.items()):
            if key not in frame:
                continue
            data = frame[["step", key] + (["reward_std"] if key == "reward_mean" and "reward_std" in frame
                                          else [])].dropna(subset=[key])
            y = data[key].rolling(smooth, min_periods=1).mean()
            ax.plot(data["step"], y, color=f"C{i}", label=label, marker="o" if key == "geneval" else None)
            if band and "reward_std" in data:
                std = data["reward_std"].rolling(smooth, min_periods=1).mean()
                ax.fill_between(data["step"], y - std, y + std, color=f"C{i}", alpha=0.15)
        ax.set(xlabel="step", ylabel=key, title=key.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    return save_figure(fig, out)


def plot_grad_norms(runs: Runs, out: Path | str, *,
                    keys: Sequence[str] = ("grad_norm", "grad_norm_single", "grad_norm_nested"),
                    window: int = 10, log: bool = True, figsize: tuple[float, float] = (10.0, 4.0),
                    dpi: int = 100) -> Path:
    """Gradient norm over steps per run (supplement A3, Fig. 2): the raw values faint, a rolling mean of
    `window` steps on top; one panel per norm present (total, single-step part, nested part)."""
    runs = _telemetry(runs)
    fig, present, axes = _curve_panels(runs, keys, figsize, dpi)
    for ax, key in zip(axes, present):
        for i, (label, frame) in enumerate(runs.items()):
            if key not in frame:
                continue
            data = frame[["step", key]].dropna()
            ax.plot(data["step"], data[key], color=f"C{i}", alpha=0.25, linewidth=0.8)
            ax.plot(data["step"], data[key].rolling(window, min_periods=1).mean(), color=f"C{i}", label=label)
        ax.set(xlabel="step", ylabel=key, title=key.replace("_", " "), yscale="log" if log else "linear")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    return save_figure(fig, out)


def choice_counts(runs: Mapping[str, pd.DataFrame], key: str) -> pd.DataFrame:
    """Values of an integer choice (rows) x runs that logged it (columns): the number of steps it was drawn."""
    counts = {label: frame[key].dropna().astype(int).value_counts() for label, frame in runs.items() if key in frame}
    return pd.DataFrame(counts).fillna(0).astype(int).sort_index()


def plot_choice_histograms(runs: Runs, out: Path | str, *, keys: Sequence[str] = ("k", "j", "t_min"),
                           figsize: tuple[float, float] = (10.0, 3.5), dpi: int = 100) -> Path:
    """How often each integer choice was drawn over training, one panel per choice present (LeapAlign's leap
    start k and end j, ReFL's / DRTune's t_min), side-by-side bars per run (`choice_counts`)."""
    runs = _telemetry(runs)
    fig, present, axes = _curve_panels(runs, keys, figsize, dpi)
    for ax, key in zip(axes, present):
        counts = choice_counts(runs, key)
        width = 0.8 / counts.shape[1]
        for i, label in enumerate(counts.columns):
            ax.bar(counts.index - 0.4 + width * (i + 0.5), counts[label], width, label=label,
                   color=f"C{list(runs).index(label)}")
        ax.set(xlabel=key, ylabel="steps", title=f"{key} drawn per step")
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize="small")
    return save_figure(fig, out)


def plot_ablation(frame: pd.DataFrame, out: Path | str, *, panel_size: tuple[float, float] = (4.0, 3.0),
                  dpi: int = 100) -> Path:
    """A metric against an ablated value, with CI error bars where given.

    `frame` columns: ablation (e.g. ``alpha``, ``lambda``, ``leap_count``, ``timestep_range``), value, metric,
    mean, ci_low, ci_high (CIs may be NaN). One panel per (metric row, ablation column); the figure is
    panel_size * (n_ablations, n_metrics) inches. Numeric values share a numeric axis, others are categories.
    """
    ablations, metrics = list(dict.fromkeys(frame["ablation"])), list(dict.fromkeys(frame["metric"]))
    width, height = panel_size
    fig = Figure(figsize=(width * len(ablations), height * len(metrics)), dpi=dpi, layout="constrained")
    axes = fig.subplots(len(metrics), len(ablations), squeeze=False)
    for (r, metric), (c, ablation) in ((m, a) for m in enumerate(metrics) for a in enumerate(ablations)):
        ax = axes[r, c]
        data = frame[(frame["ablation"] == ablation) & (frame["metric"] == metric)]
        numeric = pd.to_numeric(data["value"], errors="coerce")
        x = numeric if numeric.notna().all() else np.arange(len(data))
        order = np.argsort(np.asarray(x, dtype=float), kind="stable")
        x, data = np.asarray(x, dtype=float)[order], data.iloc[order]
        low = (data["mean"] - data.get("ci_low", data["mean"])).fillna(0).clip(lower=0)
        high = (data.get("ci_high", data["mean"]) - data["mean"]).fillna(0).clip(lower=0)
        ax.errorbar(x, data["mean"], yerr=[low, high], marker="o", capsize=3)
        if numeric.isna().any():
            ax.set_xticks(x, data["value"].astype(str))
        ax.set(xlabel=ablation, ylabel=metric)
        ax.grid(alpha=0.3)
    return save_figure(fig, out)


def plot_geneval_radar(task_scores: pd.DataFrame, out: Path | str, *, figsize: tuple[float, float] = (6.0, 6.0),
                       dpi: int = 100) -> Path:
    """GenEval's six task accuracies (fractions) per method on a radar chart.

    `task_scores`: one row per method (the index is the label), columns named by task (``counting``) or by
    table key (``geneval/counting``), e.g. `Table.wide()` or `paper_table("table2_geneval").set_index("method")`.
    """
    scores = task_scores.rename(columns=lambda c: str(c).removeprefix("geneval/"))
    missing = set(GENEVAL_TASKS) - set(scores.columns)
    if missing:
        raise ValueError(f"task_scores lacks GenEval tasks {sorted(missing)}")
    angles = np.linspace(0, 2 * np.pi, len(GENEVAL_TASKS), endpoint=False)
    closed = np.append(angles, angles[0])
    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    ax = fig.add_subplot(projection="polar")
    ax.set_theta_offset(np.pi / 2)  # first task at the top, clockwise
    ax.set_theta_direction(-1)
    for i, (label, row) in enumerate(scores[list(GENEVAL_TASKS)].astype(float).iterrows()):
        values = np.append(row.to_numpy(), row.iloc[0])
        ax.plot(closed, values, color=f"C{i}", label=str(label))
        ax.fill(closed, values, color=f"C{i}", alpha=0.08)
    ax.set_xticks(angles, [TASK_LABELS[t] for t in GENEVAL_TASKS])
    ax.set_ylim(0, 1)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=3, fontsize="small")
    return save_figure(fig, out)
