"""What runs inside a job: ``StageJob``, a submitit callable with ``checkpoint()`` for requeue.

One job runs one stage of one run (on Slurm) or a run's remaining stages in order (``local`` / ``debug``).
Before calling a stage it exports RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT from
``submitit.JobEnvironment`` (one task per GPU), so ``benchmark.core.distributed`` starts torch.distributed the
way it does under torchrun; training code never sees submitit. A job of several tasks starts one process group
(the run's ``distributed`` backend and timeout) that all its stages share: a second group in the same
processes can hang on the first one's rendezvous keys. When a stage returns, global rank 0 writes its done
marker ``<run_dir>/stages/<stage>.done`` atomically; a finished stage is never run again.

Preemption and time limits: Slurm sends USR2 (submitit asks for it 90 s before the end); training saves a
checkpoint and hands the signal to submitit, which calls ``checkpoint()`` (a fresh job of the same stage),
requeues the job, and the requeued job resumes from the run's newest valid checkpoint (``--resume auto``).
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import submitit

from benchmark.core import distributed
from benchmark.core.io import atomic_write_text


def marker(run_dir: Path, stage: str) -> Path:
    return Path(run_dir) / "stages" / f"{stage}.done"


def is_done(run_dir: Path, stage: str) -> bool:
    return marker(run_dir, stage).is_file()


def mark_done(run_dir: Path, stage: str, job_id: str | None) -> None:
    path = marker(run_dir, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"stage": stage, "job_id": job_id, "host": socket.gethostname(),
                                        "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")


def resolve(ref: str, pythonpath: tuple[str, ...] = ()) -> Callable[[dict, Path], None]:
    """``"module:function"`` -> the function (``pythonpath`` entries are put on sys.path first)."""
    for entry in pythonpath:
        if entry not in sys.path:
            sys.path.insert(0, entry)
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def export_distributed_env() -> tuple[int, str | None]:
    """Rank variables from submitit's job environment (global rank, job id); (0, None) outside a job."""
    try:
        env = submitit.JobEnvironment()
    except RuntimeError:
        return 0, None
    job_id = os.environ.get("SLURM_JOB_ID", str(env.job_id))
    digits = "".join(c for c in job_id if c.isdigit()) or "0"
    os.environ.update(RANK=str(env.global_rank), WORLD_SIZE=str(env.num_tasks), LOCAL_RANK=str(env.local_rank),
                      LOCAL_WORLD_SIZE=str(env.num_tasks // max(env.num_nodes, 1)),
                      MASTER_ADDR=env.hostnames[0], MASTER_PORT=str(20000 + int(digits) % 20000))
    return env.global_rank, str(env.job_id)


@dataclass
class StageJob:
    """Run ``stages`` (name, "module:function") of one run, skipping those already done."""

    stages: list[tuple[str, str]]
    run_config: dict
    run_dir: str
    after: str | None = None  # the stage that must be done before the first one runs
    pythonpath: tuple[str, ...] = field(default_factory=tuple)

    def __call__(self) -> str:
        rank, job_id = export_distributed_env()
        settings = self.run_config.get("distributed") or {}
        _, started = distributed.setup(settings.get("backend", "auto"), settings.get("timeout_s", 1800))
        try:
            return self.run_stages(rank, job_id)
        finally:
            distributed.teardown(started)

    def run_stages(self, rank: int, job_id: str | None) -> str:
        run_dir = Path(self.run_dir)
        previous = self.after
        for stage, ref in self.stages:
            if is_done(run_dir, stage):
                previous = stage
                continue
            if previous is not None and rank == 0 and not is_done(run_dir, previous):
                raise RuntimeError(f"stage {stage} of {run_dir.name} needs stage {previous} done first")
            resolve(ref, self.pythonpath)(self.run_config, run_dir)
            if rank == 0:
                mark_done(run_dir, stage, job_id)
            previous = stage
        return previous or ""

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Called by submitit on preemption / timeout: the same stages again, resuming from their state."""
        return submitit.helpers.DelayedSubmission(StageJob(self.stages, self.run_config, self.run_dir, self.after,
                                                           self.pythonpath))
