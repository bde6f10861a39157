"""``sweep_status(spec, root)``: one row per run: where it is, its job's state, its training progress."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from sweeps.jobs import is_done
from sweeps.records import job_states, read_records
from sweeps.spec import Spec

COLUMNS = ["id", "name", "stage", "state", "step", "iterations", "last_reward", "job_ids"]


def last_metrics(run_dir: Path) -> dict:
    """The last row of the run's metrics.jsonl ({} before the first step)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return {}
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    for line in reversed(lines):
        try:
            return json.loads(line)
        except json.JSONDecodeError:  # a line being written
            continue
    return {}


def sweep_status(spec: Spec, root: Path | str) -> pd.DataFrame:
    """stage: the first stage not done ("done" when all are); state: DONE, the state of the newest job that
    runs that stage (sacct), or NOT_SUBMITTED; job_ids: the newest job of every stage, "stage=id"."""
    root = Path(root).resolve()
    records = read_records(root)
    states = job_states(records)
    rows = []
    for run in spec.runs:
        run_dir = run.run_dir(root)
        latest = {}
        for r in records:
            if r.run_id == run.id:
                for s in r.stages:
                    latest[s] = r
        left = [s for s, _ in run.stages if not is_done(run_dir, s)]
        if not left:
            stage, state = "done", "DONE"
        else:
            stage = left[0]
            record = latest.get(stage)
            state = "NOT_SUBMITTED" if record is None else states.get(record.job_id, "UNKNOWN")
        metrics = last_metrics(run_dir)
        rows.append({"id": run.id, "name": run.name, "stage": stage, "state": state, "step": metrics.get("step", 0),
                     "iterations": run.config["schedule"]["iterations"] if run.train else 0,
                     "last_reward": metrics.get("reward_mean"),
                     "job_ids": " ".join(f"{s}={latest[s].job_id}" for s, _ in run.stages if s in latest)})
    return pd.DataFrame(rows, columns=COLUMNS)
