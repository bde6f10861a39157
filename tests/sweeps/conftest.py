"""A real Slurm for the sweep tests, started once per session by ``sweeps/local_slurm.sh start --nodes 2``: two
emulated nodes (multiple-slurmd mode) with two count-only GPUs each, so 1-task, 1-node x 2-task and
2-node x 2-task jobs all run on this machine.

Tests that need it take the ``slurm`` fixture; they are skipped, with the script's output as the reason,
only where Slurm cannot start (e.g. no root to install the Debian packages).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "sweeps" / "local_slurm.sh"
NODES = 2


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """Start Slurm (state in a temp dir), export SLURM_CONF for submitit's sbatch/sacct calls, stop at the end."""
    state = tmp_path_factory.mktemp("slurm")
    start = subprocess.run(["bash", str(SCRIPT), "start", "--nodes", str(NODES), str(state)], capture_output=True,
                           text=True, timeout=900)
    if start.returncode != 0:
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)], capture_output=True, text=True, timeout=120)
        pytest.skip(f"local Slurm could not start:\n{start.stderr[-3000:]}{start.stdout[-1000:]}")
    conf = start.stdout.strip().rpartition("SLURM_CONF=")[2]
    before = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    try:
        yield Path(conf)
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)], capture_output=True, text=True, timeout=120)
        if before is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = before
