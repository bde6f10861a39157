"""A sweep's report page (``evaluators.report.page``): its runs with their spec config, job state and sample
folders. ``sweep collect`` writes it into ``<out>/report``, ``leapbench report SPEC`` wherever asked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from evaluators.report.page import write_report
from evaluators.report.runs import RunInfo, read_run_dir
from evaluators.report.tables import Table
from sweeps.spec import Spec
from sweeps.status import sweep_status


def sweep_runs(spec: Spec, root: Path | str) -> list[RunInfo]:
    """Every run of the spec, started or not: its config from the spec (a run without training: its backbone and
    eval sections only, as they are all that identify it), its state and stage, and its job ids."""
    root = Path(root).resolve()
    status = sweep_status(spec, root).set_index("id")
    runs = []
    for run in spec.runs:
        run_dir = run.run_dir(root)
        info = read_run_dir(run_dir, name=run.name) if run_dir.is_dir() else RunInfo(run.name, run_dir=run_dir)
        info.method = run.config["sweep"]["method"]
        keep = ("backbone", "eval") if not run.train else tuple(k for k in run.config if k != "sweep")
        info.config = {k: run.config[k] for k in keep}
        row = status.loc[run.id]
        info.status = row["state"] if row["stage"] == "done" else f"{row['state']} ({row['stage']})"
        info.details = {"id": run.id, "job ids": row["job_ids"]}
        runs.append(info)
    return runs


def write_sweep_report(spec: Spec, root: Path | str, out: Path | str, table: Table | None, scores: pd.DataFrame,
                       baseline: str | None, figures: Sequence[tuple[Path, str]] = (), **options) -> Path:
    """The page of a sweep: ``options`` go to ``write_report`` (max_prompts, thumb, progress)."""
    meta = " · ".join(p for p in (spec.description.strip(), f"root {Path(root).resolve()}",
                                  f"spec {spec.source}" if spec.source else "") if p)
    note = ("Mean over images; ± half the 95% prompt-bootstrap interval; (Δ) against the baseline row of the same "
            f"source ({baseline or 'none'} for ours, the pretrained model for the paper's); bold best, underlined "
            "second best per column, ranked among our rows and among the paper's. Hover a number for its CI, "
            "prompt and image counts and protocol; click a header to sort.")
    return write_report(out, title=f"Sweep {spec.name}", table=table, scores=scores, runs=sweep_runs(spec, root),
                        baseline=baseline, figures=figures, meta=meta, table_note=note, **options)
