"""Render a `Table` as Markdown, LaTeX (booktabs) or CSV, and write it atomically.

Printed cells read ``value ±half-width (delta)``: the value is the mean (GenEval tasks in percent), the
half-width is half the bootstrap 95% CI, the delta is against the baseline row of the same source (not shown
on the baseline row itself). Best per column is bold, second best underlined (ranks in `Table.cells`); a
missing value prints as a dash. A number of ours computed by any protocol but ``official`` carries a mark (†,
‡, ... per protocol) explained in a note under the table; the paper's rows come from the official scorers.
The CSV holds the plain numbers of `Table.cells` (GenEval as fractions) with each cell's protocol.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from benchmark.core.io import atomic_write_text as write_text
from evaluators.report.scores import OFFICIAL, PROTOCOLS
from evaluators.report.tables import PAPER, Column, Table

MARKDOWN = {"bold": "**{}**", "underline": "<u>{}</u>", "ci": " ±{}", "delta": " ({})", "missing": "–",
            "arrow": " ↑", "mark": "{}"}
LATEX = {"bold": r"\textbf{{{}}}", "underline": r"\underline{{{}}}", "ci": r" {{\scriptsize$\pm${}}}",
         "delta": r" {{\scriptsize({})}}", "missing": "--", "arrow": r" $\uparrow$", "mark": r"\textsuperscript{{{}}}"}
SYMBOLS = ("†", "‡", "§", "¶", "*")
LATEX_SYMBOLS = {"†": r"\dag", "‡": r"\ddag", "§": r"\S", "¶": r"\P", "*": "*"}


def protocol_marks(table: Table) -> dict[str, str]:
    """A symbol for every protocol of our cells other than ``official``, in order of first use."""
    others = [p for p in dict.fromkeys(table.cells["protocol"]) if p and p not in (OFFICIAL, PAPER)]
    return {p: SYMBOLS[i % len(SYMBOLS)] * (1 + i // len(SYMBOLS)) for i, p in enumerate(others)}


def protocol_note(table: Table, latex: bool = False) -> str:
    """The note explaining the marks ('' when every number of ours is official)."""
    lines = []
    for protocol, symbol in protocol_marks(table).items():
        meaning = "; ".join(PROTOCOLS.get(p, p) for p in protocol.replace("unrecorded", "").split("+"))
        symbol = "".join(LATEX_SYMBOLS[c] for c in symbol) if latex else symbol
        lines.append(f"{symbol} {protocol}: {meaning}.")
    return "\n".join(lines)
_LATEX_SPECIAL = re.compile(r"([&%$#_{}])")


def _format_cell(cell: pd.Series, column: Column, marks: dict[str, str], ci: bool, delta: bool,
                 symbols: dict[str, str]) -> str:
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
    if cell["protocol"] in symbols:
        symbol = symbols[cell["protocol"]]
        text += marks["mark"].format("".join(LATEX_SYMBOLS[c] for c in symbol) if marks is LATEX else symbol)
    return text


def _text_grid(table: Table, marks: dict[str, str], ci: bool, delta: bool) -> pd.DataFrame:
    """Rows x printed column labels of formatted cells."""
    spec = {c.key: c for c in table.columns}
    symbols = protocol_marks(table)
    cells = table.cells.assign(text=[_format_cell(c, spec[c["key"]], marks, ci, delta, symbols)
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
    note = protocol_note(table)
    return "\n".join(lines) + "\n" + ("\n" + note.replace("\n", "<br>\n") + "\n" if note else "")


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
    note = protocol_note(table, latex=True)
    return tex + ("".join(f"% {line}\n" for line in note.split("\n")) if note else "")


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
