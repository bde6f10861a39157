"""Atomic file writes, used for everything LeapBench writes that someone may read while it is written.

A file is written to a temporary name beside its target, fsynced and renamed into place, so a reader (or a
rerun after a crash) sees the old file or the new one, never half of one. Temporary names carry the writer's
host and process id (``.<name>.<host>.<pid>.<random>.tmp``), so concurrent writers never collide and the
temporaries of a killed writer are recognised and removed by the next run (``remove_stale_temporaries``).
Files get the mode a plain ``open`` would give them (0666 less the umask), so teammates read results as
the umask allows, not only their owner.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from benchmark.core.errors import ConfigError

HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
TEMPORARY = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def umask() -> int:
    """This process's umask (read from /proc where it can be, else set and restored)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode ``open`` gives a new file: 0666 less the umask (mkstemp would give 0600)."""
    return 0o666 & ~umask()


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; once the block has written it, it replaces ``path``.

    If the block raises, the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.{HOST}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, file_mode())
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def sha256_file(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_text(path: Path | str, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(folder: Path | str) -> list[Path]:
    """Remove the temporary files in ``folder`` left by killed writers of this host; returns them.

    A temporary of a live process, or of another host (a shared file system), is left alone.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        match = TEMPORARY.match(path.name)
        if match and match["host"] == HOST and not alive(int(match["pid"])) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def check_writable(path: Path | str, field: str) -> None:
    """ConfigError naming ``field`` unless ``path`` (a file or folder, existing or not) can be written.

    Probes the folder that would receive it (the nearest existing one) by creating and removing a file there,
    so read-only file systems, permissions and quotas are all caught before any work is done.
    """
    target = Path(path).expanduser().absolute()
    folder = target if target.is_dir() else target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError(field, f"a path whose parents are folders ({folder} is a file)", str(path))
    try:
        fd, probe = tempfile.mkstemp(prefix=".leapbench-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ConfigError(field, f"a writable location ({folder}: {err.strerror})", str(path)) from None


def read_jsonl(path: Path | str, field: str | None = None) -> list[dict]:
    """The JSON objects of a JSONL file written line by line (``metrics.jsonl``).

    A cut-short last line (a writer killed mid-line) is dropped: it is what a killed run leaves, and a
    resumed run writes that step again. Any other unreadable line, or a line that is not an object, is a
    ConfigError naming the file and the line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(field or str(path), f"a UTF-8 JSON-lines file (byte {err.start} is not UTF-8)",
                          str(path)) from None
    lines = text.split("\n")
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines):  # the last line, without its newline: an interrupted write
                break
            raise ConfigError(field or str(path), f"one JSON object per line (line {number}: {err.msg})",
                              str(path)) from None
        if not isinstance(row, dict):
            raise ConfigError(field or str(path), f"one JSON object per line (line {number} is not an object)",
                              str(path))
        rows.append(row)
    return rows
