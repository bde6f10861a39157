"""The default stages of a sweep run: thin adapters from ``fn(run_config, run_dir)`` to the real entry points.

``run_config`` is the run's tree (``RunSpec.job_config``): the run config sections, plus ``eval`` (the
spec's ``EvalConfig``) and ``sweep`` (sweep, run name, id, method label). Each stage may carry a
``check(run_config, world_size)`` attribute that the launcher calls for every run before submitting
anything; it must not load models.

- ``train``: ``benchmark.training.trainer.train`` with the configured reward and ``resume="auto"`` (a requeued or
  relaunched run continues from its newest valid checkpoint).
- ``sample``: ``evaluators.sample`` (the EMA weights of the newest checkpoint, or the base model for a
  run without training) into ``<run_dir>/samples`` in GenEval's layout; ranks split the prompts.
- ``score``: every ``eval.metrics`` reward, and GenEval when ``eval.geneval`` is set, into
  ``<run_dir>/scores.parquet`` (the per-image format of ``evaluators.report.scores``); ranks split the
  scoring batches and rank 0 writes the merged file.

Sampling and scoring with several tasks give the same files as one task: every image is sampled and scored in
the same batch as with one task (``evaluators.sample``, ``evaluators.score.shard``), and the scores are put
back in the one-task order. Their ranks join a process group (gloo on CPU) and meet at a barrier before
returning, so the done marker rank 0 writes afterwards means every rank has finished.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from benchmark.core.backbones import BackboneConfig
from benchmark.core.cache import EmbeddingCache
from benchmark.core.checkpoint import latest_valid
from benchmark.core.configs import typed
from benchmark.core.distributed import DistEnv, barrier, gather_object, setup, teardown
from benchmark.core.errors import ConfigError
from benchmark.training.config import RunConfig, check_run, config_from_dict
from benchmark.training.trainer import train as run_train
from evaluators.geneval import ClipColourClassifier, check_detector_path, load_detector
from evaluators.report import write_scores
from evaluators.rewards import RewardConfig, build_reward, reward_config
from evaluators.sample import generate, load_model, plan_sampling
from evaluators.score import list_samples, reward_scorer, score_geneval, score_rewards, shard

SAMPLES, SCORES = "samples", "scores.parquet"
SCORE_BATCH = 8  # images per reward forward; the sharding keeps one-task batches whatever the world size


class StageInterrupted(RuntimeError):
    """The stage stopped early (SIGTERM / SIGUSR2) after saving its state; the next launch resumes it."""


@contextlib.contextmanager
def process_group():
    """This job's process group (``sweeps.jobs.StageJob`` starts it; started here, and ended after the stage,
    when a stage is called on its own); a barrier at the end. One task: no group, nothing to wait for."""
    env, started = setup()
    try:
        yield env
        barrier()
    finally:
        teardown(started)


def training_config(run_config: dict, run_dir: Path) -> RunConfig:
    tree = {k: v for k, v in run_config.items() if k not in ("eval", "sweep")}
    return config_from_dict({**tree, "run_dir": str(run_dir)})


# -- train ----------------------------------------------------------------------------------------------------


def train(run_config: dict, run_dir: Path) -> None:
    cfg = training_config(run_config, run_dir)
    result = run_train(cfg, build_reward(reward_config(cfg.reward)), resume="auto")
    if result.status != "finished":
        raise StageInterrupted(f"training {result.status} at step {result.step}; checkpoint {result.checkpoint}")


def check_train(run_config: dict, world_size: int) -> None:
    check_run(training_config(run_config, Path(run_config["run_dir"])), world_size, "auto", check_reward=True)


train.check = check_train


# -- sample ---------------------------------------------------------------------------------------------------


def sample_backbone(run_config: dict) -> dict:
    ev = run_config["eval"]
    size = {k: ev[k] for k in ("height", "width", "guidance") if ev.get(k) is not None}
    return {**run_config["backbone"], **size}


def sample(run_config: dict, run_dir: Path) -> None:
    ev = run_config["eval"]
    trained = latest_valid(run_dir / "checkpoints") is not None
    size = {k: ev[k] for k in ("height", "width", "guidance") if ev.get(k) is not None}  # eval may differ
    with process_group() as env:
        plan = plan_sampling(ev["cache"], str(run_dir / SAMPLES), size if trained else sample_backbone(run_config),
                             prompts=ev["prompts"], run=str(run_dir) if trained else None,
                             ema=ev["ema"] and trained, steps=ev["steps"], images=ev["images"], seed=ev["seed"],
                             batch_size=ev["batch_size"], rank=env.rank, world_size=env.world_size, limit=ev["limit"])
        generate(plan, load_model(plan, env.device), env.device)


def check_sample(run_config: dict, world_size: int) -> None:
    backbone = typed(BackboneConfig, sample_backbone(run_config), "backbone")
    backbone.check_paths()
    cache = EmbeddingCache.open(run_config["eval"]["cache"], "eval.cache")
    if cache.backbone != backbone.name:
        raise ConfigError("eval.cache", f"an embedding cache encoded for backbone {backbone.name}", cache.backbone)
    cache.prompt_set(run_config["eval"]["prompts"])


sample.check = check_sample


# -- score ----------------------------------------------------------------------------------------------------


def labels(run_config: dict, folder: Path) -> dict:
    sweep, ev = run_config.get("sweep") or {}, run_config["eval"]
    settings = json.loads((folder / "sampling.json").read_text()) if (folder / "sampling.json").is_file() else {}
    return {"run": sweep.get("run", folder.parent.name), "method": sweep.get("method", settings.get("method", "")),
            "prompt_set": ev.get("prompt_set") or settings.get("prompt_set", "")}


def score(run_config: dict, run_dir: Path) -> None:
    metrics = run_config["eval"]["metrics"]
    score_with(run_config, run_dir, {k: (lambda s=s: build_reward(RewardConfig(**s))) for k, s in metrics.items()})


def score_with(run_config: dict, run_dir: Path, rewards: dict[str, Any]) -> None:
    """Score ``<run_dir>/samples`` with ``rewards`` (score key -> reward or its builder) and GenEval; each rank
    scores its shard, rank 0 merges the shards in the one-task order and writes ``scores.parquet``."""
    ev, folder = run_config["eval"], run_dir / SAMPLES
    with process_group() as env:
        frames = score_shard(ev, folder, rewards, env)
        shards = gather_object(frames)
        if env.is_main:
            merged = [one_task_order([frames[i] for frames in shards]) for i in range(len(frames))]
            write_scores(pd.concat(merged, ignore_index=True).assign(**labels(run_config, folder)), run_dir / SCORES)


def score_shard(ev: dict, folder: Path, rewards: dict[str, Any], env: DistEnv) -> list[pd.DataFrame]:
    """This rank's scores: one frame per reward, then GenEval's."""
    mine, frames = shard(list_samples(folder), SCORE_BATCH, env.rank, env.world_size), []
    for key, make in rewards.items():  # one reward model in memory at a time
        reward = (make if isinstance(make, torch.nn.Module) else make()).to(env.device)
        frames.append(score_rewards(mine, [reward_scorer(key, reward)], SCORE_BATCH, device=env.device))
        del reward
    if ev.get("geneval"):
        settings = ev["geneval"]
        frames.append(score_geneval(folder, load_detector(settings["detector"], env.device, "eval.geneval.detector"),
                                    ClipColourClassifier(settings["clip"], device=env.device), progress=False,
                                    rank=env.rank, world_size=env.world_size))
    return frames


def one_task_order(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """One metric's rows from every rank, by (prompt, image) as one task writes them."""
    return pd.concat(parts, ignore_index=True).sort_values(["prompt_id", "image"], kind="stable", ignore_index=True)


def check_score(run_config: dict, world_size: int) -> None:
    ev = run_config["eval"]
    if not ev["metrics"] and not ev.get("geneval"):
        raise ConfigError("eval.metrics", "at least one metric (or eval.geneval) to score", ev["metrics"])
    for key, section in ev["metrics"].items():
        RewardConfig(**section).check_paths(f"eval.metrics.{key}")
    if ev.get("geneval"):
        check_detector_path(ev["geneval"].get("detector"), "eval.geneval.detector")
        if not Path(str(ev["geneval"].get("clip"))).is_file():
            raise ConfigError("eval.geneval.clip", "an existing open_clip checkpoint file", ev["geneval"].get("clip"))


score.check = check_score
