"""Sweeps on a real single-node Slurm (see conftest.py): the tiny 4-run sweep end to end, preemption and
requeue with an exact resume, cancel and resubmit, and an invalid spec that submits nothing.

Timings on a 2-core machine: about 90 s for the 4-run sweep (11 jobs, 2 at a time, each importing torch),
about 70 s for the preemption test (with its in-process reference run), 40 s for cancel/resubmit.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from sweeps.launcher import launch
from sweeps.records import read_records
from sweeps.spec import load_spec
from sweeps.status import last_metrics, sweep_status
from tests.sweeps.helpers import tiny_spec

pytestmark = pytest.mark.slow


def wait_for(predicate, timeout: float, what: str, every: float = 1.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def all_done(spec, root):
    status = sweep_status(spec, root)
    bad = status[status["state"].isin(["FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"])]
    assert bad.empty, f"jobs failed:\n{bad.to_string()}\n{logs(root)}"
    return (status["state"] == "DONE").all()


def logs(root: Path, tail: int | None = 2000) -> str:
    """The jobs' logs, each cut to its last `tail` characters (None: whole) so that a failure message stays short."""
    files = sorted(Path(root).glob("logs/*/*_log.*"))
    return "\n".join(f"--- {p}\n{p.read_text()[-tail:] if tail else p.read_text()}" for p in files)


def train_only(tmp: Path, name: str, iterations: int) -> dict:
    tree = tiny_spec(tmp, name=name, methods=("leapalign",), iterations=iterations, pretrained=False)
    tree["stages"] = {"train": tree["stages"]["train"], "sample": None, "score": None}
    tree["base"]["checkpoint"] = {"every": 20, "keep": 2}
    return tree


def test_tiny_sweep_trains_samples_scores_and_collects(slurm, tmp_path):
    from sweeps.collect import collect

    spec, root = load_spec(tiny_spec(tmp_path)), tmp_path / "root"
    records = launch(spec, "slurm", root)
    by_stage = {s: [r for r in records if r.stages == [s]] for s in ("train", "sample", "score")}
    assert [len(v) for v in by_stage.values()] == [3, 4, 4]
    train_array = {r.job_id.split("_")[0] for r in by_stage["train"]}
    assert len(train_array) == 1 and all(r.array for r in by_stage["train"])  # one job array
    assert {r.dependency for r in by_stage["sample"] if r.name != "pretrained"} == {f"aftercorr:{train_array.pop()}"}
    assert [r.dependency for r in by_stage["score"] if r.name == "pretrained"][0].startswith("afterok:")
    wait_for(lambda: all_done(spec, root), 300, "the sweep to finish", every=3)
    status = sweep_status(spec, root)
    assert list(status["step"]) == [0, 4, 4, 4] and status["last_reward"].notna().sum() == 3
    paths = collect(spec, root, tmp_path / "tables")
    table = (tmp_path / "tables" / "tiny.md").read_text()
    assert all(name in table for name in ("pretrained", "refl", "drtune", "leapalign")), table
    assert {p.name for p in paths} >= {"tiny.md", "tiny.tex", "tiny.csv", "tiny-curves.png"}
    assert launch(spec, "slurm", root) == []  # a finished sweep relaunched submits nothing
    assert len(read_records(root)) == 11


def submit_urgent(cpus: int, attempts: int = 5) -> str:
    """sbatch a job on the higher-priority partition; slurmctld may refuse it for a moment under load
    (seen once in CI with the machine busy), so retry a few times and show sbatch's reason if it still fails."""
    for attempt in range(attempts):
        done = subprocess.run(["sbatch", "--parsable", "-p", "urgent", f"--cpus-per-task={cpus}", "-o", "/dev/null",
                               "--wrap", "sleep 3"], capture_output=True, text=True)
        if done.returncode == 0:
            return done.stdout.strip()
        time.sleep(2)
    raise AssertionError(f"sbatch -p urgent failed {attempts} times: {done.stderr.strip()}")


def test_preempted_run_resumes_from_its_checkpoint_to_the_same_parameters(slurm, tmp_path):
    from safetensors.torch import load_file

    iterations = 120
    spec, root = load_spec(train_only(tmp_path, "preempt", iterations)), tmp_path / "root"
    (run,) = spec.runs
    (record,) = launch(spec, "slurm", root)
    run_dir = run.run_dir(root)
    wait_for(lambda: last_metrics(run_dir).get("step", 0) >= 10, 120, "training to pass step 10", every=0.5)
    cpus = os.cpu_count()
    urgent = submit_urgent(cpus)
    wait_for(lambda: "preempted at step" in logs(root), 120, "the victim to checkpoint on preemption", every=0.5)
    wait_for(lambda: all_done(spec, root), 240, "the requeued run to finish", every=2)
    text = logs(root, tail=None)  # the preemption line is far from the end once the requeued run has logged
    preempted_at = int(text.split("preempted at step ")[1].split(":")[0])
    assert 10 <= preempted_at < iterations and f"finished at step {iterations}" in text, text
    sacct = subprocess.run(["sacct", "-n", "-X", "-P", "-j", f"{record.job_id},{urgent}", "-o", "JobID,State,Partition"],
                           capture_output=True, text=True).stdout
    assert f"{urgent}|COMPLETED|urgent" in sacct, sacct
    steps = [int(line.split('"step": ')[1].split(",")[0]) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert sorted(set(steps)) == list(range(1, iterations + 1))

    # the same run without preemption, in this process (the same stage function, one CPU thread as in the job)
    reference = tmp_path / "reference"
    launch(spec, "debug", reference)
    final = f"checkpoints/step_{iterations:06d}"
    for rel in ("transformer/diffusion_pytorch_model.safetensors", "ema.safetensors"):
        ours, theirs = load_file(run_dir / final / rel), load_file(run.run_dir(reference) / final / rel)
        assert ours.keys() == theirs.keys()
        different = [k for k in ours if not ours[k].equal(theirs[k])]
        assert not different, f"{rel}: {len(different)} tensors differ bitwise, e.g. {different[:3]}"


def test_cancelled_run_shows_cancelled_and_is_resubmitted(slurm, tmp_path):
    spec, root = load_spec(train_only(tmp_path, "cancel", 100)), tmp_path / "root"
    (first,) = launch(spec, "slurm", root)
    (run,) = spec.runs
    wait_for(lambda: last_metrics(run.run_dir(root)).get("step", 0) >= 1, 120, "training to start", every=0.5)
    assert launch(spec, "slurm", root) == []  # running: not submitted twice
    subprocess.run(["scancel", first.job_id], check=True)
    wait_for(lambda: sweep_status(spec, root)["state"].iloc[0] == "CANCELLED", 60, "sacct to show CANCELLED")
    (second,) = launch(spec, "slurm", root)
    assert second.job_id != first.job_id and second.stages == ["train"]
    wait_for(lambda: all_done(spec, root), 180, "the resubmitted run to finish", every=2)
    status = sweep_status(spec, root)
    assert status["step"].iloc[0] == 100 and f"train={second.job_id}" in status["job_ids"].iloc[0]
    assert launch(spec, "slurm", root) == []


def jobs_named(name: str) -> tuple[str, str]:
    names = ",".join(f"{name}:{s}" for s in ("train", "sample", "score"))
    queued = subprocess.run(["squeue", "-h", "-n", names], capture_output=True, text=True, check=True).stdout
    accounted = subprocess.run(["sacct", "-n", "-X", "--name", names, "-S", "now-1hours"], capture_output=True,
                               text=True, check=True).stdout
    return queued.strip(), accounted.strip()


def test_one_invalid_run_submits_no_job(slurm, tmp_path):
    from benchmark.cli import main

    tree = tiny_spec(tmp_path, name="invalid")
    tree["runs"][3]["method"]["alpha"] = 1.5  # the last run: every run before it is valid
    spec_file = tmp_path / "invalid.yaml"
    spec_file.write_text(yaml.safe_dump(tree))
    root = tmp_path / "root"
    assert main(["sweep", "launch", str(spec_file), "--root", str(root)]) == 2
    # a value only the filesystem check catches: a missing embedding cache in one run
    tree = tiny_spec(tmp_path, name="invalid")
    tree["runs"][2]["prompts"] = {"cache": str(tmp_path / "missing-cache")}
    spec_file.write_text(yaml.safe_dump(tree))
    assert main(["sweep", "launch", str(spec_file), "--root", str(root)]) == 2
    time.sleep(2)
    assert jobs_named("invalid") == ("", "")
    assert not (root / "jobs.json").exists() and read_records(root) == []
