"""Reporting: the paper's numbers, per-image scores, tables (Markdown / LaTeX / CSV) and figures (PNG).

    scores = read_scores("results/flux-hpdv2/")                 # per-image long format, see scores.py
    table = build_table(scores, layout="table2", baseline="pretrained")
    write_tables(table, "results/tables", "table2")            # table2.md, table2.tex, table2.csv
    plot_training_curves(["results/runs/leapalign", "results/runs/refl"], "curves.png")

The report page (`page.write_report`: one static HTML page with the table, curves, a sample browser and the
runs' configs) lives in `page.py`, `browser.py` and `runs.py`; import it from there.
"""

from evaluators.report.grids import plot_sample_grid
from evaluators.report.paper import paper_ablation, paper_reference, paper_table, paper_tables
from evaluators.report.plots import (
    choice_counts,
    plot_ablation,
    plot_choice_histograms,
    plot_geneval_radar,
    plot_grad_norms,
    plot_training_curves,
    read_run,
)
from evaluators.report.scores import GENEVAL_TASKS, read_scores, validate_scores, write_scores
from evaluators.report.tables import LAYOUTS, Column, Table, build_table
from evaluators.report.writers import to_csv, to_latex, to_markdown, write_table, write_tables

__all__ = ["GENEVAL_TASKS", "LAYOUTS", "Column", "Table", "build_table", "choice_counts", "paper_ablation",
           "paper_reference", "paper_table", "paper_tables", "plot_ablation", "plot_choice_histograms",
           "plot_geneval_radar", "plot_grad_norms",
           "plot_sample_grid", "plot_training_curves", "read_run", "read_scores", "to_csv", "to_latex",
           "to_markdown", "validate_scores", "write_scores", "write_table", "write_tables"]
