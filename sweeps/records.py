"""The job record file of a sweep root (``<root>/jobs.json``, written atomically) and job states.

Every submission appends one ``JobRecord`` per job (array tasks are separate records); the newest record of
a (run, stage) is the job that runs it. States come from ``sacct`` through submitit's ``SlurmInfoWatcher``
(Slurm), from the process table (``local``), or are absent (``debug`` runs in the launching process).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from submitit.slurm.slurm import SlurmInfoWatcher

from benchmark.core.io import atomic_write_text

RECORD_FILE = "jobs.json"
ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING", "REQUEUE_HOLD",
          "REQUEUE_FED", "SIGNALING", "STAGE_OUT", "STOPPED"}


@dataclass
class JobRecord:
    run_id: str
    name: str  # the run's name
    stages: list[str]  # the stages this job runs (one on Slurm)
    job_id: str  # Slurm id ("123" or "123_4" for array task 4), a local pid, or "debug-N"
    cluster: str
    folder: str  # submitit's log folder
    submitted: float  # time.time() at submission
    dependency: str | None = None
    array: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)  # the sbatch parameters given to submitit


def record_path(root: Path | str) -> Path:
    return Path(root) / RECORD_FILE


def read_records(root: Path | str) -> list[JobRecord]:
    path = record_path(root)
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    return [JobRecord(**r) for r in data["records"]]


def write_records(root: Path | str, sweep: str, records: list[JobRecord]) -> Path:
    path = record_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"sweep": sweep, "records": [dataclasses.asdict(r) for r in records]},
                                       indent=1))
    return path


def job_states(records: list[JobRecord], cluster: str | None = None) -> dict[str, str]:
    """job id -> state (sacct's, first word: "CANCELLED by 0" -> "CANCELLED")."""
    slurm = [r.job_id for r in records if r.cluster == "slurm" and (cluster in (None, "slurm"))]
    states: dict[str, str] = {}
    if slurm:
        watcher = SlurmInfoWatcher(delay_s=0)
        for job_id in slurm:
            watcher.register_job(job_id)
        try:
            watcher.update()
        except Exception as err:  # sacct missing or failing: states stay unknown
            print(f"sweeps: could not read job states with sacct ({err})", flush=True)
        for job_id in slurm:
            states[job_id] = watcher.get_state(job_id, mode="cache").split()[0]
    for r in records:
        if r.cluster == "local" and (cluster in (None, "local")) and r.job_id.isdigit():
            states[r.job_id] = "RUNNING" if pid_alive(int(r.job_id)) else "ENDED"
    return states


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
