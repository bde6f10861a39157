"""The demo's outputs: table.md / table.csv (reward and preferred share with bootstrap CIs) and the plots.

The table states its own verdict: which method leads on each column, and where LeapAlign stands, so a
reader sees at once whether it won on the toy (it need not: a toy is not FLUX).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from benchmark.cli.demo.stages import SAMPLES, SCORES  # noqa: E402
from benchmark.core.io import atomic_write_text as write_text
from benchmark.core.toy_data import CENTERS, PREFERRED_RADIUS, RARE
from evaluators.report import plot_grad_norms, plot_sample_grid, plot_training_curves, read_scores
from evaluators.report.stats import estimate

ORDER = ["pretrained", "refl", "draft_lv", "drtune", "leapalign", "full_backprop", "grpo", "dancegrpo", "mixgrpo",
         "flowgrpo"]
LABELS = {"pretrained": "Pretrained", "refl": "ReFL", "draft_lv": "DRaFT-LV", "drtune": "DRTune",
          "leapalign": "LeapAlign", "full_backprop": "Full backprop", "grpo": "GRPO", "dancegrpo": "DanceGRPO",
          "mixgrpo": "MixGRPO", "flowgrpo": "Flow-GRPO"}


def build_table(run_dirs: dict[str, Path]) -> pd.DataFrame:
    """One row per method: mean and 95% bootstrap CI (over held-out samples) of each metric."""
    rows = []
    for method, run_dir in run_dirs.items():
        scores = read_scores(run_dir / SCORES)
        row = {"method": LABELS.get(method, method), "key": method}
        for metric, frame in scores.groupby("metric"):
            est = estimate([frame], resamples=1000, seed=0)
            row.update({metric: est.mean, f"{metric}_ci_low": est.ci_low, f"{metric}_ci_high": est.ci_high})
        row["samples"] = scores["prompt_id"].nunique()
        row["train_s_per_1k"] = training_seconds_per_1k(run_dir)
        rows.append(row)
    table = pd.DataFrame(rows)
    table["order"] = table["key"].map(lambda k: ORDER.index(k) if k in ORDER else len(ORDER))
    return table.sort_values("order").drop(columns="order").reset_index(drop=True)


def training_seconds_per_1k(run_dir: Path) -> float:
    """Training seconds per 1,000 samples drawn (the logged step times over iterations x batch); NaN untrained.
    The demo's jobs share the CPU, so compare these within one table, not across machines."""
    metrics, config = run_dir / "metrics.jsonl", run_dir / "config.yaml"
    if not metrics.is_file() or not config.is_file():
        return float("nan")
    steps = [json.loads(line) for line in metrics.read_text().splitlines()]
    batch = yaml.safe_load(config.read_text())["schedule"]["global_batch"]
    return 1000 * sum(r["step_time"] for r in steps) / (len(steps) * batch)


def verdict(table: pd.DataFrame) -> list[str]:
    lines = []
    trained = table[table["key"] != "pretrained"]
    for metric, what in (("preferred", "share of samples with the preferred structure"), ("reward", "mean reward")):
        if metric not in trained:
            continue
        top = trained[metric].max()
        best = ", ".join(f"**{m}**" for m in trained.loc[trained[metric] == top, "method"])
        lines.append(f"- Best {what}: {best} ({top:.3f}).")
    if "leapalign" in set(trained["key"]):
        metric = "preferred" if "preferred" in trained else "reward"
        leap = trained.loc[trained["key"] == "leapalign", metric].item()
        rank = int((trained[metric] > leap).sum()) + 1
        tied = list(trained.loc[(trained[metric] == leap) & (trained["key"] != "leapalign"), "method"])
        if rank == 1 and tied:
            lines.append(f"- LeapAlign ties for first on {metric} with {', '.join(tied)}: no winner here.")
        elif rank == 1:
            lines.append(f"- LeapAlign wins on {metric} here.")
        else:
            ahead = ", ".join(trained.loc[trained[metric] > leap, "method"])
            lines.append(f"- LeapAlign does **not** win here: it ranks {rank} of {len(trained)} on {metric} "
                         f"(ahead of it: {ahead}).")
    return lines


def write_table(table: pd.DataFrame, out: Path, budget: str) -> list[Path]:
    metrics = [m for m in ("reward", "preferred") if m in table]
    header = ["Method"] + [{"reward": "Reward (95% CI)", "preferred": "Preferred share (95% CI)"}[m] for m in metrics]
    header.append("Train s / 1k samples")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in table.iterrows():
        cells = [f"{row[m]:.3f} [{row[f'{m}_ci_low']:.3f}, {row[f'{m}_ci_high']:.3f}]" for m in metrics]
        cost = "-" if pd.isna(row["train_s_per_1k"]) else f"{row['train_s_per_1k']:.2f}"
        lines.append("| " + " | ".join([row["method"], *cells, cost]) + " |")
    text = "\n".join([f"Held-out evaluation, {int(table['samples'].max())} samples per method; {budget}.", "",
                      *lines, "", *verdict(table), ""])
    md = write_text(out / "table.md", text)
    csv = write_text(out / "table.csv", table.drop(columns="key").to_csv(index=False, float_format="%.6g"))
    return [md, csv]


def plot_samples(run_dirs: dict[str, Path], out: Path, backbone: str) -> Path:
    """Toy: a scatter per method of its held-out samples over the pretrained ones. Tiny FLUX: an image grid."""
    loaded = {m: torch.load(d / SAMPLES, weights_only=False) for m, d in run_dirs.items()}
    if backbone != "toy":
        images = [[img for img in saved["images"][:6]] for saved in loaded.values()]
        return plot_sample_grid(images, out / "samples.png", row_labels=[LABELS.get(m, m) for m in loaded], cell=96)

    base = loaded.get("pretrained", next(iter(loaded.values())))["x0"][:1000]
    methods = [m for m in loaded if m != "pretrained"]
    fig, axes = plt.subplots(1, len(methods), figsize=(3 * len(methods), 3.2), dpi=100, squeeze=False)
    for ax, method in zip(axes[0], methods):
        x = loaded[method]["x0"][:1000]
        ax.scatter(base[:, 0], base[:, 1], s=2, c="0.75", label="pretrained")
        ax.scatter(x[:, 0], x[:, 1], s=2, c="tab:red", label="after")
        ax.add_patch(plt.Circle(CENTERS[RARE].tolist(), PREFERRED_RADIUS, fill=False, ls="--", color="k"))
        ax.set(title=LABELS.get(method, method), xlim=(-4, 4), ylim=(-4, 4), xticks=[], yticks=[], aspect="equal")
    axes[0][0].legend(loc="upper center", fontsize=7, markerscale=4)
    fig.suptitle("Held-out samples before (grey) and after (red); dashed: the preferred blob")
    fig.tight_layout()
    fig.savefig(out / "samples.png")
    plt.close(fig)
    return out / "samples.png"


def write_plots(run_dirs: dict[str, Path], out: Path, backbone: str) -> list[Path]:
    trained = {LABELS.get(m, m): d for m, d in run_dirs.items() if (d / "metrics.jsonl").is_file()}
    return [
        plot_training_curves(trained, out / "reward_curves.png", metrics=("reward_mean",), smooth=10, band=False),
        plot_grad_norms(trained, out / "grad_norms.png", keys=("grad_norm",), window=10),
        plot_samples(run_dirs, out, backbone),
    ]
