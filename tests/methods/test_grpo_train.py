"""GRPO through the real training loop: groups of prompts, the reward rises on the toy world, the KL
reference and per-reward advantages on tiny FLUX, and the group/micro-batch check."""

import json

import pytest
import torch

from benchmark.core.backbones.toy import ToyBackbone
from benchmark.core.engine import rollout
from benchmark.core.errors import ConfigError
from benchmark.core.toy_data import preferred
from benchmark.training.config import check_run, config_from_dict
from benchmark.training.data import make_batches, open_prompts
from benchmark.training.testing import TinyReward, tiny_config
from benchmark.training.trainer import train
from evaluators.rewards.toy import ToyModeReward
from evaluators.rewards.weighted import WeightedReward

BASE_TOY = "benchmark/cli/demo/base_toy"


pytestmark = pytest.mark.usefixtures("one_thread")


def toy_tree(tmp_path, iterations):
    return {
        "run_dir": str(tmp_path / "run"), "seed": 0,
        "backbone": {"name": "toy", "path": BASE_TOY, "dtype": "float32"},
        "method": {"name": "grpo", "group_size": 8, "eta": 0.7, "clip_range": 0.2, "train_fraction": 0.5},
        "reward": {"name": "toy_mode"},
        "optim": {"lr": 1e-3, "ema_decay": 0.0},
        "schedule": {"num_steps": 10, "iterations": iterations, "global_batch": 64, "micro_batch": 32},
        "checkpoint": {"every": 0}, "logging": {"progress": False, "tensorboard": False, "grad_parts_every": 0},
    }


@torch.no_grad()
def held_out(backbone, reward):
    """Plain ODE sampling from 4,000 fixed noises: mean reward and share in the rare (preferred) blob."""
    x0 = rollout(backbone, None, backbone.noise(4000, torch.Generator().manual_seed(99)), backbone.schedule(10)).x0
    return reward(x0).mean().item(), preferred(x0).mean().item()


def test_grpo_raises_the_toy_reward(tmp_path):
    backbone = ToyBackbone.from_pretrained(BASE_TOY)
    reward = ToyModeReward()
    r_before, rare_before = held_out(backbone, reward)
    result = train(config_from_dict(toy_tree(tmp_path, 30)), reward, backbone=backbone)
    r_after, rare_after = held_out(backbone, reward)
    assert result.status == "finished" and result.step == 30
    # observed (seeded): mean reward -4.35 -> -2.61, rare-blob share 0.049 -> 0.150
    assert r_after > r_before + 0.8, (r_before, r_after)
    assert rare_after > rare_before + 0.05, (rare_before, rare_after)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["ratio_dev"] == 0.0 and r["trained"] for r in rows)  # on-policy: rho = 1 exactly
    assert all(len(r["trained_steps"]) == 5 for r in rows)  # floor(0.5 * 10)
    assert sum(r["reward_mean"] for r in rows[-5:]) > sum(r["reward_mean"] for r in rows[:5]) + 2.5


def test_groups_share_a_prompt_and_not_the_noise(tmp_path):
    cfg = tiny_config(tmp_path, "flux", "grpo", ["method.group_size=3", "schedule.micro_batch=6",
                                                 "schedule.global_batch=12"])
    from benchmark.core.backbones.tiny import tiny_flux

    backbone = tiny_flux()
    cache, prompts = open_prompts(cfg)
    batches = make_batches(cfg, backbone, cache, prompts, 1, 0, 2, torch.device("cpu"), group_size=3)
    chosen = [p for mb in batches for p in mb.prompts]
    groups = [chosen[i:i + 3] for i in range(0, 12, 3)]
    assert all(len(set(g)) == 1 for g in groups) and len({g[0] for g in groups}) > 1
    x_T = torch.cat([mb.x_T for mb in batches])
    assert len({tuple(x.flatten()[:4].tolist()) for x in x_T}) == 12
    # group size 1 is the old batching, sample for sample
    plain = make_batches(cfg, backbone, cache, prompts, 1, 0, 2, torch.device("cpu"))
    assert [p for mb in plain for p in mb.prompts] != chosen


def test_the_rollout_batch_must_hold_whole_groups(tmp_path):
    """GRPO normalises over the whole rollout batch, so a group may span micro-batches but not the batch's end."""
    check_run(tiny_config(tmp_path, "flux", "grpo", ["method.group_size=4", "schedule.micro_batch=2"]))
    cfg = tiny_config(tmp_path, "flux", "grpo", ["method.group_size=3"])
    with pytest.raises(ConfigError, match=r"schedule\.global_batch: expected a multiple of method\.group_size \(3\)"):
        check_run(cfg)
    cfg = tiny_config(tmp_path, "flux", "grpo", ["method.group_size=2", "method.minibatches=4"])
    with pytest.raises(ConfigError, match=r"schedule\.global_batch: expected a multiple of world size x micro batch "
                                          r"x method\.minibatches \(1 x 2 x 4\)"):
        check_run(cfg)


def test_per_reward_advantages_need_a_weighted_reward(tmp_path):
    cfg = tiny_config(tmp_path, "flux", "grpo", ["method.group_size=2", "method.advantage=per_reward"])
    with pytest.raises(ConfigError, match=r"method\.advantage: expected reward unless reward\.name is weighted"):
        check_run(cfg)


def test_tiny_flux_with_kl_reference_and_per_reward_advantages(tmp_path):
    cfg = tiny_config(tmp_path, "flux", "grpo", [
        "method.group_size=2", "method.kl_weight=0.5", "method.advantage=per_reward", "method.eta=0.7",
        "method.clip_range=0.2", "method.window={size: 2, shift_every: 1, stride: 1}", "method.train_fraction=1.0",
        "schedule.iterations=3", "schedule.micro_batch=2", "schedule.global_batch=4", "checkpoint.every=0",
        "logging.grad_parts_every=0", "reward.name=weighted"])  # the module itself is handed to train below
    from benchmark.core.backbones.tiny import tiny_flux

    backbone = tiny_flux()
    reward = WeightedReward({"a": (TinyReward(seed=0), 1.0), "b": (TinyReward(seed=1), 0.5)})
    before = {n: p.detach().clone() for n, p in backbone.transformer.named_parameters()}
    result = train(cfg, reward, backbone=backbone)
    assert result.status == "finished"
    assert sum(not torch.equal(before[n], p) for n, p in backbone.transformer.named_parameters()) > len(before) // 2
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["window_start"] for r in rows] == [0, 1, 2]
    assert [r["trained_steps"] for r in rows] == [[4, 3], [3, 2], [2, 1]]
    assert rows[0]["kl"] == 0.0  # the reference is the initial model
    assert rows[2]["kl"] > 0 and all(r["advantage_abs"] > 0 for r in rows)
