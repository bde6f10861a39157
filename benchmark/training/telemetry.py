"""Per-step telemetry: <run_dir>/metrics.jsonl (one JSON object per step), tqdm, summary.json, and the same rows
to TensorBoard and W&B when asked for (``trackers.py``).

Each line holds ``step, loss, reward_mean, reward_std``, the method's metrics and choices as it reports
them (``weight, k, j, ts, t_min, t_train, d_j, d_0 ...``), ``grad_norm`` (total, before clipping), for
methods with a gradient decomposition ``grad_norm_<part>`` (LeapAlign: ``grad_norm_single`` and
``grad_norm_nested``), ``lr, step_time, peak_mem`` (bytes) and ``skipped``. Plots read this file and
config.yaml from the run directory; keep those names.

Gradient parts: a method's ``gradient_parts()`` (``methods.base.Method``) names variants whose gradient (same
choices, same trajectory) is one part of its full gradient; the loop logs each part's norm and the norm of
the remainder under the complementary name (LeapAlign: the alpha = 0 gradient is Eq. 18's single-step part,
the rest its nested part).
"""

from __future__ import annotations

import json
import math
import resource
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from benchmark.core import distributed
from benchmark.core.io import atomic_write_text, read_jsonl, remove_stale_temporaries
from benchmark.training.trackers import open_trackers, scalars

SUMMARY_KEYS = ("loss", "reward_mean", "grad_norm", "step_time")
COMPLEMENT = {"single": "nested"}  # the name of the remainder of a gradient part


def complement(part: str) -> str:
    return COMPLEMENT.get(part, f"rest_{part}")


def merge_metrics(rows: list[dict]) -> dict:
    """Micro-batch metrics -> step metrics: floats averaged over micro-batches and ranks, choices kept.

    reward_std is the standard deviation of the whole global batch (from per-micro-batch moments).
    """
    first = rows[0]
    floats = [k for k, v in first.items() if isinstance(v, float)]
    table = torch.tensor([[float(r[k]) for k in floats] for r in rows], dtype=torch.float64)
    if "reward_mean" in first and "reward_std" in first:
        second = torch.tensor([[r["reward_std"] ** 2 + r["reward_mean"] ** 2] for r in rows], dtype=torch.float64)
        table = torch.cat([table, second], dim=1)
    means = distributed.all_mean(table.mean(0)).tolist()
    out = {k: v for k, v in first.items() if k not in floats}
    out.update(zip(floats, means))
    if "reward_mean" in first and "reward_std" in first:
        out["reward_std"] = math.sqrt(max(means[-1] - out["reward_mean"] ** 2, 0.0))
    return out


def peak_memory(device: torch.device) -> int:
    """Peak memory in bytes: CUDA's max allocated on GPU, the process's max RSS on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


class Telemetry:
    """Rank 0 writes; other ranks hold a no-op instance (``enabled=False``)."""

    def __init__(self, run_dir: Path, enabled: bool, total: int, start: int, progress: bool, tensorboard: bool,
                 wandb: Any = None, config: dict | None = None):
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.rows: list[dict] = []
        self.summary_row: dict[str, Any] = {}
        self.bar, self.trackers = None, []
        if not enabled:
            return
        remove_stale_temporaries(run_dir)  # half-written files of a killed run
        before = self.path.parent / "summary.json"  # a resumed run's predecessors, for its total wall time
        self.before = read_json_or_empty(before) if start else {}
        self._truncate_after(start)  # a resumed run rewrites the steps after its checkpoint
        self.file = open(self.path, "a")
        if progress:
            self.bar = tqdm(total=total, initial=start, desc="train", dynamic_ncols=True)
        self.trackers = open_trackers(run_dir, start, tensorboard, wandb, config)

    def _truncate_after(self, step: int) -> None:
        """Keep the steps up to the checkpoint (a cut-short last line goes too), rewriting the file atomically."""
        if not self.path.exists():
            return
        keep = [row for row in read_jsonl(self.path) if isinstance(row.get("step"), int) and row["step"] <= step]
        atomic_write_text(self.path, "".join(json.dumps(row) + "\n" for row in keep))

    def log(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        row = {k: _jsonable(v) for k, v in row.items()}
        self.rows.append(row)
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        for tracker in self.trackers:
            tracker.log(row["step"], scalars(row))
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(reward=f"{row.get('reward_mean', float('nan')):.4f}",
                                 loss=f"{row.get('loss', float('nan')):.4g}", skipped=row.get("skipped", False))

    def summary(self, extra: dict[str, Any]) -> dict[str, Any]:
        """Summarise every logged step of the run (reading metrics.jsonl, so resumed runs are whole)."""
        if not self.enabled:
            return {}
        rows = read_jsonl(self.path)
        good = [r for r in rows if not r.get("skipped")]
        tail = max(1, len(good) // 10)
        out: dict[str, Any] = {"steps_logged": len(rows), "steps_skipped": len(rows) - len(good)}
        for key in SUMMARY_KEYS:
            values = [r[key] for r in good if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
            if values:
                out[f"{key}_first"] = sum(values[:tail]) / len(values[:tail])
                out[f"{key}_last"] = sum(values[-tail:]) / len(values[-tail:])
        out["peak_mem"] = max((r.get("peak_mem", 0) for r in rows), default=0)
        out.update(extra)
        if "wall_time" in extra:  # this process; the total adds the processes before a resume
            earlier = self.before.get("wall_time_total", self.before.get("wall_time", 0.0))
            out["wall_time_total"] = earlier + extra["wall_time"]
        atomic_write_text(self.path.parent / "summary.json", json.dumps(out, indent=2))
        self.summary_row = out
        return out

    def close(self) -> None:
        if not self.enabled:
            return
        self.file.close()
        if self.bar is not None:
            self.bar.close()
        for tracker in self.trackers:
            tracker.finish(self.summary_row)


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None  # strict JSON has no NaN/inf: a non-finite value is logged as null (see "skipped")
    return value


def read_json_or_empty(path: Path) -> dict:
    """A JSON object file, or {} when it is missing or damaged (a summary is a convenience, never a reason to stop)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
