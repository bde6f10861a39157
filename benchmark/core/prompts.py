"""Prompt sets: a text file (one prompt per line), a JSON list, or JSONL rows with a "prompt" field.

GenEval's evaluation_metadata.jsonl is such a JSONL file (rows carry tag/include/exclude besides "prompt").
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmark.core.errors import ConfigError


def load_prompt_rows(path: str | Path, field: str = "prompts.file") -> list[dict]:
    """The rows of ``path`` in file order (text lines and JSON strings become {"prompt": ...}; JSON objects
    and JSONL rows are kept whole, e.g. GenEval's metadata); ConfigError naming ``field`` otherwise."""
    file = Path(path) if path else None
    if file is None or not file.is_file():
        raise ConfigError(field, "an existing prompt file (.txt, .json or .jsonl)", None if path is None else str(path))
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(field, f"a UTF-8 text file (byte {err.start} is not UTF-8)", str(path)) from None
    try:
        if file.suffix == ".json":
            items = json.loads(text)
            if not isinstance(items, list):
                raise ConfigError(field, "a JSON list of prompts", type(items).__name__)
        elif file.suffix == ".jsonl":
            items = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            items = [line.strip() for line in text.splitlines() if line.strip()]
        rows = [item if isinstance(item, dict) else {"prompt": item} for item in items]
        prompts = [row["prompt"] for row in rows]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ConfigError(field, f"a readable prompt file ({type(err).__name__}: {err})", str(path)) from None
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise ConfigError(field, "a non-empty list of prompt strings", str(path))
    return rows


def load_prompts(path: str | Path, field: str = "prompts.file") -> list[str]:
    """The prompts of ``path`` in file order, blank lines dropped; ConfigError naming ``field`` otherwise."""
    return [row["prompt"] for row in load_prompt_rows(path, field)]
