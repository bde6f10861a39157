"""The CPU demo end to end at a smaller size: the real sweep path (submitit's local executor), table, plots."""

import json
import os

import pandas as pd
import yaml
from PIL import Image

from benchmark.cli import main

ROWS = ["Pretrained", "ReFL", "DRaFT-LV", "DRTune", "LeapAlign", "Full backprop", "GRPO", "DanceGRPO", "MixGRPO",
        "Flow-GRPO"]


def test_toy_demo_through_the_local_executor(tmp_path, capsys):
    out = tmp_path / "demo"
    threads = os.environ.get("OMP_NUM_THREADS")
    assert main(["demo", "--out", str(out), "--iterations", "15", "--samples", "300"]) == 0
    assert os.environ.get("OMP_NUM_THREADS") == threads  # the jobs' one-thread setting does not leak to the caller
    printed = capsys.readouterr().out
    table = pd.read_csv(out / "table.csv")
    assert list(table["method"]) == ROWS
    assert (table["samples"] == 300).all()
    # the pretrained flow rarely makes the preferred blob (about 5% of the data)
    assert table.loc[table["method"] == "Pretrained", "preferred"].item() < 0.12
    for metric in ("reward", "preferred"):
        assert (table[f"{metric}_ci_low"] <= table[metric]).all() and (table[metric] <= table[f"{metric}_ci_high"]).all()
    md = (out / "table.md").read_text()
    assert md.count("\n| ") == len(ROWS) + 1 and "LeapAlign" in md.split("\n- ")[-1]  # the verdict names LeapAlign
    assert "15 iterations x batch 64" in md and "own T: DanceGRPO 16, MixGRPO 25, Flow-GRPO 6" in md
    assert (table["train_s_per_1k"].isna() == (table["method"] == "Pretrained")).all()  # cost of every trained run
    for name, size in (("reward_curves.png", (1000, 400)), ("grad_norms.png", (1000, 400)), ("samples.png", (2700, 320))):
        with Image.open(out / name) as image:
            assert image.size == size
    assert "table.md" in printed and str(out) in printed
    # every trained run drew the same samples in the same optimiser steps: 15 x 64 (the presets in rollout batches
    # of 64 x their steps per rollout: DanceGRPO 3, MixGRPO 4, Flow-GRPO 2)
    for run_dir in (out / "sweep" / "runs").iterdir():
        if run_dir.name.startswith("pretrained"):
            continue
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        updates = {"dancegrpo": 3, "mixgrpo": 4, "flowgrpo": 2}.get(run_dir.name.split("-")[0], 1)
        assert len(rows) == 15 // updates and all(r.get("updates", 1) == updates for r in rows)
        batch = yaml.safe_load((run_dir / "config.yaml").read_text())["schedule"]["global_batch"]
        assert batch == 64 * updates


def test_tiny_flux_demo_runs_the_flux_path(tmp_path):
    out = tmp_path / "flux"
    assert main(["demo", "--backbone", "tiny-flux", "--out", str(out), "--iterations", "3", "--samples", "2",
                 "--cluster", "debug", "--methods", "refl", "leapalign", "grpo", "flowgrpo"]) == 0
    table = pd.read_csv(out / "table.csv")
    assert list(table["method"]) == ["Pretrained", "ReFL", "LeapAlign", "GRPO", "Flow-GRPO"]
    assert "preferred" not in table  # the toy's structure metric only exists on the toy
    with Image.open(out / "samples.png") as grid:  # 5 rows (runs) x the first 6 images of each, 96 px cells
        assert grid.size == (6 * 96, 5 * 96)
