"""Atomic writes honour the umask, leave the old file when killed, and the next run removes a killed writer's
temporaries; JSON-lines telemetry with a cut-short last line reads as the lines before it."""

import os
import subprocess
import sys

import pytest

from benchmark.core.errors import ConfigError
from benchmark.core.io import HOST, atomic_path, atomic_write_text, read_jsonl, remove_stale_temporaries


@pytest.mark.parametrize("mask, mode", [(0o002, 0o664), (0o022, 0o644), (0o077, 0o600)])
def test_files_get_the_mode_the_umask_allows(tmp_path, mask, mode):
    before = os.umask(mask)
    try:
        path = atomic_write_text(tmp_path / "table.md", "x")
    finally:
        os.umask(before)
    assert path.stat().st_mode & 0o777 == mode


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    path = atomic_write_text(tmp_path / "scores.csv", "old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["scores.csv"]


def test_the_temporaries_of_dead_writers_on_this_host_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = tmp_path / f".0.png.{HOST}.{pid}.abc123.tmp"
    mine = tmp_path / f".1.png.{HOST}.{os.getpid()}.abc123.tmp"  # a live writer: this process
    remote = tmp_path / f".2.png.otherhost.{pid}.abc123.tmp"  # another node of a shared file system
    kept = tmp_path / "0.png"
    for p in (stale, mine, remote, kept):
        p.write_text("x")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, remote.name, kept.name])


def test_jsonl_drops_a_cut_short_last_line_and_names_a_broken_one(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')  # killed while writing step 3
    assert read_jsonl(path) == [{"step": 1}, {"step": 2}]
    path.write_text('{"step": 1}\n{"step": \n{"step": 3}\n')
    with pytest.raises(ConfigError, match="line 2"):
        read_jsonl(path)
