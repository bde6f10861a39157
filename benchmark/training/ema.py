"""The exponential moving average of the trained parameters (the paper evaluates the EMA model, decay 0.995).

shadow <- decay * shadow + (1 - decay) * theta after every optimiser step, kept in fp32 and sharded like the
parameters under FSDP2 (each rank averages its own shards).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from benchmark.core import distributed


class EMA:
    """fp32 exponential moving average of the trained parameters (sharded like them under FSDP2)."""

    def __init__(self, named: list[tuple[str, nn.Parameter]], decay: float):
        self.decay = decay
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.shadow = [p.detach().float().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        for s, p in zip(self.shadow, self.params):
            s.lerp_(p.detach().float(), 1 - self.decay)

    def full_state(self) -> dict[str, Tensor]:
        """The whole shadow on the CPU, keyed by parameter name (a collective under FSDP2)."""
        return {n: distributed.full_tensor(s).detach().cpu() for n, s in zip(self.names, self.shadow)}

    def state(self) -> dict[str, Tensor]:
        """The shadow itself, keyed by parameter name (this rank's shards under FSDP2): what DCP saves and
        loads in place."""
        return dict(zip(self.names, self.shadow))

    @torch.no_grad()
    def load_state(self, state: dict[str, Tensor]) -> None:
        """Copy ``state`` (shaped and placed like ``state()``) into the shadow, unless it is the shadow itself."""
        for n, s in zip(self.names, self.shadow):
            if state[n] is not s:
                s.copy_(state[n])

    @torch.no_grad()
    def load_full_state(self, state: dict[str, Tensor]) -> None:
        missing = set(self.names) - set(state)
        if missing:
            raise RuntimeError(f"EMA checkpoint lacks {sorted(missing)[:3]}")
        for n, s in zip(self.names, self.shadow):
            s.copy_(distributed.shard_like(state[n], s))
