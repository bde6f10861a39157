"""What each rank trains on at each step: prompts, their cached embeddings and the noise x_T.

Sample g of the global batch of step s is sample (s - 1) * B + g of the run; its prompt and its noise are pure
functions of (seed, g), so a resumed run, or the same global batch split over another number of ranks or
micro-batches, sees exactly the same data. Prompts are drawn in epochs, each a seeded permutation of the set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from benchmark.core.cache import EmbeddingCache
from benchmark.core.seeding import seeded
from benchmark.training.config import RunConfig


@dataclass
class MicroBatch:
    index: int  # global micro-batch number within the step: rank * accumulation + a
    prompts: list[str]
    cond: Any
    x_T: Tensor


def open_prompts(cfg: RunConfig) -> tuple[EmbeddingCache | None, list[str]]:
    """The embedding cache and the training prompts ([""] for the unconditioned toy flow, which has no cache)."""
    if cfg.prompts.cache is None:
        return None, [""]
    cache = EmbeddingCache.open(cfg.prompts.cache)
    return cache, cache.prompt_set(cfg.prompts.file)


def make_batches(cfg: RunConfig, backbone: Any, cache: EmbeddingCache | None, prompts: list[str], step: int,
                 rank: int, accumulation: int, device: torch.device, group_size: int = 1,
                 shared_noise: bool = False) -> list[MicroBatch]:
    """This rank's micro-batches of ``step``: sample g of the global batch is the same whatever the world size.

    With ``group_size`` G (GRPO) samples g share the prompt of group g // G: each prompt appears G times in a
    row, with its own noise per sample, or with ``shared_noise`` the noise of the group's first sample
    (DanceGRPO's --init_same_noise); ``check_run`` keeps groups inside the global batch (or the micro-batch, for
    a method that normalises per micro-batch).
    """
    m, B = cfg.schedule.micro_batch, cfg.schedule.global_batch
    batches = []
    for a in range(accumulation):
        index = rank * accumulation + a
        samples = [(step - 1) * B + index * m + i for i in range(m)]
        chosen = [prompts[prompt_index(g // group_size, len(prompts), cfg.seed)] for g in samples]
        cond = cache.cond(chosen, device) if cache is not None else None
        noise = [g - g % group_size if shared_noise else g for g in samples]
        x_T = torch.cat([backbone.noise(1, seeded(cfg.seed, "noise", n)) for n in noise]).to(device)
        batches.append(MicroBatch(index, chosen, cond, x_T))
    return batches


_PERMS: dict[tuple, Tensor] = {}


def prompt_index(g: int, n: int, seed: int) -> int:
    """Sample g's prompt: epochs over the prompt set, each in its own seeded permutation."""
    epoch, position = divmod(g, n)
    key = (seed, epoch, n)
    if key not in _PERMS:
        _PERMS.clear()
        _PERMS[key] = torch.randperm(n, generator=seeded(seed, "prompts", epoch))
    return int(_PERMS[key][position])
