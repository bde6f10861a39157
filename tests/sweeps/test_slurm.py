"""Sweeps on a real Slurm of two emulated nodes (see conftest.py): the tiny 4-run sweep end to end, preemption and
requeue with an exact resume, cancel and resubmit, an invalid spec that submits nothing, and multi-task jobs:
a 1-node x 2-task sweep (train, sample, score) and a preempted 2-node x 2-task training job, both against one
process.

Multi-task training equals one process up to float32 round-off (FSDP2's reduce-scatter sums in another order):
atol 1e-6, rtol 1e-5 on every parameter and EMA tensor, as in tests/benchmark/training/test_trainer_distributed.py.
Sampling and scoring with two tasks equal one task exactly (every PNG byte, every score).

Timings on a 2-core machine: about 90 s for the 4-run sweep (11 jobs, 2 at a time, each importing torch),
about 70 s for the preemption test (with its in-process reference run), 40 s for cancel/resubmit.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from sweeps.launcher import launch
from sweeps.records import read_records
from sweeps.spec import load_spec
from sweeps.status import last_metrics, sweep_status
from tests.benchmark.training.helpers import checkpoint_weights
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


def submit_urgent(attempts: int = 5) -> str:
    """sbatch a job on the higher-priority partition that takes every CPU of every node (so it preempts whatever
    runs); slurmctld may refuse it for a moment under load (seen once in CI with the machine busy), so retry a
    few times and show sbatch's reason if it still fails."""
    nodes, cpus = subprocess.run(["sinfo", "-h", "-p", "urgent", "-o", "%D %c"], capture_output=True,
                                 text=True).stdout.split()
    for attempt in range(attempts):
        done = subprocess.run(["sbatch", "--parsable", "-p", "urgent", f"--nodes={nodes}", "--ntasks-per-node=1",
                               f"--cpus-per-task={cpus}", "-o", "/dev/null", "--wrap", "sleep 3"],
                              capture_output=True, text=True)
        if done.returncode == 0:
            return done.stdout.strip()
        time.sleep(2)
    raise AssertionError(f"sbatch -p urgent failed {attempts} times: {done.stderr.strip()}")


def preempt_and_finish(spec, root: Path, run_dir: Path, iterations: int, after: int, start_within: float,
                       finish_within: float) -> int:
    """Once training passes step ``after``, preempt it with a job on the urgent partition, wait for the requeued run
    to finish; check that the urgent job completed and that every step was logged. Returns the step at which the
    victim checkpointed."""
    wait_for(lambda: last_metrics(run_dir).get("step", 0) >= after, start_within, f"training to pass step {after}",
             every=0.5)
    urgent = submit_urgent()
    wait_for(lambda: "preempted at step" in logs(root), 120, "the victim to checkpoint on preemption", every=0.5)
    wait_for(lambda: all_done(spec, root), finish_within, "the requeued run to finish", every=2)
    text = logs(root, tail=None)  # the preemption line is far from the end once the requeued run has logged
    preempted_at = int(text.split("preempted at step ")[1].split(":")[0])
    assert after <= preempted_at < iterations and f"finished at step {iterations}" in text, text
    sacct = subprocess.run(["sacct", "-n", "-X", "-P", "-j", urgent, "-o", "JobID,State,Partition"],
                           capture_output=True, text=True).stdout
    assert f"{urgent}|COMPLETED|urgent" in sacct, sacct
    steps = [int(line.split('"step": ')[1].split(",")[0]) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert sorted(set(steps)) == list(range(1, iterations + 1))
    return preempted_at


def test_preempted_run_resumes_from_its_checkpoint_to_the_same_parameters(slurm, tmp_path):
    from safetensors.torch import load_file

    iterations = 120
    spec, root = load_spec(train_only(tmp_path, "preempt", iterations)), tmp_path / "root"
    (run,) = spec.runs
    launch(spec, "slurm", root)
    run_dir = run.run_dir(root)
    preempt_and_finish(spec, root, run_dir, iterations, after=10, start_within=120, finish_within=240)

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


# -- multi-task jobs ------------------------------------------------------------------------------------------


def multi_task_spec(tmp: Path, name: str, iterations: int, pretrained: bool) -> dict:
    """The tiny sweep with full fine-tuning on FSDP2 gathering float32 parameters (bf16 would differ from one
    process by far more than round-off), one sample per rank and micro-batch at world size 4."""
    tree = tiny_spec(tmp, name=name, methods=("leapalign",), iterations=iterations, pretrained=pretrained)
    tree["base"]["distributed"] = {"fsdp_param_dtype": "float32"}
    tree["base"]["schedule"].update(global_batch=4, micro_batch=1)
    return tree


def assert_same_parameters(ours: Path, theirs: Path) -> float:
    """Parameters and EMA of two checkpoints equal to float32 round-off; returns the largest difference."""
    a, b = checkpoint_weights(ours), checkpoint_weights(theirs)
    assert a.keys() == b.keys() and len(a) > 4
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    return max((a[k] - b[k]).abs().max().item() for k in a)


def files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` but sampling.json (it names the checkpoint's path)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "sampling.json"}


def job_layout(job_id: str) -> str:
    """'nodes|tasks|nodelist' of the job's first step (the srun that starts submitit's tasks)."""
    out = subprocess.run(["sacct", "-n", "-P", "-j", job_id, "-o", "JobID,NNodes,NTasks,NodeList"],
                         capture_output=True, text=True).stdout
    steps = [line.split("|", 1)[1] for line in out.splitlines() if line.split("|")[0].endswith(".0")]
    return steps[0] if steps else out


def test_two_task_sweep_trains_samples_and_scores_like_one_process(slurm, tmp_path):
    """`leapbench sweep launch` with 2 tasks on 1 node for every stage: training ends equal to one process to
    round-off; sampling and scoring write the same files as one task from the same checkpoint, exactly."""
    from benchmark.cli import main

    tree = multi_task_spec(tmp_path, "tasks2", iterations=2, pretrained=False)
    tree["slurm"].update(gpus_per_node=2, nodes=1)  # count-only GPUs: 2 tasks per node, gloo on CPU
    tree["eval"].update(limit=3, images=4)  # 12 images a run: prompts 2 + 1 and scoring batches 8 + 4 per rank
    spec_file, root = tmp_path / "tasks2.yaml", tmp_path / "root"
    spec_file.write_text(yaml.safe_dump(tree))
    assert main(["sweep", "launch", str(spec_file), "--root", str(root)]) == 0
    spec = load_spec(spec_file)
    records = read_records(root)
    assert [r.stages for r in records] == [["train"], ["sample"], ["score"]]
    wait_for(lambda: all_done(spec, root), 400, "the 2-task sweep to finish", every=3)
    layouts = [job_layout(r.job_id) for r in records]
    assert all(layout.startswith("1|2|lbnode") for layout in layouts), layouts

    reference = tmp_path / "reference"  # one process, every stage
    launch(spec, "debug", reference)
    (run,) = spec.runs
    final = "checkpoints/step_000002"
    worst = assert_same_parameters(run.run_dir(root) / final, run.run_dir(reference) / final)
    print(f"1 node x 2 tasks vs 1 process after 2 steps: max |difference| {worst:.2e}")
    # sampling and scoring by one task from the 2-task run's checkpoint: a copy without samples and scores
    one_task = tmp_path / "one-task"
    shutil.copytree(run.run_dir(root), run.run_dir(one_task),
                    ignore=shutil.ignore_patterns("samples", "scores.parquet", "sample.done", "score.done"))
    launch(spec, "debug", one_task)
    ours, theirs = files(run.run_dir(root) / "samples"), files(run.run_dir(one_task) / "samples")
    assert len([k for k in ours if k.endswith(".png")]) == 12 and ours.keys() == theirs.keys()
    assert [k for k in ours if ours[k] != theirs[k]] == []
    scores = pd.read_parquet(run.run_dir(root) / "scores.parquet")
    assert len(scores) == 12 and scores["value"].nunique() > 1
    pd.testing.assert_frame_equal(scores, pd.read_parquet(run.run_dir(one_task) / "scores.parquet"), check_exact=True)


def test_two_node_job_preempted_resumes_and_ends_like_one_process(slurm, tmp_path):
    """2 nodes x 2 tasks (world size 4) from `leapbench sweep launch --nodes 2 --gpus-per-node 2`, preempted
    by a job that needs both nodes: it checkpoints, is requeued, resumes and ends equal to one process."""
    from benchmark.cli import main

    iterations = 20
    tree = multi_task_spec(tmp_path, "nodes2", iterations, pretrained=False)
    tree["stages"] = {"train": tree["stages"]["train"], "sample": None, "score": None}
    tree["base"]["checkpoint"] = {"every": 10, "keep": 2}
    spec_file, root = tmp_path / "nodes2.yaml", tmp_path / "root"
    spec_file.write_text(yaml.safe_dump(tree))
    assert main(["sweep", "launch", str(spec_file), "--root", str(root), "--nodes", "2", "--gpus-per-node", "2",
                 "--cpus-per-task", "1"]) == 0
    spec, (record,) = load_spec(spec_file), read_records(root)
    run_dir = spec.runs[0].run_dir(root)
    preempted_at = preempt_and_finish(spec, root, run_dir, iterations, after=2, start_within=300, finish_within=400)
    assert job_layout(record.job_id) == "2|4|lbnode[1-2]"

    reference = tmp_path / "reference"  # the same run in one process, never interrupted
    launch(spec, "debug", reference)
    final = f"checkpoints/step_{iterations:06d}"
    worst = assert_same_parameters(run_dir / final, spec.runs[0].run_dir(reference) / final)
    print(f"2 nodes x 2 tasks, preempted at step {preempted_at}, vs 1 process after {iterations} steps: "
          f"max |difference| {worst:.2e}")
