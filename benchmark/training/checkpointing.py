"""The checkpoint policy of a run: when to save, how many to keep, and what to resume from.

A checkpoint is written every ``checkpoint.every`` steps, at the last step, when a preemption signal arrives
and when the run stops on non-finite steps; the newest ``checkpoint.keep`` complete ones are kept. Under
FSDP2 every rank writes its own shards (``checkpoint.format``: auto; see ``benchmark.core.sharded``). Resuming
takes the newest checkpoint that verifies (``--resume auto``) or a given one, restores model, optimiser, EMA
and the trainer's progress and RNG states. The format itself is ``benchmark.core.checkpoint``'s.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from benchmark.core import distributed
from benchmark.core.checkpoint import latest_valid, list_checkpoints, load_checkpoint, save_checkpoint
from benchmark.core.configs import to_yaml
from benchmark.core.errors import ConfigError
from benchmark.core.seeding import restore_rng, rng_state
from benchmark.training.config import RunConfig
from benchmark.training.ema import EMA


class NonFiniteWeights(RuntimeError):
    """A checkpoint was asked for while a weight is NaN or infinite."""


def all_finite(model: nn.Module, ema: EMA) -> bool:
    """Every trained parameter (this rank's shards) and every EMA tensor is finite."""
    tensors = [p for p in model.parameters() if p.requires_grad] + list(ema.shadow)
    local = [t.to_local() if hasattr(t, "to_local") else t for t in tensors]  # FSDP2: this rank's shard
    return all(bool(torch.isfinite(t).all()) for t in local)


@dataclass
class Progress:
    """What the loop counts, saved with every checkpoint (``trainer.pt``'s "state")."""

    step: int = 0  # the last completed optimiser step
    skipped_total: int = 0  # steps skipped for a non-finite loss or gradient
    consecutive_skips: int = 0

    def record(self, step: int, skipped: bool) -> None:
        self.step = step
        self.skipped_total += int(skipped)
        self.consecutive_skips = self.consecutive_skips + 1 if skipped else 0


def shards(cfg: RunConfig, world_size: int) -> bool:
    """Whether checkpoints are written as per-rank shards (DCP): ``checkpoint.format`` "sharded", or "auto"
    under FSDP2; else the full state is gathered to rank 0 (DDP/LoRA, one process)."""
    if cfg.checkpoint.format == "auto":
        return distributed.strategy(cfg.distributed.strategy, cfg.lora, world_size) == "fsdp"
    return cfg.checkpoint.format == "sharded"


class Checkpointer:
    """Saves and restores the trained state of one run under ``<run_dir>/checkpoints``."""

    def __init__(self, cfg: RunConfig, env: distributed.DistEnv, backbone: str):
        self.root = Path(cfg.run_dir) / "checkpoints"
        self.every, self.keep, self.last_step = cfg.checkpoint.every, cfg.checkpoint.keep, cfg.schedule.iterations
        self.lora, self.backbone, self.env = cfg.lora, backbone, env
        self.shards = shards(cfg, env.world_size)
        self.config_yaml = to_yaml(cfg)
        self.latest: Path | None = None  # the newest checkpoint written or resumed from

    def due(self, step: int) -> bool:
        """Save after this step? Every ``every`` steps (0: never) and at the last one."""
        return bool(self.every and step % self.every == 0) or step == self.last_step

    def resume(self, resume: str | None, model: nn.Module, optimizer: Optimizer, ema: EMA) -> Progress:
        """Restore from ``resume`` ("auto": the newest valid checkpoint, if any; a directory; None/"none": nothing).

        Every rank loads the same checkpoint (rank 0 picks it); RNG states are restored too.
        """
        if resume in (None, "none"):
            return Progress()
        found = latest_valid(self.root) if resume == "auto" else Path(resume)
        if found is None and list_checkpoints(self.root):  # all damaged: refuse, never retrain from step 0
            found = ConfigError("--resume", "a run with an intact checkpoint (every checkpoint in "
                                f"{self.root} is damaged, see the warnings; nothing was changed)", "auto")
        ckpt = distributed.broadcast_object(found if self.env.is_main else None)
        if isinstance(ckpt, ConfigError):
            raise ckpt
        if ckpt is None:
            return Progress()
        try:
            trainer = load_checkpoint(ckpt, model, optimizer, ema, lora=self.lora, is_main=self.env.is_main,
                                      world_size=self.env.world_size)
        except (RuntimeError, KeyError, ValueError) as err:  # shapes or keys of another model
            raise ConfigError("--resume", f"a checkpoint of this model ({str(err).splitlines()[0][:300]})",
                              str(ckpt)) from None
        restore_rng(trainer["rng"])
        self.latest = ckpt
        return Progress(**trainer["state"])

    def save(self, progress: Progress, model: nn.Module, optimizer: Optimizer, ema: EMA) -> Path:
        """Write the checkpoint of ``progress.step`` (a collective: every rank calls it) and prune old ones.

        Raises ``NonFiniteWeights`` (and writes nothing) when a trained parameter or the EMA is not finite."""
        if distributed.any_rank(not all_finite(model, ema), self.env.device):
            raise NonFiniteWeights(f"step {progress.step}: non-finite weights are never checkpointed; the newest "
                                   f"checkpoint is {self.latest}")
        trainer_state: dict[str, Any] = {"state": asdict(progress), "rng": rng_state()}
        self.latest = save_checkpoint(self.root, progress.step, model, optimizer, ema, trainer_state, lora=self.lora,
                                      backbone=self.backbone, rank=self.env.rank, keep=self.keep,
                                      config_yaml=self.config_yaml, shards=self.shards)
        return self.latest
