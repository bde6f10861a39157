"""GenEval metadata: one JSON object per line with keys tag, include, [exclude], prompt.

A clause is {"class", "count", ["color"], ["position": [relation, group index]]}, as written by GenEval's
prompts/create_prompts.py and read by evaluation/evaluate_images.py. Loading checks every field so a typo
("colour", an unknown class) fails with the file and line instead of being silently ignored while scoring.
"""

import json
import os
from collections.abc import Iterable
from pathlib import Path

from benchmark.core.errors import ConfigError
from benchmark.core.io import atomic_write_text
from evaluators.geneval.vocab import CLASSES, COLORS, EVALUATION_METADATA_PATH, POSITIONS, TAGS

_ROW_KEYS = {"tag", "include", "exclude", "prompt"}
_CLAUSE_KEYS = {"class", "count", "color", "position"}


def check_row(row: object) -> dict:
    """Return `row` if it is a valid GenEval metadata row, else raise ValueError saying what is wrong."""
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    missing = [k for k in ("tag", "include", "prompt") if k not in row]
    if missing:
        raise ValueError(f"missing field(s) {missing}")
    unknown = sorted(set(row) - _ROW_KEYS)
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; expected {sorted(_ROW_KEYS)}")
    if row["tag"] not in TAGS:
        raise ValueError(f"unknown tag {row['tag']!r}; expected one of {list(TAGS)}")
    if not isinstance(row["prompt"], str) or not row["prompt"]:
        raise ValueError(f"prompt must be a non-empty string, got {row['prompt']!r}")
    if not isinstance(row["include"], list) or not row["include"]:
        raise ValueError("include must be a non-empty list of clauses")
    for i, clause in enumerate(row["include"]):
        _check_clause(clause, f"include[{i}]", groups_before=i)
    exclude = row.get("exclude", [])
    if not isinstance(exclude, list):
        raise ValueError("exclude must be a list of clauses")
    for i, clause in enumerate(exclude):
        _check_clause(clause, f"exclude[{i}]", groups_before=0)
    return row


def _check_clause(clause: object, where: str, groups_before: int) -> None:
    if not isinstance(clause, dict) or "class" not in clause or "count" not in clause:
        raise ValueError(f"{where} must be an object with 'class' and 'count'")
    unknown = sorted(set(clause) - _CLAUSE_KEYS)
    if unknown:
        raise ValueError(f"{where} has unknown key(s) {unknown}; expected {sorted(_CLAUSE_KEYS)}")
    if clause["class"] not in CLASSES:
        raise ValueError(f"{where} class {clause['class']!r} is not one of the 80 COCO class names")
    count = clause["count"]
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"{where} count must be a positive integer, got {count!r}")
    if "color" in clause and clause["color"] not in COLORS:
        raise ValueError(f"{where} color {clause['color']!r} is not one of {list(COLORS)}")
    if "position" in clause:
        pos = clause["position"]
        ok = isinstance(pos, list) and len(pos) == 2 and pos[0] in POSITIONS
        if not ok or isinstance(pos[1], bool) or not isinstance(pos[1], int) or not 0 <= pos[1] < groups_before:
            raise ValueError(
                f"{where} position must be [relation in {list(POSITIONS)}, index of an earlier include "
                f"clause], got {pos!r}"
            )


def load_metadata(path: str | os.PathLike) -> list[dict]:
    """Read a GenEval metadata JSONL file (blank lines skipped); a bad line raises ValueError 'file:line: ...'."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("metadata", "an existing GenEval metadata .jsonl file", str(path))
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(check_row(json.loads(line)))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
        except ValueError as e:
            raise ValueError(f"{path}:{lineno}: {e}") from None
    if not rows:
        raise ValueError(f"{path}: no metadata rows")
    return rows


def load_prompt_metadata(path: str | os.PathLike) -> dict:
    """Read the single metadata object of one prompt folder (GenEval reads it with json.load)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("metadata", "a metadata.jsonl file in each prompt folder", str(path))
    try:
        return check_row(json.loads(path.read_text(encoding="utf-8")))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
    except ValueError as e:
        raise ValueError(f"{path}:1: {e}") from None


def load_evaluation_metadata() -> list[dict]:
    """The official 553 GenEval evaluation prompts (seed 43, 100 per task before de-duplication)."""
    return load_metadata(EVALUATION_METADATA_PATH)


def write_metadata(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Write rows as GenEval's evaluation_metadata.jsonl does (json.dumps per line), validated, atomically."""
    lines = []
    for i, row in enumerate(rows):
        try:
            check_row(row)
        except ValueError as e:
            raise ValueError(f"row {i}: {e}") from None
        lines.append(json.dumps(row) + "\n")
    atomic_write_text(path, "".join(lines))
