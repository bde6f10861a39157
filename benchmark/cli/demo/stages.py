"""The demo's sweep stages after training: sample with held-out noise, then score.

Both are called inside sweep jobs as ``fn(run_config, run_dir)``. ``sample`` rolls out the run's EMA
weights (the pretrained flow for a run without training) from noise that training never saw and saves
the samples; ``score`` writes per-sample scores in the report's long format (evaluators.report.scores):
the toy's reward and whether the sample has the preferred structure (toy), or the tiny conv reward of
each image (tiny FLUX).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from benchmark.core.backbones import build_backbone
from benchmark.core.cache import EmbeddingCache
from benchmark.core.checkpoint import apply_ema, latest_valid
from benchmark.core.engine import rollout
from benchmark.core.io import atomic_path
from benchmark.core.toy_data import preferred
from evaluators.report import write_scores
from evaluators.rewards import RewardConfig, build_reward
from sweeps.stages import training_config

HELD_OUT_SEED = 1_000_003  # training draws its noise from seeds derived from cfg.seed; this one is apart
SAMPLES = "samples.pt"
SCORES = "scores.parquet"


def run_label(run_config: dict, run_dir: Path) -> tuple[str, str]:
    """(run, method): a run with no checkpoint is the pretrained model."""
    trained = latest_valid(run_dir / "checkpoints") is not None
    return run_dir.name, run_config["method"]["name"] if trained else "pretrained"


def split(run_config: dict, run_dir: Path) -> tuple:
    """The run config proper and its sweep ``eval`` section (images: samples per prompt, seed)."""
    return training_config(run_config, run_dir), run_config.get("eval") or {}


def sample(run_config: dict, run_dir: Path) -> None:
    cfg, evaluation = split(run_config, run_dir)
    n = int(evaluation.get("images", 2000))
    backbone = build_backbone(cfg.backbone)
    ckpt = latest_valid(run_dir / "checkpoints")
    if ckpt is not None:
        apply_ema(backbone.transformer, ckpt)
    backbone.transformer.eval()
    g = torch.Generator().manual_seed(HELD_OUT_SEED + int(evaluation.get("seed", 0)))
    cond = prompts = None
    if cfg.prompts.cache:  # n images for each prompt of the set

        cache = EmbeddingCache.open(cfg.prompts.cache)
        prompts = [p for p in cache.prompt_set(cfg.prompts.file) for _ in range(n)]
        cond, n = cache.cond(prompts), len(prompts)
    with torch.no_grad():
        steps = int(evaluation.get("steps") or cfg.schedule.num_steps)  # the demo's T for every run
        x0 = rollout(backbone, cond, backbone.noise(n, g), backbone.schedule(steps)).x0
        images = backbone.decode(x0)
    with atomic_path(run_dir / SAMPLES) as tmp:  # a pretrained run's directory appears here (no training stage)
        torch.save({"x0": x0, "images": images, "prompts": prompts}, tmp)


def score(run_config: dict, run_dir: Path) -> None:
    cfg, _ = split(run_config, run_dir)
    saved = torch.load(run_dir / SAMPLES, weights_only=False)
    reward = build_reward(RewardConfig(**cfg.reward))
    images, prompts = saved["images"], saved["prompts"] or [""] * len(saved["images"])
    with torch.no_grad():
        metrics = {"reward": reward(images, prompts)}
    if cfg.backbone.name == "toy":
        metrics["preferred"] = preferred(saved["x0"])
    run, method = run_label(run_config, run_dir)
    if saved["prompts"] is None:  # the unconditioned toy: every sample is its own unit of the bootstrap
        units = [(i, 0) for i in range(len(prompts))]
    else:  # images of one prompt are resampled together
        ids = {p: k for k, p in enumerate(dict.fromkeys(prompts))}
        units = [(ids[p], prompts[:i].count(p)) for i, p in enumerate(prompts)]
    rows = [
        {"run": run, "method": method, "prompt_set": "held-out", "prompt_id": pid, "prompt": prompts[i], "image": img,
         "metric": name, "tag": "", "value": float(v)}
        for name, values in metrics.items() for i, ((pid, img), v) in enumerate(zip(units, values.tolist()))
    ]
    write_scores(pd.DataFrame(rows), run_dir / SCORES)
