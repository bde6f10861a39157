"""What the report knows about each run: its directory, config, status, compute, and its sample folders.

A run directory (``leapbench train``, or a sweep's ``runs/<name>-<id>``) may hold config.yaml, metrics.jsonl,
summary.json, scores.parquet and sample folders ``samples*/`` in GenEval's layout with their sampling.json.
``discover_runs(root)`` finds run directories under a run directory, a sweep root (``<root>/runs/*``) or a
folder of run directories; a sweep fills `RunInfo` itself from its spec and job records (``sweeps.report``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

STEP_DIR = re.compile(r"step_0*(\d+)$")
IGNORED_KEYS = ("run_dir", "sweep.")  # differ between every pair of runs by construction


@dataclass
class SampleSet:
    """One column of the sample browser: a samples folder and the scores' ``run`` label of its images."""

    label: str
    run: str
    folder: Path
    settings: dict = field(default_factory=dict)  # its sampling.json

    @property
    def caption(self) -> str:
        """What produced the images: checkpoint step, EMA, sampling steps and seed, as far as known."""
        s = self.settings
        step = STEP_DIR.search(str(s.get("checkpoint") or ""))
        parts = [f"step {step.group(1)}" if step else ("base model" if "checkpoint" in s else None),
                 "EMA" if s.get("ema") else None, f"{s['steps']} steps" if s.get("steps") else None,
                 f"seed {s['seed']}" if s.get("seed") is not None else None]
        return " · ".join(p for p in parts if p)


@dataclass
class RunInfo:
    """A row of the report's run table; ``name`` is the run's label in the scores and the results table."""

    name: str
    method: str = ""
    run_dir: Path | None = None
    config: dict = field(default_factory=dict)  # the resolved run config ({} when unknown)
    status: str = ""
    details: dict[str, Any] = field(default_factory=dict)  # more columns of the run table (stage, job ids)
    samples: list[SampleSet] = field(default_factory=list)

    def file(self, name: str) -> Path | None:
        path = self.run_dir / name if self.run_dir is not None else None
        return path if path is not None and path.is_file() else None

    def telemetry(self) -> pd.DataFrame | None:
        """metrics.jsonl sorted by step (None before the first step)."""
        path = self.file("metrics.jsonl")
        if path is None or not path.read_text().strip():
            return None
        return pd.read_json(path, lines=True).sort_values("step", ignore_index=True)

    def summary(self) -> dict:
        path = self.file("summary.json")
        return json.loads(path.read_text()) if path else {}


def sample_sets(run_dir: Path, run: str) -> list[SampleSet]:
    """``samples`` (scored as ``run``) and any other ``samples*`` folder, e.g. an earlier checkpoint sampled with
    ``leapbench sample --checkpoint ... --out <run_dir>/samples-step100``: its scores are those labelled with its
    sampling.json's run label where that differs from ``run``, else ``<run>/<folder>`` (score it with
    ``leapbench score ... --run refl/samples-step100`` into the run's scores.parquet)."""
    found = []
    for folder in sorted(p for p in run_dir.glob("samples*") if p.is_dir()):
        if not any(p.is_dir() and p.name.isdigit() for p in folder.iterdir()):
            continue
        settings_file = folder / "sampling.json"
        settings = json.loads(settings_file.read_text()) if settings_file.is_file() else {}
        if folder.name == "samples":
            found.append(SampleSet(run, run, folder, settings))
        else:
            suffix = folder.name.removeprefix("samples").strip("-_.")
            label = settings.get("run") if settings.get("run") not in (None, run) else f"{run}/{folder.name}"
            found.append(SampleSet(f"{run} · {suffix}", label, folder, settings))
    return found


def scores_label(run_dir: Path) -> tuple[str, str] | None:
    """(run, method) of the run directory's scores.parquet: its one run label, or the one that the others
    extend as ``<run>/<folder>`` (the scores of other sample folders, see `sample_sets`)."""
    path = run_dir / "scores.parquet"
    if not path.is_file():
        return None
    labels = pd.read_parquet(path, columns=["run", "method"]).drop_duplicates("run")
    first = labels.loc[labels["run"].str.len().idxmin()] if len(labels) else None
    if first is None or not all(r == first["run"] or r.startswith(f"{first['run']}/") for r in labels["run"]):
        return None
    return first["run"], first["method"]


def status_of(run_dir: Path, summary: dict) -> str:
    if summary.get("status"):
        return summary["status"]
    for name, status in (("metrics.jsonl", "training (no summary.json yet)"), ("scores.parquet", "scored")):
        if (run_dir / name).is_file():
            return status
    return ""


def read_run_dir(run_dir: Path | str, name: str | None = None) -> RunInfo:
    """A run directory as a `RunInfo`: named by its scores' run label (else the directory name)."""
    run_dir = Path(run_dir).resolve()
    config_file = run_dir / "config.yaml"
    config = (yaml.safe_load(config_file.read_text()) or {}) if config_file.is_file() else {}
    labels = scores_label(run_dir)
    name = name or (labels[0] if labels else run_dir.name)
    method = (config.get("method") or {}).get("name") or (labels[1] if labels else "")
    run = RunInfo(name, method, run_dir, config)
    run.status = status_of(run_dir, run.summary())
    run.samples = sample_sets(run_dir, name)
    return run


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (any((path / f).is_file() for f in ("config.yaml", "metrics.jsonl", "scores.parquet"))
                              or any(p.is_dir() for p in path.glob("samples*")))


def discover_runs(root: Path | str) -> list[RunInfo]:
    """The runs under ``root``: itself if it is a run directory, else its (or its ``runs/``) run directories."""
    root = Path(root)
    if is_run_dir(root):
        return [read_run_dir(root)]
    base = root / "runs" if (root / "runs").is_dir() else root
    return [read_run_dir(d) for d in sorted(base.iterdir()) if is_run_dir(d)] if base.is_dir() else []


# -- compute and status facts ----------------------------------------------------------------------------


def hms(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def run_facts(run: RunInfo) -> dict[str, Any]:
    """The run table's row: status, steps done / planned, wall time of training (all its processes, from
    summary.json), GPU-hours (that wall time x the GPUs of the run, on CUDA), peak memory, last reward."""
    summary, metrics = run.summary(), run.telemetry()
    iterations = (run.config.get("schedule") or {}).get("iterations") if run.method != "pretrained" else None
    step = summary.get("step", int(metrics["step"].iloc[-1]) if metrics is not None else None)
    wall = summary.get("wall_time_total", summary.get("wall_time"))
    gpus = summary.get("world_size") if summary.get("device") == "cuda" else None
    facts = {"run": run.name, "method": run.method, "status": run.status,
             "steps": f"{step} / {iterations}" if iterations else (step if step is not None else ""),
             "wall time": hms(wall) if wall is not None else "",
             "GPU-hours": round(wall * gpus / 3600, 2) if wall is not None and gpus else "",
             "peak memory (GB)": round(summary["peak_mem"] / 1e9, 2) if summary.get("peak_mem") else "",
             "last reward": round(float(metrics["reward_mean"].dropna().iloc[-1]), 4)
             if metrics is not None and "reward_mean" in metrics and metrics["reward_mean"].notna().any() else ""}
    return {**facts, **run.details}


# -- config diff -----------------------------------------------------------------------------------------


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> dotted keys (lists stay values)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}{key}.") if isinstance(value, dict) and value else
                   {f"{prefix}{key}": value})
    return out


MISSING = "—"
ONLY_SOME = "settings only some runs have"


def short(key: str) -> str:
    return key.removeprefix("method.")


def config_diff(runs: list[RunInfo], baseline: str | None = None) -> pd.DataFrame:
    """Where the runs' configs differ: one row per dotted key on which the runs holding it disagree, with a
    ``reference`` column and one column per run (``—``: the run has no such key), then one row listing, per
    run, the settings that only some of the runs with that section have (a method's own options).
    The reference is the baseline run's value where the baseline has the key (a run without training has no
    method or optimiser), else the value most runs share."""
    flat = {r.name: {k: json.dumps(v) for k, v in flatten(r.config).items() if not k.startswith(IGNORED_KEYS)}
            for r in runs if r.config}
    keys = sorted({k for values in flat.values() for k in values})
    sections = {name: {k.split(".")[0] for k in values} for name, values in flat.items()}
    rows, only_some = [], {name: [] for name in flat}
    for key in keys:
        held = {name: values[key] for name, values in flat.items() if key in values}
        if len(set(held.values())) >= 2 or (key == "method.name" and len(held) > 1):
            reference = held.get(baseline) or Counter(held.values()).most_common(1)[0][0]
            rows.append({"key": key, "reference": reference, **{n: held.get(n, MISSING) for n in flat}})
        elif len(held) < sum(key.split(".")[0] in s for s in sections.values()):  # others have the section
            for name, value in held.items():
                only_some[name].append(f"{short(key)}={value}")
    if any(only_some.values()):
        rows.append({"key": ONLY_SOME, "reference": "", **{n: ", ".join(v) or MISSING for n, v in only_some.items()}})
    return pd.DataFrame(rows, columns=["key", "reference", *flat])
