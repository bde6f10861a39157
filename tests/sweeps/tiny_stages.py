"""Stages of the tiny CPU sweeps in these tests: the real training loop, sampler and scorer code paths,
with the tiny FLUX backbone, a frozen random conv reward for training and the HPSv2 scorer with tiny
random weights for scoring (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

from sweeps import stages


def train(run_config: dict, run_dir: Path) -> None:
    from benchmark.core.testing import single_thread
    from benchmark.training.testing import TinyReward
    from benchmark.training.trainer import train as run_train

    with single_thread():
        result = run_train(stages.training_config(run_config, run_dir), TinyReward(), resume="auto")
    if result.status != "finished":
        raise stages.StageInterrupted(f"training {result.status} at step {result.step}")


def sample(run_config: dict, run_dir: Path) -> None:
    from benchmark.core.testing import single_thread

    with single_thread():
        stages.sample(run_config, run_dir)


sample.check = stages.check_sample


def score(run_config: dict, run_dir: Path) -> None:
    from benchmark.core.testing import single_thread
    from evaluators.rewards import tiny_reward

    with single_thread():
        stages.score_with(run_config, run_dir, {"hpsv2.1": lambda: tiny_reward("hpsv2")})
