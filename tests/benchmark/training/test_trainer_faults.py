"""Faults: non-finite steps are skipped without touching parameters, optimiser or EMA, and too many in a row stop
the run with a usable checkpoint; SIGTERM (and SIGKILL after a checkpoint) followed by --resume auto ends
bitwise identical to an uninterrupted run, in either checkpoint format (full, or DCP shards)."""

import os
import subprocess
import sys

import pytest
import torch

from benchmark.core.checkpoint import verify
from benchmark.training.testing import FaultyReward, TinyReward, tiny_config
from benchmark.training.trainer import NonFiniteStop, train
from tests.benchmark.training.helpers import checkpoint_state

ARGS = ["schedule.iterations=4", "checkpoint.every=1", "checkpoint.keep=10", "optim.lr=1e-2"]


pytestmark = pytest.mark.usefixtures("one_thread")


def assert_equal_states(a, b):
    assert a["model"].keys() == b["model"].keys() and a["ema"].keys() == b["ema"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(a["ema"][k], b["ema"][k]) for k in a["ema"])
    sa, sb = a["optim"]["state"], b["optim"]["state"]
    assert sa.keys() == sb.keys() and len(sa) > 0
    for name in sa:
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(sa[name][key], sb[name][key]), (name, key)
    assert a["state"] == b["state"]


def test_one_non_finite_step_is_skipped(tmp_path):
    cfg = tiny_config(tmp_path, "flux", "leapalign", ARGS)
    reward = FaultyReward(TinyReward(), nan_steps={2})
    result = train(cfg, reward, on_step=reward.on_step)
    assert result.status == "finished" and result.step == 4
    root = tmp_path / "run" / "checkpoints"
    s1, s2, s3 = (checkpoint_state(root / f"step_00000{i}") for i in (1, 2, 3))
    # step 2 changed nothing: parameters, EMA and AdamW state are those of step 1
    assert_equal_states({**s2, "state": None}, {**s1, "state": None})
    assert s2["state"]["skipped_total"] == 1 and s2["state"]["consecutive_skips"] == 1
    assert s3["state"]["consecutive_skips"] == 0
    assert not all(torch.equal(s3["model"][k], s2["model"][k]) for k in s2["model"])  # training went on
    import json

    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped"] for r in rows] == [False, True, False, False]
    assert rows[1]["loss"] is None and rows[1]["trained"] is False  # NaN is logged as null


def test_non_finite_every_step_stops_with_message_and_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path, "flux", "refl", ARGS + ["train.max_consecutive_skips=2", "checkpoint.every=0"])
    reward = FaultyReward(TinyReward(), nan_steps="all")
    with pytest.raises(NonFiniteStop, match=r"stopped at step 2: 2 consecutive steps with a non-finite loss") as err:
        train(cfg, reward, on_step=reward.on_step)
    ckpt = tmp_path / "run" / "checkpoints" / "step_000002"
    assert str(ckpt) in str(err.value) and verify(ckpt) is None
    # the checkpoint is usable: it holds the untouched initial model and resumes
    from benchmark.core.backbones.tiny import tiny_flux

    initial = tiny_flux(height=32, width=32).transformer.state_dict()
    saved = checkpoint_state(ckpt)["model"]
    assert all(torch.equal(initial[k], saved[k]) for k in initial)


SCRIPT = """
import os, signal, sys, torch
torch.set_num_threads(1)
from benchmark.training.testing import TinyReward, tiny_config
from benchmark.training.trainer import train
tmp, mode = sys.argv[1], sys.argv[2]
cfg = tiny_config(tmp, "flux", "leapalign", {args!r})

def on_step(step, row):
    if step == 2:
        os.kill(os.getpid(), signal.SIGKILL if mode == "kill" else signal.SIGTERM)

result = train(cfg, TinyReward(), on_step=on_step)
print("STATUS", result.status, result.step)
"""


@pytest.mark.parametrize("fmt", ["full", "sharded"])
@pytest.mark.parametrize("mode", ["term", "kill"])
def test_interrupted_run_resumes_bitwise(tmp_path, mode, fmt):
    args = ARGS + ["checkpoint.every=2", f"checkpoint.format={fmt}"]
    script = tmp_path / "run_train.py"
    script.write_text(SCRIPT.format(args=args))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "a"), mode], env=env, capture_output=True,
                          text=True, timeout=300)
    if mode == "term":  # the flag is seen between steps: checkpoint at step 2 and a clean exit
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "STATUS preempted 2" in proc.stdout
    else:
        assert proc.returncode == -9
    ckpts = sorted(p.name for p in (tmp_path / "a" / "run" / "checkpoints").iterdir())
    assert ckpts == ["step_000002"]

    steps_run = []
    resumed = train(tiny_config(tmp_path / "a", "flux", "leapalign", args), TinyReward(), resume="auto",
                    on_step=lambda step, row: steps_run.append(step))
    assert resumed.status == "finished" and resumed.step == 4 and steps_run == [3, 4]
    straight = train(tiny_config(tmp_path / "b", "flux", "leapalign", args), TinyReward())
    assert_equal_states(checkpoint_state(resumed.checkpoint), checkpoint_state(straight.checkpoint))
