"""A small world of valid inputs for the command tests that feed the real CLI bad ones: prompt files, a tiny
FLUX embedding cache, a run config, a finished tiny run with checkpoints, a samples directory, a scores file and
a sweep spec; plus a read-only folder (a read-only tmpfs when running as root, else a folder without write bits).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from benchmark.cli import main
from benchmark.core.testing import PROMPTS, single_thread, tiny_cache
from benchmark.training.testing import tiny_tree
from evaluators.report import write_scores
from tests.benchmark.cli.helpers import write_samples

SET = PROMPTS[:3]


@dataclass
class World:
    root: Path
    prompts: Path  # the three prompts of SET, one per line
    cache: Path  # tiny FLUX cache of SET
    sd3_cache: Path  # tiny SD3 cache of SET
    config: Path  # tiny FLUX run config (2 iterations) whose run_dir is never created
    run: Path  # a finished run of that config (checkpoints at steps 1 and 2)
    samples: Path  # GenEval layout, 3 prompts x 2 images, with sampling.json
    scores: Path  # a scores parquet of the samples (metric tiny_conv, two runs)
    spec: Path  # a valid sweep spec of two tiny runs
    readonly: Path | None  # a folder no one can write into, None when this machine cannot make one

    def format(self, text: str, tmp: Path) -> str:
        fields = {k: str(v) for k, v in vars(self).items()}
        return text.format(tmp=tmp, ckpt=self.run / "checkpoints" / "step_000002", **fields)


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """The real entry point in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), single_thread():
        try:
            code = main([str(a) for a in argv])
        except SystemExit as done:  # argparse's own usage errors
            code = done.code
    return code, out.getvalue(), err.getvalue()


def read_only_dir(path: Path) -> Path | None:
    """A folder that cannot be written: a read-only tmpfs (root) or a folder without write bits (others)."""
    path.mkdir(parents=True)
    if os.geteuid() != 0:
        path.chmod(0o555)
        return path
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)], capture_output=True)
    return path if done.returncode == 0 else None


def release(world: World) -> None:
    if world.readonly is not None and os.geteuid() == 0:
        subprocess.run(["umount", str(world.readonly)], capture_output=True)


def build_world(root: Path) -> World:
    prompts = root / "prompts.txt"
    prompts.write_text("\n".join(SET) + "\n")
    cache = tiny_cache(root / "cache", "flux", SET)
    sd3_cache = tiny_cache(root / "sd3-cache", "sd3", SET)
    tree = tiny_tree(root, "flux", "refl", cache=False)
    tree["prompts"]["cache"] = str(cache)
    tree["schedule"]["iterations"] = 2
    tree["checkpoint"] = {"every": 1, "keep": 2}
    tree["logging"]["grad_parts_every"] = 0
    tree["run_dir"] = str(root / "never")
    config = root / "run.yaml"
    config.write_text(yaml.safe_dump(tree))
    run = root / "run"
    code, _, err = run_cli(["train", "--config", config, f"run_dir={run}"])
    assert code == 0, err
    samples = write_samples(root / "samples", [{"prompt": p} for p in SET], size=32)
    rows = [{"run": run_name, "method": method, "prompt_set": "tiny", "prompt_id": p, "prompt": SET[p], "image": k,
             "metric": "tiny_conv", "tag": "", "value": 0.1 * p + 0.01 * k + (0.05 if method == "refl" else 0)}
            for run_name, method in (("pretrained", "pretrained"), ("refl", "refl")) for p in range(3) for k in range(2)]
    scores = write_scores(pd.DataFrame(rows), root / "scores" / "scores.parquet")
    base = {k: v for k, v in tree.items() if k != "run_dir"}
    spec = root / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "tiny", "base": base,
        "runs": [{"name": "pretrained", "train": False}, {"name": "refl", "method": {"name": "refl", "m": 3}}],
        "eval": {"cache": str(cache), "prompts": str(prompts), "steps": 4, "images": 1,
                 "metrics": {"tiny_conv": {"name": "tiny_conv"}}},
        "slurm": {"nodes": 1, "gpus_per_node": 0, "cpus_per_task": 1, "time": 10},
    }))
    return World(root, prompts, cache, sd3_cache, config, run, samples, scores, spec, read_only_dir(root / "ro"))


def copy_run(world: World, tmp: Path) -> Path:
    """A private copy of the finished run (to damage or resume)."""
    dst = tmp / "run-copy"
    shutil.copytree(world.run, dst)
    config = yaml.safe_load((dst / "config.yaml").read_text())
    config["run_dir"] = str(dst)
    (dst / "config.yaml").write_text(yaml.safe_dump(config))
    return dst


def write_json(path: Path, value) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))
    return path
