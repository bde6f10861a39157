"""Randomness as a pure function of names: ranks, resumed runs and resharded sampling draw the same numbers.

``seeded(*keys)`` is a generator whose state depends only on ``keys`` (e.g. ``(seed, "noise", sample)``), so
sample g's noise, a step's method choices or image k of prompt p are the same whatever the world size,
the micro-batch split or the point of resumption. The process-wide RNGs (torch, CUDA, numpy, python) are
seeded once and saved in every checkpoint (``rng_state`` / ``restore_rng``).
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import numpy as np
import torch


def seeded(*keys: Any, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator whose state is a pure function of ``keys`` (sha256 of their repr)."""
    digest = hashlib.sha256(repr(keys).encode()).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
