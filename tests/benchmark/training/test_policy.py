"""The loop's step for methods that sample before they learn (benchmark/training/policy.py): shared noise, the
GRPO presets through the FLUX code path, several optimiser steps per rollout, and two processes on gloo."""

import json

import pytest
import torch
from safetensors.torch import load_file

from benchmark.core.backbones.tiny import tiny_flux
from benchmark.training.data import make_batches, open_prompts
from benchmark.training.testing import TinyReward, tiny_config
from benchmark.training.trainer import train
from evaluators.rewards.weighted import WeightedReward
from tests.benchmark.training.helpers import two_ranks

pytestmark = pytest.mark.usefixtures("one_thread")


def test_shared_noise_gives_a_group_one_x_T(tmp_path):
    """DanceGRPO's --init_same_noise: the G samples of a prompt start from one x_T, across micro-batches."""
    cfg = tiny_config(tmp_path, "flux", "grpo", ["method.group_size=3", "schedule.micro_batch=2",
                                                 "schedule.global_batch=6"])
    backbone = tiny_flux()
    cache, prompts = open_prompts(cfg)
    shared = make_batches(cfg, backbone, cache, prompts, 1, 0, 3, torch.device("cpu"), group_size=3, shared_noise=True)
    x_T = torch.cat([mb.x_T for mb in shared])
    assert torch.equal(x_T[0], x_T[2]) and torch.equal(x_T[3], x_T[5]) and not torch.equal(x_T[0], x_T[3])
    own = torch.cat([mb.x_T for mb in make_batches(cfg, backbone, cache, prompts, 1, 0, 3, torch.device("cpu"),
                                                   group_size=3)])
    assert torch.equal(own[0], x_T[0]) and torch.equal(own[3], x_T[3]) and not torch.equal(own[1], x_T[1])


def rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


PRESET_RUNS = {  # the presets at tiny-FLUX size: T=6, groups of 2 or 4, micro-batches of 2 (select() on FluxCond)
    "dancegrpo": ["method.group_size=2", "schedule.global_batch=12", "schedule.micro_batch=2", "schedule.num_steps=6"],
    "mixgrpo": ["method.group_size=4", "schedule.global_batch=8", "schedule.micro_batch=2", "schedule.num_steps=6",
                "method.window={size: 2, shift_every: 1, stride: 1}", "reward.name=weighted"],
    "flowgrpo": ["method.group_size=4", "schedule.global_batch=8", "schedule.micro_batch=2", "schedule.num_steps=4",
                 "train.lora.rank=4", "method.epochs=2"],
}


@pytest.mark.parametrize("preset", list(PRESET_RUNS))
def test_presets_train_tiny_flux_with_several_updates_per_rollout(tmp_path, preset):
    cfg = tiny_config(tmp_path, "flux", "grpo", [f"method.preset={preset}", *PRESET_RUNS[preset], "optim.lr=1e-2",
                                                 "schedule.iterations=2", "checkpoint.every=0",
                                                 "backbone.height=32", "backbone.width=32"])
    backbone = tiny_flux()
    before = {n: p.detach().clone() for n, p in backbone.transformer.named_parameters()}
    reward = TinyReward() if preset != "mixgrpo" else WeightedReward({"a": (TinyReward(seed=0), 0.5),
                                                                        "b": (TinyReward(seed=1), 0.5)})
    result = train(cfg, reward, backbone=backbone)
    assert result.status == "finished" and result.step == 2
    after = dict(backbone.transformer.named_parameters())
    if cfg.train.lora.rank:  # peft's gaussian init starts lora_B at zero
        assert any(p.abs().max() > 0 for n, p in after.items() if "lora_B" in n)
    else:
        assert sum(not torch.equal(before[n], after[n]) for n in before) > len(before) // 2
    log = rows(tmp_path / "run")
    updates = cfg.method.minibatches * cfg.method.epochs
    assert [r["updates"] for r in log] == [updates, updates] and all(len(r["update_grad_norm"]) == updates for r in log)
    assert all(r["update_ratio_dev"][0] < 1e-5 for r in log)  # float32: the first step is on-policy
    assert any(max(r["update_ratio_dev"][1:]) > 0 for r in log)  # later steps see the updated policy
    if preset == "mixgrpo":
        assert [r["window_start"] for r in log] == [0, 1] and all(len(r["trained_steps"]) == 2 for r in log)
    if preset == "dancegrpo":  # per-sample steps among the first 5 (the last step is never trained)
        assert all(1 not in r["trained_steps"] and r["trained_steps"] for r in log)


SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from benchmark.training.testing import TinyReward, tiny_config
from benchmark.training.trainer import train
result = train(tiny_config(sys.argv[1], "flux", "grpo", sys.argv[2:]), TinyReward())
sys.stdout.write(f"DONE {result.status} {result.step}\\n"); sys.stdout.flush()  # one write: ranks share the pipe
"""

# groups of 2 spread over both ranks (micro-batches of 1), 2 passes over each rollout batch of one optimiser step
# each: the advantages need every rank's rewards, and the second pass is off-policy
TWO_RANKS = ["method.preset=dancegrpo", "method.group_size=2", "method.minibatches=1", "method.epochs=2",
             "schedule.num_steps=4", "schedule.global_batch=4", "schedule.micro_batch=1", "schedule.iterations=2",
             "backbone.height=32", "backbone.width=32", "train.lora.rank=4", "train.lora.alpha=8",
             "distributed.strategy=ddp", "checkpoint.every=0", "optim.lr=1e-3", "optim.ema_decay=0.5"]


def saved(ckpt):
    out = {}
    for f in sorted((ckpt / "lora").glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def test_two_processes_match_one(tmp_path):
    """Two CPU processes on gloo end with the parameters of one process (float32 round-off of the all-reduce)."""
    script = tmp_path / "worker.py"
    script.write_text(SCRIPT)
    tiny_config(tmp_path / "two", "flux", "grpo", TWO_RANKS)  # the prompt cache, written before both workers read it
    assert two_ranks(script, tmp_path / "two", *TWO_RANKS).count("DONE finished 2") == 2
    one = train(tiny_config(tmp_path / "one", "flux", "grpo", TWO_RANKS), TinyReward())
    a, b = saved(tmp_path / "two" / "run" / "checkpoints" / "step_000002"), saved(one.checkpoint)
    assert a.keys() == b.keys() and len(a) > 4
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    assert any(v.abs().max() > 0 for k, v in b.items() if "lora_B" in k)  # it trained
    log = rows(tmp_path / "one" / "run")
    assert all(r["update_ratio_dev"][1] > 0 for r in log)
