"""The paper's reported numbers, read from `results/paper/*.csv` (see the README there for sources, units
and the discrepancies between the seed files). GenEval values are fractions in [0, 1] throughout."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

PAPER_DIR = Path(__file__).resolve().parents[2] / "results" / "paper"

# Which paper tables make up the reference rows of each table layout (joined on `method`).
LAYOUT_TABLES = {
    "table2": ("table2_flux_hpdv2", "table2_geneval"),
    "rewards": ("table2_flux_hpdv2",),
    "geneval": ("table2_geneval",),
    "sd35m": ("appendix_sd35m",),
    "table3": ("table3_rewards",),
}


def paper_tables(root: Path | str = PAPER_DIR) -> list[str]:
    """Names of the transcribed tables (CSV stems)."""
    return sorted(p.stem for p in Path(root).glob("*.csv"))


def paper_table(name: str, root: Path | str = PAPER_DIR) -> pd.DataFrame:
    """One transcribed table, e.g. `paper_table("table2_flux_hpdv2")`; the `mark` column reads as str."""
    path = Path(root) / f"{name}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no paper table {name!r} in {root}; have {paper_tables(root)}")
    return pd.read_csv(path, dtype={"method": str, "group": str, "mark": str}, keep_default_na=False,
                       na_values=[""]).fillna({"mark": ""})


def paper_reference(layout: str, root: Path | str = PAPER_DIR) -> pd.DataFrame:
    """The paper rows for a table layout: one row per method, metric keys as columns (outer join)."""
    if layout not in LAYOUT_TABLES:
        raise KeyError(f"no paper reference for layout {layout!r}; have {sorted(LAYOUT_TABLES)}")
    first, *rest = (paper_table(name, root) for name in LAYOUT_TABLES[layout])
    for other in rest:
        order = list(dict.fromkeys([*first["method"], *other["method"]]))
        first = first.merge(other, on=["method", "group", "mark"], how="outer")
        first = first.set_index("method").loc[order].reset_index()  # keep the paper's row order
    return first


def paper_ablation(name: str = "ablation_lambda", root: Path | str = PAPER_DIR) -> pd.DataFrame:
    """A paper ablation in the long format that `plots.plot_ablation` reads (no CIs in the paper)."""
    wide = paper_table(name, root)
    ablated = wide.columns[0]
    long = wide.melt(id_vars=ablated, var_name="metric", value_name="mean").rename(columns={ablated: "value"})
    long.insert(0, "ablation", ablated)
    return long.assign(ci_low=float("nan"), ci_high=float("nan"))
