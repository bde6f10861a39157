"""The bf16 path of the paper's runs, executed on CPU: ``train.autocast_cpu`` turns on the bf16 autocast the
trainer uses on CUDA, and sampling and scoring run under the same autocast.

Tolerances (bf16 keeps 8 mantissa bits, a relative step of 2^-8 = 0.4% per rounding; these bounds leave about
three times the largest deviation observed): the training step's mean reward within 1% of float32's and its
gradient norm within 2%; sampled images within 2/255 of float32's on average per pixel; every reward's scores
within 3% of the largest float32 score's magnitude. What must stay float32 does: the checkpoint's weights, EMA
and AdamW moments, and every reward's scores.
"""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from benchmark.cli import main
from benchmark.core.backbones.tiny import tiny_flux
from benchmark.core.cache import EmbeddingCache
from benchmark.core.engine import rollout
from benchmark.core.testing import PROMPTS, tiny_cache
from benchmark.training.testing import TinyReward, tiny_config
from benchmark.training.trainer import train
from evaluators.rewards.tiny import tiny_reward

BF16 = ["train.autocast=true", "train.autocast_cpu=true"]


pytestmark = pytest.mark.usefixtures("one_thread")


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_training_step_under_bf16_autocast(tmp_path):
    args = ["schedule.iterations=2", "checkpoint.every=0"]
    fp32 = train(tiny_config(tmp_path / "fp32", "flux", "leapalign", args), TinyReward())
    bf16 = train(tiny_config(tmp_path / "bf16", "flux", "leapalign", args + BF16), TinyReward())
    a, b = metrics(tmp_path / "fp32" / "run"), metrics(tmp_path / "bf16" / "run")
    assert [r["loss"] for r in a] != [r["loss"] for r in b]  # the bf16 path did run
    for ra, rb in zip(a, b):
        assert np.isfinite([rb["loss"], rb["grad_norm"], rb["reward_mean"]]).all() and not rb["skipped"]
        assert rb["reward_mean"] == pytest.approx(ra["reward_mean"], rel=0.01)
        assert rb["grad_norm"] == pytest.approx(ra["grad_norm"], rel=0.02)
    # the master weights, EMA and AdamW moments stay float32 (autocast only computes in bf16)
    ckpt = bf16.checkpoint
    weights = load_file(str(ckpt / "transformer" / "diffusion_pytorch_model.safetensors"))
    ema = load_file(str(ckpt / "ema.safetensors"))
    moments = [v for s in torch.load(ckpt / "optimizer.pt", weights_only=True)["state"].values()
               for k, v in s.items() if k in ("exp_avg", "exp_avg_sq")]
    assert {t.dtype for t in [*weights.values(), *ema.values(), *moments]} == {torch.float32}
    assert fp32.checkpoint.name == ckpt.name == "step_000002"


def test_sampling_under_bf16_autocast(tmp_path):
    cache = tiny_cache(tmp_path / "cache", "flux", PROMPTS[:2])
    outs = {}
    for name, autocast in (("fp32", False), ("bf16", True)):
        outs[name] = tmp_path / name
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            assert main(["sample", "--cache", str(cache), "--out", str(outs[name]), "--backbone", "flux", "--tiny",
                         "--dtype", "float32", "--steps", "4", "--images", "2", "--no-progress"]) == 0
    files = sorted(p.relative_to(outs["fp32"]) for p in outs["fp32"].rglob("*.png"))
    assert len(files) == 4 and files == sorted(p.relative_to(outs["bf16"]) for p in outs["bf16"].rglob("*.png"))
    a = np.stack([np.asarray(Image.open(outs["fp32"] / f), dtype=np.float64) for f in files])
    b = np.stack([np.asarray(Image.open(outs["bf16"] / f), dtype=np.float64) for f in files])
    assert 0 < np.abs(a - b).mean() <= 2.0


@pytest.mark.parametrize("name", ["hpsv2", "pickscore", "imagereward", "hpsv3"])
def test_scoring_under_bf16_autocast(tmp_path, name):
    backbone = tiny_flux(32, 32)
    cache = EmbeddingCache.open(tiny_cache(tmp_path / "cache", "flux", PROMPTS[:4]))
    prompts = cache.prompt_set()
    with torch.no_grad():
        images = backbone.decode(rollout(backbone, cache.cond(prompts), backbone.noise(4, torch.Generator().manual_seed(1)),
                                         backbone.schedule(4)).x0)
        reward = tiny_reward(name)
        r32 = reward(images, prompts)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            r16 = reward(images, prompts)
    assert r16.dtype == torch.float32 and torch.isfinite(r16).all()
    assert not torch.equal(r16, r32)
    assert (r16 - r32).abs().max() <= 0.03 * r32.abs().max()
