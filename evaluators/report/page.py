"""``write_report``: one static page for a sweep or a set of runs, opened from the file system.

    <out>/index.html       the page: results table, training curves, sample browser, runs and config diff
    <out>/img/             its figures and sample thumbnails
    <out>/table.csv|md|tex the results table in the usual formats; report.json: the browser's data

The page holds its CSS, JavaScript (assets/, a few hundred lines, no library) and the browser's data, and
refers only to files beside it; its Content-Security-Policy forbids loading anything from elsewhere, so it
opens the same offline, from a zip or a shared drive. The protocol of a number comes from the table's cells or
the scores' ``protocol`` column where they have one; until then every number of ours is LeapBench's own.
"""

from __future__ import annotations

import datetime
import json
import re
import shutil
from collections.abc import Sequence
from html import escape
from pathlib import Path

import pandas as pd

from benchmark.core.io import atomic_write_text
from evaluators.report.browser import browser_data
from evaluators.report.plots import plot_choice_histograms, plot_geneval_radar, plot_grad_norms, plot_training_curves
from evaluators.report.runs import ONLY_SOME, RunInfo, config_diff, run_facts
from evaluators.report.scores import GENEVAL_TASKS
from evaluators.report.tables import Table
from evaluators.report.writers import write_tables

ASSETS = Path(__file__).with_name("assets")
OURS, PAPER = "LeapBench", "as reported in the paper"
Figure = tuple[Path, str]  # an image file and its caption


# -- results table --------------------------------------------------------------------------------------------


def protocols(table: Table, scores: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(row, column key) -> the protocol that produced the number: the table cell's where it was recorded (the
    scores' ``protocol``, ``evaluators.report.scores.PROTOCOLS``), else the scores' own, else ours / the paper's."""
    cells = table.cells
    recorded = cells["protocol"].fillna("").astype(str) if "protocol" in cells else pd.Series("", index=cells.index)
    by_metric = {}
    if "protocol" in scores:
        joined = lambda p: ", ".join(sorted(set(map(str, p)) - {""}))  # noqa: E731
        by_metric = scores.groupby(["run", "metric"])["protocol"].agg(joined)
    out = {}
    for r, k, s, p in zip(cells["row"], cells["key"], cells["source"], recorded):
        if s == "paper" and p in ("", "paper"):
            out[(r, k)] = PAPER
            continue
        known = p if p and set(p.split("+")) != {"unrecorded"} else by_metric.get((r, k.split("/")[0]), "")
        out[(r, k)] = known or OURS
    return out


def number_cell(cell: pd.Series, scale: float, decimals: int, protocol: str, baseline: str) -> str:
    if pd.isna(cell["mean"]):
        return '<td data-sort="">–</td>'
    mean = float(cell["mean"] * scale)
    text = f'<span class="v">{mean:.{decimals}f}</span>'
    notes = [f"mean {mean:.{decimals + 2}f}"]
    if not pd.isna(cell["ci_low"]):
        half = (cell["ci_high"] - cell["ci_low"]) / 2 * scale
        text += f'<span class="ci">±{half:.{decimals}f}</span>'
        notes.append(f"95% CI [{cell['ci_low'] * scale:.{decimals}f}, {cell['ci_high'] * scale:.{decimals}f}]")
    if not cell["is_baseline"] and not pd.isna(cell["delta"]):
        delta = cell["delta"] * scale
        text += f'<span class="d {"pos" if delta >= 0 else "neg"}">({delta:+.{decimals}f})</span>'
        notes.append(f"Δ {delta:+.{decimals + 2}f} vs {baseline}")
    if not pd.isna(cell["n_prompts"]):
        notes.append(f"{cell['n_prompts']} prompts, {cell['n_images']} images")
    notes.append(f"protocol: {protocol}")
    rank = f' class="rank{cell["rank"]}"' if cell["rank"] in (1, 2) else ""
    return f'<td{rank} data-sort="{mean!r}" title="{escape("; ".join(notes))}">{text}</td>'


def results_table(table: Table, scores: pd.DataFrame, note: str) -> str:
    """The table as HTML: a column per layout column that has a number in some row."""
    proto = protocols(table, scores)
    filled = set(table.cells.loc[table.cells["mean"].notna(), "key"])
    table = Table(table.layout, tuple(c for c in table.columns if c.key in filled), table.cells)
    base = table.cells.loc[table.cells["is_baseline"], ["source", "row"]].drop_duplicates()
    baselines = dict(zip(base["source"], base["row"]))
    head = "".join(f'<th title="{escape(c.key)}">{escape(c.label)} ↑</th>' for c in table.columns)
    rows = []
    for row in table.rows:
        cells = table.cells[table.cells["row"] == row].set_index("key")
        source = cells["source"].iloc[0]
        classes = " ".join([source] + (["baseline"] if cells["is_baseline"].iloc[0] else []))
        row_protocols = ", ".join(dict.fromkeys(proto[(row, c.key)] for c in table.columns))
        tds = "".join(number_cell(cells.loc[c.key], c.scale, c.decimals, proto[(row, c.key)],
                                  baselines.get(source, "")) for c in table.columns)
        rows.append(f'<tr class="{classes}"><td class="text">{escape(row)}</td><td class="text">{source}</td>'
                    f'<td class="text">{escape(row_protocols)}</td>{tds}</tr>')
    return (f'<div class="scroll"><table id="results-table" class="sortable"><thead><tr><th class="text">Method</th>'
            f'<th class="text">Source</th><th class="text">Protocol</th>{head}</tr></thead><tbody>{"".join(rows)}'
            f'</tbody></table></div><p class="caption">{escape(note)}</p>')


# -- figures --------------------------------------------------------------------------------------------------


def training_figures(runs: Sequence[RunInfo], img: Path) -> list[Figure]:
    """Reward, loss and GenEval curves, gradient norms, LeapAlign's gradient parts and the k / j draws, for
    every run with telemetry; a figure is left out when no run logged its keys."""
    telemetry = {r.name: t for r in runs if (t := r.telemetry()) is not None}
    smooth = max(1, max((len(t) for t in telemetry.values()), default=0) // 50)
    band = len(telemetry) <= 2  # the batch's ± std hides the lines of more runs

    def logged(*keys: str) -> tuple[str, ...]:
        return tuple(k for k in keys if any(k in t and t[k].notna().any() for t in telemetry.values()))

    made = []
    if keys := logged("reward_mean", "loss", "geneval"):
        path = plot_training_curves(telemetry, img / "curves.png", metrics=keys, smooth=smooth, band=band,
                                    figsize=(12.0, 3.6))
        made.append((path, f"Training reward (batch mean{' ± std' if band else ''}), loss and GenEval (where "
                           "evaluated) over optimiser steps"
                           + (f", rolling mean of {smooth} logged steps." if smooth > 1 else ".")))
    if keys := logged("grad_norm"):
        made.append((plot_grad_norms(telemetry, img / "grad_norms.png", keys=keys),
                     "Total gradient norm before clipping (faint: every step; line: rolling mean of 10 steps)."))
    if keys := logged("grad_norm_single", "grad_norm_nested"):
        caption = ("LeapAlign's gradient split into its single-step and nested parts (supplement Eq. 18), at the "
                   "steps where logging.grad_parts_every measured them.")
        made.append((plot_grad_norms(telemetry, img / "grad_parts.png", keys=keys), caption))
    if keys := logged("k", "j", "t_min"):
        caption = ("How often each timestep index was drawn: LeapAlign's leap start k and end j, ReFL's and "
                   "DRTune's t_min.")
        made.append((plot_choice_histograms(telemetry, img / "choices.png", keys=keys), caption))
    return made


def result_figures(table: Table | None, img: Path) -> list[Figure]:
    """GenEval's six task accuracies per row on a radar chart, when the table has them."""
    tasks = [f"geneval/{t}" for t in GENEVAL_TASKS]
    if table is None or not set(tasks) <= {c.key for c in table.columns}:
        return []
    accuracies = table.wide()[tasks].dropna()
    if accuracies.empty:
        return []
    return [(plot_geneval_radar(accuracies, img / "geneval_radar.png"),
             "GenEval task accuracies of every row with all six (ours and the paper's).")]


def figures_html(figures: Sequence[Figure], out: Path) -> str:
    if not figures:
        return '<p class="note">No run has telemetry (metrics.jsonl) yet.</p>'
    items = [f'<figure><img src="{escape(path.relative_to(out).as_posix())}" alt="{escape(caption)}">'
             f'<figcaption>{escape(caption)}</figcaption></figure>' for path, caption in figures]
    return f'<div class="figures">{"".join(items)}</div>'


# -- runs -------------------------------------------------------------------------------------------------------


def plain_table(frame: pd.DataFrame, table_id: str) -> str:
    """A sortable table; columns of text are left-aligned, numbers right-aligned."""
    text = [not pd.to_numeric(frame[c].replace("", None), errors="coerce").notna().any() for c in frame.columns]
    head = "".join(f'<th{" class=text" if t else ""}>{escape(str(c))}</th>' for c, t in zip(frame.columns, text))
    body = "".join("<tr>" + "".join(f'<td{" class=text" if t else ""}>{escape(str(v))}</td>' for v, t in zip(row, text))
                   + "</tr>" for row in frame.itertuples(index=False))
    return (f'<div class="scroll"><table id="{table_id}" class="sortable"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def diff_table(diff: pd.DataFrame) -> str:
    names = [c for c in diff.columns if c not in ("key", "reference")]
    head = "".join(f"<th>{escape(n)}</th>" for n in names)
    rows = []
    for row in diff.itertuples(index=False):
        values = dict(zip(diff.columns, row))
        cells = "".join('<td class="same">=</td>' if values[n] == values["reference"] else
                        f"<td>{escape(values[n])}</td>" for n in names)
        wrap = ' class="wrap"' if values["key"] == ONLY_SOME else ""
        rows.append(f'<tr{wrap}><td class="text">{escape(values["key"])}</td><td>{escape(values["reference"])}</td>'
                    f"{cells}</tr>")
    return (f'<div class="scroll"><table id="config-diff" class="diff"><thead><tr><th class="text">config key</th>'
            f'<th>reference</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


def runs_html(runs: Sequence[RunInfo], baseline: str | None) -> str:
    if not runs:
        return '<p class="note">No run directories.</p>'
    facts = pd.DataFrame([run_facts(r) for r in runs]).fillna("")
    caption = ('<p class="caption">Wall time: the training processes of the run (summary.json, all of them when '
               "resumed); GPU-hours: that wall time times the run's GPUs (CUDA runs only); steps: done / planned.</p>")
    parts = [plain_table(facts, "runs-table"), caption]
    diff = config_diff(list(runs), baseline)
    parts.append("<h3>Config differences</h3>")
    if diff.empty:
        parts.append('<p class="note">The runs share one config (or none is known).</p>')
    else:
        reference = f"the baseline ({baseline}) where it has the key, else" if baseline else ""
        parts.append(diff_table(diff))
        parts.append(f'<p class="caption">Only the keys on which the runs differ; reference: {escape(reference)} '
                     "the value most runs share; = same as the reference, — the run has no such key. The last row "
                     "lists the settings only some runs have (e.g. a method's own options).</p>")
    return "\n".join(parts)


# -- the page ---------------------------------------------------------------------------------------------------


def samples_html(data: dict) -> str:
    if not data["prompts"]:
        return '<p class="note">No sample folders (samples*/ in GenEval\'s layout) in these runs.</p>'
    shown, total = len(data["prompts"]), data["total_prompts"]
    held = (f"all {total} prompts" if shown == total else
            f"{shown} of {total} prompts: the half where the runs disagree most on {data['metrics'][0]} "
            "and an evenly spaced selection of the others")
    return (f'<p class="note">The same prompt and seed (image index) in every column; per-image scores below each '
            f"image, the best of a row in green. The browser holds {escape(held)}. ← / → turn pages.</p>"
            '<div id="browser"></div>')


def copy_figure(path: Path, caption: str, img: Path) -> Figure:
    target = img / path.name
    if path.resolve() != target.resolve():
        shutil.copyfile(path, target)
    return target, caption


def json_for_html(data: dict) -> str:
    """JSON that cannot end its <script> element early."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def write_report(out: Path | str, *, title: str, table: Table | None, scores: pd.DataFrame, runs: Sequence[RunInfo],
                 baseline: str | None = None, figures: Sequence[Figure] = (), meta: str = "", table_note: str = "",
                 max_prompts: int = 120, thumb: int = 256, progress: bool = True) -> Path:
    """Write the page and everything beside it into ``out``; returns the path of index.html.

    table: the results table (``build_table``), or None before any run is scored. scores: the per-image scores
    of the runs (for the browser). figures: more (image, caption) pairs to show, e.g. the ablation plot.
    """
    out = Path(out)
    img = out / "img"
    img.mkdir(parents=True, exist_ok=True)
    shown = [*training_figures(runs, img), *result_figures(table, img),
             *(copy_figure(Path(p), c, img) for p, c in figures)]
    sets = [s for r in runs for s in r.samples]
    browser = browser_data(sets, scores, out, max_prompts=max_prompts, thumb=thumb, progress=progress)
    atomic_write_text(out / "report.json", json.dumps(browser, indent=1, allow_nan=False))
    files = ["report.json"]
    if table is not None:
        files = [p.name for p in write_tables(table, out, "table")] + files
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    parts = {
        "title": escape(title), "meta": escape(" · ".join(p for p in (meta, f"written {stamp}") if p)),
        "table": results_table(table, scores, table_note) if table is not None else
        '<p class="note">No run is scored yet.</p>',
        "figures": figures_html(shown, out), "samples": samples_html(browser), "runs": runs_html(runs, baseline),
        "files": "Beside this page: " + " ".join(f'<a href="{f}">{f}</a>' for f in files),
        "browser": json_for_html(browser),
        "css": (ASSETS / "report.css").read_text(), "js": (ASSETS / "report.js").read_text(),
    }
    html = re.sub(r"\{\{(\w+)\}\}", lambda m: parts[m.group(1)], (ASSETS / "report.html").read_text())
    return atomic_write_text(out / "index.html", html)

