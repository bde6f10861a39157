"""TensorBoard and W&B (offline, no network) receive exactly the rows of metrics.jsonl, also across a resume."""

import importlib.util
import json
import struct

import numpy as np
import pytest

from benchmark.core.errors import ConfigError
from benchmark.core.testing import single_thread
from benchmark.training.config import check_run, config_from_dict
from benchmark.training.trainer import train

wandb = pytest.importorskip("wandb", reason="the test extra installs wandb")
pytest.importorskip("tensorboard", reason="the test extra installs tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from wandb.proto import wandb_internal_pb2


def toy_config(run_dir, iterations=4, **logging):
    from benchmark.cli.demo.pretrain import BUNDLED

    return config_from_dict({
        "run_dir": str(run_dir), "backbone": {"name": "toy", "path": str(BUNDLED), "dtype": "float32"},
        "method": {"name": "leapalign", "lam": 0.0}, "reward": {"name": "toy_mode"},
        "schedule": {"num_steps": 6, "iterations": iterations, "global_batch": 16, "micro_batch": 16},
        "optim": {"lr": 1e-3}, "checkpoint": {"every": 2, "keep": 2},
        "logging": {"progress": False, "tensorboard": True, "grad_parts_every": 2,
                    "wandb": {"project": "leapbench-test", "mode": "offline", "group": "tests"}, **logging}})


def wandb_records(path):
    """The protobuf records of a .wandb transaction log: W&B's 7-byte header, then LevelDB's log format
    (32 KiB blocks of chunks with a 7-byte header: crc32, length, type FULL=1 / FIRST=2 / MIDDLE=3 / LAST=4)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, parts = 7, []
    while pos + 7 <= len(data):
        room = 32768 - pos % 32768
        if room < 7:  # block trailer
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:  # zero padding up to the block's end
            pos += room
            continue
        parts.append(data[pos + 7:pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            parts = []
            yield record


def items(updates):
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in updates}


def wandb_history(run_dir):
    """train/step -> the row W&B holds, from every offline segment of the run (in order)."""
    history, ids, config, summary = {}, set(), {}, {}
    for file in sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb")):
        for record in wandb_records(file):
            kind = record.WhichOneof("record_type")
            if kind == "history":
                row = items(record.history.item)
                history[row["train/step"]] = row
            elif kind == "run":
                ids.add(record.run.run_id)
                config.update(items(record.run.config.update))
            elif kind == "config":
                config.update(items(record.config.update))
            elif kind == "summary":
                summary.update(items(record.summary.update))
    return history, ids, config, summary


def tensorboard_scalars(run_dir, key):
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return {e.step: e.value for e in events.Scalars(f"train/{key}")}


def logged_rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_wandb_offline_and_tensorboard_mirror_metrics_jsonl_across_a_resume(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")  # belt and braces: nothing may try the network
    for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):  # W&B's own files stay in the test's tmp
        monkeypatch.setenv(var, str(tmp_path / "wandb-home"))
    from evaluators.rewards.toy import ToyModeReward

    run_dir = tmp_path / "run"
    with single_thread():
        train(toy_config(run_dir), ToyModeReward())
        first_id = (run_dir / "wandb" / "run_id").read_text().strip()
        first = json.loads((run_dir / "summary.json").read_text())
        # resume from the step-2 checkpoint: steps 3 and 4 are logged again
        train(toy_config(run_dir), ToyModeReward(), resume=str(run_dir / "checkpoints" / "step_000002"))
    rows = logged_rows(run_dir)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert {"k", "j", "grad_norm_single", "grad_norm_nested"} <= set(rows[1])  # LeapAlign's choices and parts

    history, ids, config, summary = wandb_history(run_dir)
    assert ids == {first_id} and len(list((run_dir / "wandb").glob("offline-run-*"))) == 2  # one run, resumed
    assert sorted(history) == [1, 2, 3, 4]
    for row in rows:  # every number of every row, exactly (JSON both ways)
        numbers = {f"train/{k}": v for k, v in row.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step"}
        assert {k: history[row["step"]][k] for k in numbers} == numbers
    assert config["method"]["name"] == "leapalign" and config["logging"]["wandb"]["mode"] == "offline"
    assert summary["status"] == "finished" and summary["step"] == 4
    second = json.loads((run_dir / "summary.json").read_text())  # the wall time of both processes
    assert first["wall_time_total"] == first["wall_time"]
    assert second["wall_time_total"] == first["wall_time"] + second["wall_time"]
    assert second["world_size"] == 1 and second["device"] == "cpu"

    for key in ("reward_mean", "loss", "grad_norm", "k", "grad_norm_nested"):
        expected = {r["step"]: np.float32(r[key]) for r in rows if key in r}
        assert tensorboard_scalars(run_dir, key) == expected  # TensorBoard stores float32; steps 3, 4 once


def test_wandb_section_is_checked_before_anything_runs(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"logging.wandb: expected one of online, offline, disabled"):
        toy_config(tmp_path / "a", wandb={"mode": "sometimes"})
    with pytest.raises(ConfigError, match=r"logging.wandb: expected a known field"):
        toy_config(tmp_path / "a", wandb={"projekt": "x"})
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else find_spec(name, *a))
    with pytest.raises(ConfigError, match=r"logging.wandb: expected the wandb package"):
        check_run(toy_config(tmp_path / "b"))
    assert not (tmp_path / "b").exists()
    check_run(toy_config(tmp_path / "c", wandb=None))  # neither tracker is required
