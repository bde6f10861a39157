"""``leapbench train --config run.yaml [--resume auto] [key.sub=value ...]``: fine-tune with a method and a reward.

The config is resolved (defaults -> YAML -> overrides) and fully checked, paths and reward section
included, before any model is loaded or the run directory is created. Under torchrun or Slurm every rank
runs this same command.
"""

from __future__ import annotations

import argparse
import sys

from benchmark.core.configs import to_yaml
from benchmark.core.distributed import env_from_environment
from benchmark.training.config import check_run, load_config
from benchmark.training.trainer import NonFiniteStop, train
from evaluators.rewards import build_reward, reward_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="run config (YAML); omitted: the defaults")
    parser.add_argument("--resume", default="none",
                        help="auto: continue from the run directory's newest valid checkpoint; a checkpoint dir; none")
    parser.add_argument("--dry-run", action="store_true", help="resolve and check the config, print it, and stop")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="dotted overrides, e.g. method.alpha=0.1")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    check_run(cfg, env_from_environment().world_size, args.resume)
    if args.dry_run:
        print(to_yaml(cfg))
        return 0
    reward = build_reward(reward_config(cfg.reward))
    try:
        result = train(cfg, reward, resume=args.resume)
    except NonFiniteStop as err:
        print(f"leapbench train: {err}", file=sys.stderr)
        return 3
    return 0 if result.status in ("finished", "preempted") else 1
