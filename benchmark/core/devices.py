"""The ``--device`` a user names, checked against the machine before anything is loaded onto it."""

from __future__ import annotations

import torch

from benchmark.core.errors import ConfigError

KINDS = ("cpu", "cuda", "mps")


def check_device(name: str | torch.device, field: str = "--device") -> torch.device:
    """``name`` as a torch device this machine has; ConfigError naming ``field`` otherwise."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(field, "a device such as cpu, cuda or cuda:0", name) from None
    if device.type not in KINDS:
        raise ConfigError(field, f"a device of kind {', '.join(KINDS)}", name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(field, "a device this machine has (it has no CUDA device; use cpu)", name)
        if device.index is not None and device.index >= count:
            raise ConfigError(field, f"a CUDA device this machine has (cuda:0 to cuda:{count - 1})", name)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(field, "a device this machine has (no MPS here; use cpu)", name)
    return device


def default_device(local_rank: int = 0) -> str:
    return f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
