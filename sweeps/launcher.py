"""``launch(spec, cluster, root)``: validate every run, then submit what is not done yet.

- ``slurm``: one job per stage; train -> sample -> score chained with Slurm dependencies. Jobs of one stage
  with the same resources are one job array (``executor.batch()``); the next stage of a whole array is an
  array too, each task waiting on its own predecessor (``aftercorr``), a single job waits with ``afterok``.
  Dependents of a failed or cancelled job are cancelled by Slurm (``--kill-on-invalid-dep=yes``).
- ``local``: one ``submitit.LocalExecutor`` job per run running its remaining stages in order.
- ``debug``: the remaining stages in this process, one run after the other.

Relaunching skips finished stages (done markers) and runs whose next stage is still queued or running,
cancels stale dependents, and resubmits the rest from where they stopped. Every run is validated with the
real config checks before anything is submitted; one invalid run means no job at all.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit
from submitit.slurm.slurm import _make_sbatch_string

from benchmark.core.errors import ConfigError
from benchmark.training.config import check_run
from sweeps.jobs import StageJob, is_done, resolve
from sweeps.memory import check_memory
from sweeps.records import ACTIVE, JobRecord, job_states, read_records, write_records
from sweeps.spec import RunSpec, Spec
from sweeps.stages import training_config

CLUSTERS = ("slurm", "local", "debug")


@dataclass
class SlurmOptions:
    """sbatch settings; None = not set here (the spec's ``slurm:`` section, then the defaults, decide)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    time: str | int | None = None  # minutes, or "[D-]HH:MM:SS"; default 24 h
    nodes: int | None = None  # default 1
    gpus_per_node: int | None = None  # one task per GPU; 0 = one CPU task; default 8
    cpus_per_task: int | None = None  # default 8
    mem_per_task_gb: float | None = None  # --mem = this x tasks per node
    extra: list[str] = field(default_factory=list)  # more sbatch options: "--key=value" or "--flag"
    signal_delay_s: int | None = None  # USR2 this long before the time limit; default 120
    max_num_timeout: int | None = None  # requeues after time-outs/preemptions before giving up; default 20

    DEFAULTS = dict(time="24:00:00", nodes=1, gpus_per_node=8, cpus_per_task=8, signal_delay_s=120, max_num_timeout=20)
    LOWEST = dict(nodes=1, gpus_per_node=0, cpus_per_task=1, signal_delay_s=0, max_num_timeout=0)

    def check(self, prefix: str = "slurm.") -> SlurmOptions:
        """Every set field's type and range, before anything reaches #SBATCH; ConfigError naming the field as
        ``prefix`` + name ("slurm.cpus_per_task", or "--" for the command line: "--cpus-per-task")."""
        def name(key: str) -> str:
            return f"--{key.replace('_', '-')}" if prefix == "--" else f"{prefix}{key}"

        for key, low in self.LOWEST.items():
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise ConfigError(name(key), f"an integer >= {low}", value)
        if self.mem_per_task_gb is not None and not (isinstance(self.mem_per_task_gb, (int, float))
                                                     and 0 < self.mem_per_task_gb < float("inf")):
            raise ConfigError(name("mem_per_task_gb"), "a positive number of GB", self.mem_per_task_gb)
        for key in ("partition", "account", "qos", "constraint"):
            if getattr(self, key) is not None and not isinstance(getattr(self, key), str):
                raise ConfigError(name(key), "a string", getattr(self, key))
        if self.time is not None:
            minutes(self.time, name("time"))
        if not isinstance(self.extra, list) or not all(
                isinstance(e, str) and e.removeprefix("#SBATCH").strip().startswith("--") for e in self.extra):
            raise ConfigError("--sbatch" if prefix == "--" else name("extra"), "sbatch options as --key=value or --flag",
                              self.extra)
        return self

    def over(self, other: SlurmOptions | dict | None) -> SlurmOptions:
        """These options with the set (non-None, non-empty) fields of ``other`` on top."""
        other = other if isinstance(other, SlurmOptions) or other is None else slurm_options(other)
        if other is None:
            return self
        changes = {f.name: getattr(other, f.name) for f in dataclasses.fields(self)
                   if getattr(other, f.name) not in (None, [])}
        return dataclasses.replace(self, **changes)

    def get(self, name: str) -> Any:
        value = getattr(self, name)
        return self.DEFAULTS.get(name) if value is None else value

    @property
    def tasks_per_node(self) -> int:
        return max(int(self.get("gpus_per_node")), 1)

    @property
    def world_size(self) -> int:
        return int(self.get("nodes")) * self.tasks_per_node

    def time_min(self) -> int:
        return minutes(self.get("time"), "time")

    def executor_parameters(self) -> dict[str, Any]:
        """``submitit.SlurmExecutor.update_parameters`` keywords."""
        params: dict[str, Any] = dict(time=self.time_min(), nodes=int(self.get("nodes")),
                                      ntasks_per_node=self.tasks_per_node, cpus_per_task=int(self.get("cpus_per_task")),
                                      signal_delay_s=int(self.get("signal_delay_s")))
        if int(self.get("gpus_per_node")) > 0:
            params["gpus_per_node"] = int(self.get("gpus_per_node"))
        for name in ("partition", "account", "qos", "constraint"):
            if getattr(self, name):
                params[name] = getattr(self, name)
        if self.mem_per_task_gb:
            params["mem"] = f"{int(self.mem_per_task_gb * 1024 * self.tasks_per_node)}MB"
        extra = {}
        for line in self.extra:
            key, sep, value = line.removeprefix("#SBATCH").strip().removeprefix("--").partition("=")
            extra[key.replace("-", "_")] = value if sep else True
        if extra:
            params["additional_parameters"] = extra
        return params


def slurm_options(values: dict, prefix: str = "slurm.") -> SlurmOptions:
    if not isinstance(values, dict):
        raise ConfigError(prefix.rstrip("."), "a mapping of sbatch settings", values)
    known = {f.name for f in dataclasses.fields(SlurmOptions)}
    for key in values:
        if key not in known:
            raise ConfigError(f"{prefix}{key}", f"one of {', '.join(sorted(known))}", key)
    return SlurmOptions(**values).check(prefix)


def minutes(value: str | int, field: str = "slurm.time") -> int:
    """Slurm time ("[D-]HH:MM:SS", "MM", or an int of minutes) -> minutes; ConfigError naming ``field``."""
    expected = "a positive time ([D-]HH:MM:SS, D-HH, HH:MM:SS, MM:SS or minutes)"
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(field, expected, value)
    if isinstance(value, int):
        if value < 1:
            raise ConfigError(field, expected, value)
        return value
    days, _, rest = value.strip().rpartition("-")
    try:
        parts = [int(p) for p in rest.split(":")]
        d = int(days) if days else 0
    except ValueError:
        raise ConfigError(field, expected, value) from None
    if len(parts) > 3 or d < 0 or any(p < 0 for p in parts):
        raise ConfigError(field, expected, value)
    if days:  # days-hours[:minutes[:seconds]]
        h, m, s = (parts + [0, 0])[:3]
    elif len(parts) == 1:  # minutes
        h, m, s = 0, parts[0], 0
    else:  # minutes:seconds or hours:minutes:seconds
        h, m, s = ([0] * (3 - len(parts)) + parts)
    total = d * 1440 + h * 60 + m + (1 if s else 0)
    if total < 1:
        raise ConfigError(field, expected, value)
    return total


# -- validation ---------------------------------------------------------------------------------------------


def stage_options(spec: Spec, slurm: SlurmOptions | None) -> dict[str, SlurmOptions]:
    base = SlurmOptions().over(slurm_options(spec.slurm)).over(slurm.check("--") if slurm else None)
    return {stage: base.over(slurm_options(spec.resources.get(stage) or {}, f"resources.{stage}."))
            for stage in ("train", "sample", "score")}


def world_size(cluster: str, opts: SlurmOptions) -> int:
    return {"slurm": opts.world_size, "local": opts.tasks_per_node, "debug": 1}[cluster]


def import_root(ref: str) -> str | None:
    """The sys.path entry the stage module was found under (jobs put it on their path)."""
    spec = importlib.util.find_spec(ref.partition(":")[0].split(".")[0])
    if spec is None or not spec.origin:
        return None
    origin = Path(spec.origin)
    return str(origin.parent.parent if origin.name == "__init__.py" else origin.parent)


def validate(spec: Spec, root: Path, cluster: str, options: dict[str, SlurmOptions]) -> None:
    """Every run's config, paths and stages, with the real checks and no model loaded; all errors at once."""
    found = problems(spec, root, cluster, options)
    if found:
        raise ConfigError(f"sweep {spec.name}", f"every run valid; nothing was submitted. {len(found)} problem(s):\n"
                          + "\n".join(f"  {p}" for p in found))


def problems(spec: Spec, root: Path, cluster: str, options: dict[str, SlurmOptions]) -> list[str]:
    """Every unset path variable, then every failing check of every stage of every run (the same message for
    several runs once, naming them)."""
    found = {f"paths.{name}: set {name} in the environment or with --set": [] for name in spec.unresolved}
    for run in spec.runs:
        tree = run.job_config(root)
        for stage, ref in run.stages:
            try:
                try:
                    fn = resolve(ref)
                except (ImportError, AttributeError) as err:
                    raise ConfigError(f"stages.{stage}", "an importable 'module:function'", f"{ref} ({err})") from None
                ws = world_size(cluster, options[stage])
                check = getattr(fn, "check", None)
                if check is None and stage == "train":  # a custom train stage: the run config's own checks
                    check = lambda t, w: check_run(training_config(t, Path(t["run_dir"])), w, "auto",
                                                   check_reward=False)
                if check is not None:
                    check(tree, ws)
            except ConfigError as err:
                if not (spec.unresolved and "${" in str(err)):  # an unset variable is listed once, above
                    found.setdefault(f"{stage}: {err}", []).append(run.name)
    return [f"{text} (runs: {', '.join(names)})" if names else text for text, names in found.items()]


def preview(spec: Spec, cluster: str, root: Path | str, slurm: SlurmOptions | None = None
            ) -> tuple[list[JobRecord], list[str]]:
    """A dry run that plans even when inputs are missing: the jobs that would be submitted and every problem."""
    if cluster not in CLUSTERS:
        raise ConfigError("--cluster", f"one of {', '.join(CLUSTERS)}", cluster)
    root = Path(root).resolve()
    options = stage_options(spec, slurm)
    todo, _ = plan(spec, root, read_records(root), cluster)
    return submit_all(spec, todo, root, cluster, options, dry_run=True), problems(spec, root, cluster, options)


# -- planning -----------------------------------------------------------------------------------------------


@dataclass
class Planned:
    run: RunSpec
    stages: list[tuple[str, str]]  # what is left, in order


def plan(spec: Spec, root: Path, records: list[JobRecord], cluster: str) -> tuple[list[Planned], list[JobRecord]]:
    """Runs with stages left and not in flight, and the stale jobs to cancel before resubmitting them."""
    latest = latest_records(records)
    states = job_states([r for r in latest.values() if r.cluster == cluster], cluster)
    todo, stale = [], []
    for run in spec.runs:
        run_dir = run.run_dir(root)
        left = [(s, ref) for s, ref in run.stages if not is_done(run_dir, s)]
        if not left:
            continue
        first = latest.get((run.id, left[0][0]))
        if first is not None and first.cluster == cluster and is_active(states.get(first.job_id), first):
            continue  # queued or running already
        stale += [r for (rid, s), r in latest.items() if rid == run.id and r.cluster == cluster
                  and is_active(states.get(r.job_id), r)]
        todo.append(Planned(run, left))
    return todo, stale


def latest_records(records: list[JobRecord]) -> dict[tuple[str, str], JobRecord]:
    """(run id, stage) -> the newest record of a job that runs that stage."""
    latest: dict[tuple[str, str], JobRecord] = {}
    for record in records:
        for stage in record.stages:
            latest[(record.run_id, stage)] = record
    return latest


def is_active(state: str | None, record: JobRecord) -> bool:
    if state in ACTIVE:
        return True
    return state in (None, "UNKNOWN") and time.time() - record.submitted < 120  # not in sacct yet


# -- submission ---------------------------------------------------------------------------------------------


def launch(spec: Spec, cluster: str = "slurm", root: Path | str = "results/sweeps", slurm: SlurmOptions | None = None,
           dry_run: bool = False, gpu_mem_gb: float | None = None, memory_check: bool = True) -> list[JobRecord]:
    """Validate, plan and submit; returns the records of the jobs submitted (or, dry, that would be).

    Training on GPUs under Slurm is first checked against the GPU's memory (``sweeps.memory``, unless
    ``memory_check`` is off): a warning where a run's predicted peak does not fit, a ConfigError when
    ``gpu_mem_gb`` is given."""
    if cluster not in CLUSTERS:
        raise ConfigError("--cluster", f"one of {', '.join(CLUSTERS)}", cluster)
    root = Path(root).resolve()
    options = stage_options(spec, slurm)
    validate(spec, root, cluster, options)
    if memory_check and cluster == "slurm" and int(options["train"].get("gpus_per_node")) > 0:
        check_memory(spec, root, world_size(cluster, options["train"]), gpu_mem_gb)
    records = read_records(root)
    todo, stale = plan(spec, root, records, cluster)
    if dry_run:
        return submit_all(spec, todo, root, cluster, options, dry_run=True)
    cancel(stale)
    new = submit_all(spec, todo, root, cluster, options, dry_run=False)
    if new:
        write_records(root, spec.name, records + new)
    return new


def cancel(records: list[JobRecord]) -> None:
    ids = sorted({r.job_id for r in records if r.cluster == "slurm"})
    if ids:
        subprocess.run(["scancel", *ids], check=False, capture_output=True)


def job_for(run: RunSpec, stages: list[tuple[str, str]], root: Path) -> StageJob:
    """The job running ``stages`` (consecutive stages of ``run``) with the run's tree."""
    names = [s for s, _ in run.stages]
    first = names.index(stages[0][0])
    paths = tuple(sorted({p for _, ref in stages if (p := import_root(ref))}))
    return StageJob(list(stages), run.job_config(root), str(run.run_dir(root)), names[first - 1] if first else None,
                    paths)


def submit_all(spec: Spec, todo: list[Planned], root: Path, cluster: str, options: dict[str, SlurmOptions],
               dry_run: bool) -> list[JobRecord]:
    if cluster == "slurm":
        return submit_slurm(spec, todo, root, options, dry_run)
    records = []
    for item in todo:
        stages = [s for s, _ in item.stages]
        opts = options[stages[0]]
        record = JobRecord(item.run.id, item.run.name, stages, "", cluster, str(root / "logs"), time.time(),
                           parameters={"tasks_per_node": opts.tasks_per_node} if cluster == "local" else {})
        if dry_run:
            records.append(record)
            continue
        job = job_for(item.run, item.stages, root)
        if cluster == "debug":
            record.job_id = f"debug-{len(records)}"
            job()
        else:
            executor = submitit.LocalExecutor(root / "logs" / item.run.key)
            executor.update_parameters(timeout_min=opts.time_min(), tasks_per_node=opts.tasks_per_node,
                                       gpus_per_node=int(opts.get("gpus_per_node")))
            record.job_id = str(executor.submit(job).job_id)
        records.append(record)
    return records


def submit_slurm(spec: Spec, todo: list[Planned], root: Path, options: dict[str, SlurmOptions],
                 dry_run: bool) -> list[JobRecord]:
    """Stage by stage: level 0 has no dependency, level n waits on level n-1 of the same run."""
    records: list[JobRecord] = []
    parent: dict[str, tuple[str, int, str]] = {}  # run id -> (group key, index in group, job id) of its last job
    counter = [0]
    for level in range(3):
        groups: dict[tuple, list[Planned]] = {}
        for item in todo:
            if level < len(item.stages):
                stage = item.stages[level][0]
                key = (stage, repr(options[stage]), parent[item.run.id][0] if level else None)
                groups.setdefault(key, []).append(item)
        for (stage, _, parent_group), items in groups.items():
            opts = options[stage]
            parents = [parent[i.run.id] for i in items] if level else []
            group_size = sum(1 for p in parent.values() if p[0] == parent_group)
            if parents and len(items) > 1 and len(items) == group_size and [p[1] for p in parents] == list(range(len(items))):
                dependencies = [f"aftercorr:{parents[0][2].split('_')[0]}"]  # task i waits on task i
                batches = [items]
            elif parents:
                dependencies = [f"afterok:{p[2]}" for p in parents]
                batches = [[i] for i in items]
            else:
                dependencies, batches = [None], [items]
            for batch, dependency in zip(batches, dependencies * len(batches) if len(dependencies) == 1 else dependencies):
                counter[0] += 1
                group = f"{stage}-{counter[0]}"
                ids = submit_batch(spec, batch, stage, opts, dependency, root, dry_run, group)
                for index, (item, job_id) in enumerate(zip(batch, ids)):
                    parent[item.run.id] = (group, index, job_id)
                    records.append(JobRecord(item.run.id, item.run.name, [s for s, _ in item.stages[level:level + 1]],
                                             job_id, "slurm", str(root / "logs"), time.time(), dependency,
                                             len(batch) > 1, executor_params(spec, stage, opts, dependency)))
    return records


def executor_params(spec: Spec, stage: str, opts: SlurmOptions, dependency: str | None) -> dict[str, Any]:
    params = {**opts.executor_parameters(), "job_name": f"{spec.name}:{stage}"}
    if dependency:
        params["dependency"] = dependency
        params.setdefault("additional_parameters", {})["kill_on_invalid_dep"] = "yes"
    return params


def submit_batch(spec: Spec, batch: list[Planned], stage: str, opts: SlurmOptions, dependency: str | None,
                 root: Path, dry_run: bool, group: str) -> list[str]:
    """Submit one job (or one array) of ``stage`` for ``batch``; returns the job ids."""
    params = executor_params(spec, stage, opts, dependency)
    if dry_run:
        return [f"<{group}>" + (f"_{i}" if len(batch) > 1 else "") for i in range(len(batch))]
    executor = submitit.SlurmExecutor(folder=root / "logs" / "%j", max_num_timeout=int(opts.get("max_num_timeout")))
    executor.update_parameters(**params)
    jobs = []
    with executor.batch():
        for item in batch:
            ref = dict(item.stages)[stage]
            jobs.append(executor.submit(job_for(item.run, [(stage, ref)], root)))
    return [str(j.job_id) for j in jobs]


def sbatch_preview(record: JobRecord) -> str:
    """The sbatch header submitit would write for ``record`` (dry runs)."""
    params = dict(record.parameters)
    text = _make_sbatch_string(command=f"{shlex.quote(sys.executable)} -u -m submitit.core._submit <folder>",
                               folder=Path(record.folder) / "%j", map_count=None, **params)
    return "\n".join(line for line in text.splitlines() if line.startswith("#SBATCH"))
