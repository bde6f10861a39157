"""``leapbench train --config run.yaml [--resume auto] [key.sub=value ...]``: fine-tune with a method and a reward.

The config is resolved (defaults -> YAML -> overrides, which may stand anywhere on the line; ``${NAME}`` is
the environment variable NAME) and fully checked, paths and reward section included, before any model is
loaded or the run directory is created. ``--resume auto`` continues the run directory's newest intact
checkpoint; it refuses a config that changes what the run trained (method, backbone, reward, schedule,
LoRA) unless ``--allow-config-change`` (the old config is kept in ``config.history/``), and refuses a run
whose checkpoints are all damaged. ``--dry-run`` prints the resolved config and lists every missing input.
Under torchrun or Slurm every rank runs this same command.
"""

from __future__ import annotations

import argparse
import sys

from benchmark.core.configs import to_yaml
from benchmark.core.distributed import env_from_environment
from benchmark.core.errors import ConfigError
from benchmark.training.config import RunConfig, check_cache, check_run, load_config
from benchmark.training.trainer import NonFiniteStop, train
from evaluators.rewards import build_reward, reward_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="run config (YAML); omitted: the defaults")
    parser.add_argument("--resume", default="none",
                        help="auto: continue from the run directory's newest valid checkpoint; a checkpoint dir; none")
    parser.add_argument("--allow-config-change", action="store_true",
                        help="resume even if the config changes what the run trained (the old one is kept)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the resolved config and list every missing input; exit 2 if any")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="dotted overrides, e.g. method.alpha=0.1")


def problems(cfg: RunConfig, world_size: int, resume: str, allow: bool) -> list[str]:
    """Every independent check that fails (paths of the backbone, cache and reward, then the rest)."""
    found = []
    for check in (cfg.backbone.check_paths, lambda: check_cache(cfg), lambda: reward_config(cfg.reward),
                  lambda: check_run(cfg, world_size, resume, allow_config_change=allow)):
        try:
            check()
        except ConfigError as err:
            if str(err) not in found:
                found.append(str(err))
    return found


def run(args: argparse.Namespace) -> int:
    world_size = env_from_environment().world_size
    if args.dry_run:
        unset: list[str] = []
        cfg = load_config(args.config, args.overrides, unset=unset)
        print(to_yaml(cfg))
        missing = unset + problems(cfg, world_size, args.resume, args.allow_config_change)
        if len(missing) == 1:
            raise ConfigError(*missing[0].split(": expected ", 1)) if ": expected " in missing[0] else \
                ConfigError("--dry-run", missing[0])
        if missing:
            raise ConfigError("--dry-run", f"every input present and valid; {len(missing)} are not:\n  "
                              + "\n  ".join(missing))
        return 0
    cfg = load_config(args.config, args.overrides)
    check_run(cfg, world_size, args.resume, allow_config_change=args.allow_config_change)
    reward = build_reward(reward_config(cfg.reward))
    try:
        result = train(cfg, reward, resume=args.resume, allow_config_change=args.allow_config_change)
    except NonFiniteStop as err:
        print(f"leapbench train: {err}", file=sys.stderr)
        return 3
    return 0 if result.status in ("finished", "preempted") else 1
