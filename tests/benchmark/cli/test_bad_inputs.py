"""The corpus of named bad inputs (``bad_inputs.CASES``, over 200, every command) fed to the real entry point:
each ends with its exit status (2, or 130 for Ctrl-C) and one message naming what was wrong (one line, or one
line heading a list where a dry run lists every missing input), never a traceback. ``python -m tests.benchmark.cli.test_bad_inputs`` prints how many cases end each way."""

from __future__ import annotations

import importlib
import sys
import tempfile
import traceback
from collections import Counter
from pathlib import Path

import pytest

from tests.benchmark.cli.bad_inputs import CASES, Case
from tests.benchmark.cli.world import World, build_world, release, run_cli


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    built = build_world(tmp_path_factory.mktemp("world"))
    yield built
    release(built)


def interrupted(*args, **kwargs):
    raise KeyboardInterrupt


def outcome(case: Case, world: World, tmp: Path, patch) -> tuple[str, str]:
    """("clean" | "traceback" | "wrong", what happened) for one case."""
    if "{readonly}" in " ".join(case.argv) and world.readonly is None:
        return "skipped", "no read-only folder on this machine"
    fields = dict(vars(world))
    fields["ckpt"] = world.run / "checkpoints" / "step_000002"
    fields.update(case.prepare(world, tmp) if case.prepare else {})
    argv = [a.format(tmp=tmp, **fields) for a in case.argv]
    if case.interrupt:
        module, name = case.interrupt.split(":")
        patch(importlib.import_module(module), name, interrupted)
    try:
        code, _, err = run_cli(argv)
    except BaseException as exc:  # noqa: BLE001 - anything escaping main is what this corpus hunts
        return "traceback", "".join(traceback.format_exception_only(type(exc), exc)).strip()
    lines = [line for line in err.splitlines() if line.startswith("leapbench")]
    expect = case.expect.format(tmp=tmp, **fields)
    if code != case.code or len(lines) != 1 or expect not in err or "Traceback" in err:
        return "wrong", f"exit {code}, stderr {err.strip()[-600:]!r}"
    return "clean", lines[0]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_clear_error(case, world, tmp_path, monkeypatch):
    kind, detail = outcome(case, world, tmp_path, monkeypatch.setattr)
    if kind == "skipped":
        pytest.skip(detail)
    assert kind == "clean", f"{case.name}: {kind}: {detail}"


def test_the_corpus_is_large_and_covers_every_command():
    from benchmark.cli import COMMANDS

    assert len(CASES) >= 200
    assert {c.name.split("/")[0] for c in CASES} >= set(COMMANDS)


if __name__ == "__main__":  # counts for the closing note: python -m tests.benchmark.cli.test_bad_inputs [-v]
    counts: Counter = Counter()
    root = Path(tempfile.mkdtemp())
    (root / "world").mkdir()
    w = build_world(root / "world")
    undo = []

    def patch(obj, name, value):
        undo.append((obj, name, getattr(obj, name)))
        setattr(obj, name, value)

    for i, c in enumerate(CASES):
        case_dir = root / f"case{i}"
        case_dir.mkdir()
        kind, text = outcome(c, w, case_dir, patch)
        while undo:
            obj, name, value = undo.pop()
            setattr(obj, name, value)
        counts[kind] += 1
        if kind != "clean" or "-v" in sys.argv:
            print(f"{kind:9} {c.name}: {text[:300]}")
    release(w)
    print(dict(counts), "of", len(CASES))
