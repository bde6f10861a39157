"""Render a `Table` as Markdown, LaTeX (booktabs) or CSV, and write it atomically.

Printed cells read ``value ±half-width (delta)``: the value is the mean (GenEval tasks in percent), the
half-width is half the bootstrap 95% CI, the delta is against the baseline row of the same source (not shown
on the baseline row itself). Best per column is bold, second best underlined (ranks in `Table.cells`); a
missing value prints as a dash. The CSV holds the plain numbers of `Table.cells` (GenEval as fractions).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from benchmark.core.io import atomic_write_text as write_text
from evaluators.report.tables import Column, Table

MARKDOWN = {"bold": "**{}**", "underline": "<u>{}</u>", "ci": " ±{}", "delta": " ({})", "missing": "–",
            "arrow": " ↑"}
LATEX = {"bold": r"\textbf{{{}}}", "underline": r"\underline{{{}}}", "ci": r" {{\scriptsize$\pm${}}}",
         "delta": r" {{\scriptsize({})}}", "missing": "--", "arrow": r" $\uparrow$"}
_LATEX_SPECIAL = re.compile(r"([&%$#_{}])")


def _format_cell(cell: pd.Series, column: Column, marks: dict[str, str], ci: bool, delta: bool) -> str:
    if pd.isna(cell["mean"]):
        return marks["missing"]
    digits = f".{column.decimals}f"
    text = format(cell["mean"] * column.scale, digits)
    if cell["rank"] == 1:
        text = marks["bold"].format(text)
    elif cell["rank"] == 2:
        text = marks["underline"].format(text)
    if ci and not pd.isna(cell["ci_low"]):
        text += marks["ci"].format(format((cell["ci_high"] - cell["ci_low"]) / 2 * column.scale, digits))
    if delta and not cell["is_baseline"] and not pd.isna(cell["delta"]):
        text += marks["delta"].format(format(cell["delta"] * column.scale, "+" + digits))
    return text


def _text_grid(table: Table, marks: dict[str, str], ci: bool, delta: bool) -> pd.DataFrame:
    """Rows x printed column labels of formatted cells."""
    spec = {c.key: c for c in table.columns}
    cells = table.cells.assign(text=[_format_cell(c, spec[c["key"]], marks, ci, delta)
                                     for _, c in table.cells.iterrows()])
    grid = cells.pivot(index="row", columns="key", values="text").reindex(index=table.rows,
                                                                         columns=list(spec))
    return grid.rename(columns={c.key: c.label + marks["arrow"] for c in table.columns})


def to_markdown(table: Table, *, ci: bool = True, delta: bool = True) -> str:
    """A GitHub Markdown table; first column is the row label (run name, or 'Method (paper)')."""
    grid = _text_grid(table, MARKDOWN, ci, delta)
    header = ["Method", *grid.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] + ["---:"] * len(grid.columns)) + "|"]
    lines += ["| " + " | ".join([row.replace("|", r"\|"), *values]) + " |" for row, values in
              zip(grid.index, grid.to_numpy().tolist())]
    return "\n".join(lines) + "\n"


def latex_escape(text: str) -> str:
    """Escape the LaTeX special characters of a plain label."""
    return _LATEX_SPECIAL.sub(r"\\\1", text).replace("~", r"\textasciitilde{}").replace("^", r"\^{}")


def to_latex(table: Table, *, ci: bool = True, delta: bool = False) -> str:
    """A booktabs tabular (needs \\usepackage{booktabs}); a \\midrule separates our rows from the paper's."""
    grid = _text_grid(table, LATEX, ci, delta)
    grid.index = [latex_escape(row) for row in grid.index]
    grid.index.name = "Method"
    tex = grid.reset_index().to_latex(index=False, escape=False, column_format="l" + "r" * len(grid.columns))
    paper = table.cells.loc[table.cells["source"] == "paper", "row"]
    ours = table.cells["source"] == "ours"
    if len(paper) and ours.any():
        first = latex_escape(paper.iloc[0]) + " &"
        tex = tex.replace("\n" + first, "\n\\midrule\n" + first, 1)
    return tex


def to_csv(table: Table) -> str:
    """The cells as plain numbers: one line per (row, key) with mean, CI, delta, prompt/image counts, rank."""
    return table.cells.to_csv(index=False)


WRITERS = {".md": to_markdown, ".tex": to_latex, ".csv": to_csv}


def write_table(table: Table, path: Path | str) -> Path:
    """Write `table` in the format given by the suffix (.md, .tex, .csv), atomically; returns the path."""
    path = Path(path)
    if path.suffix not in WRITERS:
        raise ValueError(f"unknown table format {path.suffix!r}; use one of {sorted(WRITERS)}")
    return write_text(path, WRITERS[path.suffix](table))


def write_tables(table: Table, out_dir: Path | str, name: str) -> list[Path]:
    """Write `<name>.md`, `<name>.tex` and `<name>.csv` into `out_dir`."""
    return [write_table(table, Path(out_dir) / f"{name}{suffix}") for suffix in WRITERS]
