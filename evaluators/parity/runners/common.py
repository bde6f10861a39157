"""Shared by the runners, which run inside the official environments (not LeapBench's): the job file, the
seeded module (imported by path) and the result file."""

import json
import sys
from pathlib import Path

PARITY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PARITY))

import seeded


def job() -> dict:
    """The job: work directory, seed, image files, prompts, shared inputs made by LeapBench's side."""
    return json.loads(Path(sys.argv[1]).read_text())


def finish(job: dict, scores: list[float], layout: list, **extra) -> None:
    Path(job["out"]).write_text(json.dumps({"scores": [float(s) for s in scores], "layout": layout, **extra}))


__all__ = ["finish", "job", "seeded"]
