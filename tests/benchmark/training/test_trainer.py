"""A few steps of every method on tiny random FLUX and SD3 change the trained parameters, keep the loss finite
and raise a tiny frozen reward on held-out noise; the run directory holds what plots and resumes read."""

import json

import pytest
import torch

from benchmark.core.backbones import build_backbone
from benchmark.core.backbones.tiny import tiny_flux, tiny_sd3
from benchmark.core.cache import EmbeddingCache
from benchmark.core.engine import rollout
from benchmark.core.errors import ConfigError
from benchmark.training.testing import TinyReward, tiny_config
from benchmark.training.trainer import train

METHODS = ["refl", "draft_lv", "drtune", "leapalign", "full_backprop"]
BUILD = {"flux": tiny_flux, "sd3": tiny_sd3}


pytestmark = pytest.mark.usefixtures("one_thread")


@torch.no_grad()
def held_out_reward(backbone, cfg, reward):
    """Mean reward of plain sampling from fixed noise the training never saw."""
    cache = EmbeddingCache.open(cfg.prompts.cache)
    prompts = cache.prompt_set()[:4]
    x_T = backbone.noise(4, torch.Generator().manual_seed(12345))
    x0 = rollout(backbone, cache.cond(prompts), x_T, backbone.schedule(cfg.schedule.num_steps)).x0
    return reward(backbone.decode(x0), prompts).mean().item()


@pytest.mark.parametrize("backbone_name", ["flux", "sd3"])
@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains(tmp_path, backbone_name, method):
    cfg = tiny_config(tmp_path, backbone_name, method, ["schedule.iterations=5", "schedule.global_batch=2",
                                                       "schedule.micro_batch=1", "checkpoint.every=0"])
    backbone = BUILD[backbone_name](height=32, width=32)
    reward = TinyReward()
    before = {n: p.detach().clone() for n, p in backbone.transformer.named_parameters()}
    r_before = held_out_reward(backbone, cfg, reward)

    result = train(cfg, reward, backbone=backbone)

    assert result.status == "finished" and result.step == 5
    changed = sum(not torch.equal(before[n], p) for n, p in backbone.transformer.named_parameters())
    assert changed > len(before) // 2, f"only {changed} of {len(before)} tensors changed"
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    for r in rows:
        assert all(k in r for k in ("loss", "reward_mean", "reward_std", "grad_norm", "step_time", "peak_mem"))
        assert torch.isfinite(torch.tensor([r["loss"], r["grad_norm"]])).all() and not r["skipped"]
    # ru_maxrss is a high-water mark: it never falls; the steps' times fit in the run's wall time
    assert [r["peak_mem"] for r in rows] == sorted(r["peak_mem"] for r in rows)
    assert 0 < sum(r["step_time"] for r in rows) <= json.loads((tmp_path / "run" / "summary.json").read_text())["wall_time"]
    r_after = held_out_reward(backbone, cfg, reward)
    assert r_after > r_before + 1e-2, (r_before, r_after)  # observed gains 0.02-0.08
    assert (tmp_path / "run" / "config.yaml").is_file() and (tmp_path / "run" / "summary.json").is_file()
    assert result.checkpoint.name == "step_000005"


def one_step(tmp_path, name, alpha):
    """Step 1 of a tiny LeapAlign run at ``alpha``: same seed, data, choices and initial weights for every alpha."""
    cfg = tiny_config(tmp_path / name, "flux", "leapalign", ["schedule.iterations=1", "checkpoint.every=0",
                                                            f"method.alpha={alpha}"])
    train(cfg, TinyReward())
    return json.loads((tmp_path / name / "run" / "metrics.jsonl").read_text())


def test_leapalign_logs_choices_and_gradient_parts(tmp_path):
    """The logged parts are the parts of Eq. 18: g(alpha) = g_single + alpha g_nested (alpha scales only the nested
    term), so the single part is the alpha = 0 gradient and, with a run at alpha = 1, the three norms of the
    alpha = 0.3 run satisfy |g|^2 = |g_s|^2 + 2 alpha <g_s, g_n> + alpha^2 |g_n|^2 exactly."""
    row = one_step(tmp_path, "a03", 0.3)
    assert row["k"] > row["j"] and row["ts"] == [row["k"], row["j"]]
    assert 0 < row["weight"] <= 1 / (2 * 0.1) and "d_j" in row and "d_0" in row  # w = 1 / (max(d_j, tau) + max(d_0, tau))
    g0, g1 = one_step(tmp_path, "a0", 0.0)["grad_norm"], one_step(tmp_path, "a1", 1.0)["grad_norm"]
    single, nested, alpha = row["grad_norm_single"], row["grad_norm_nested"], 0.3
    assert single == pytest.approx(g0, rel=1e-5)
    n2 = (nested / alpha) ** 2  # |g_n|^2
    cross = (g1**2 - g0**2 - n2) / 2  # <g_s, g_n>
    assert row["grad_norm"] == pytest.approx((g0**2 + 2 * alpha * cross + alpha**2 * n2) ** 0.5, rel=1e-4)
    assert nested > 1e-3 * single  # the nested term is not negligible here, so the identity constrains it
    summary = json.loads((tmp_path / "a03" / "run" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps_logged"] == 1


def test_lora_trains_only_the_adapter(tmp_path):
    cfg = tiny_config(tmp_path, "flux", "refl", ["schedule.iterations=2", "checkpoint.every=0",
                                                 "train.lora.rank=4", "train.lora.alpha=8", "optim.lr=1e-2"])
    backbone = tiny_flux(height=32, width=32)
    base = {n: p.detach().clone() for n, p in backbone.transformer.named_parameters()}
    train(cfg, TinyReward(), backbone=backbone)
    params = dict(backbone.transformer.named_parameters())
    base_now = {n.replace(".base_layer", ""): p for n, p in params.items() if "lora_" not in n}
    assert base_now.keys() == base.keys()
    assert all(torch.equal(base[n], base_now[n]) for n in base)  # the base model is frozen
    lora = {n: p for n, p in params.items() if "lora_" in n}
    assert lora and all(p.requires_grad and p.dtype == torch.float32 for p in lora.values())
    assert (tmp_path / "run" / "checkpoints" / "step_000002" / "lora" / "pytorch_lora_weights.safetensors").is_file()


def test_compiled_transformer_trains_like_the_eager_one(tmp_path):
    """train.compile=true compiles the transformer in place; a few steps end where the eager run ends."""
    from benchmark.cli.demo.pretrain import BUNDLED
    from benchmark.training.config import config_from_dict
    from evaluators.rewards.toy import ToyModeReward

    runs = {}
    for compiled in (False, True):
        cfg = config_from_dict({
            "run_dir": str(tmp_path / str(compiled)), "backbone": {"name": "toy", "path": str(BUNDLED), "dtype": "float32"},
            "method": {"name": "leapalign", "lam": 0.0}, "reward": {"name": "toy_mode"},
            "schedule": {"num_steps": 6, "iterations": 2, "global_batch": 16, "micro_batch": 16},
            "optim": {"lr": 1e-3}, "train": {"compile": compiled}, "checkpoint": {"every": 0},
            "logging": {"progress": False, "tensorboard": False, "grad_parts_every": 0}})
        backbone = build_backbone(cfg.backbone)
        train(cfg, ToyModeReward(), backbone=backbone)
        assert (getattr(backbone.transformer, "_compiled_call_impl", None) is not None) == compiled
        runs[compiled] = {k: v.detach().clone() for k, v in backbone.transformer.state_dict().items()}
    for name, eager in runs[False].items():
        torch.testing.assert_close(runs[True][name], eager, rtol=1e-5, atol=1e-6)  # float32 kernel fusion only
    with pytest.raises(ConfigError, match="train.compile_mode"):
        tiny_config(tmp_path / "bad", "flux", "leapalign", ["train.compile_mode=fast"])
