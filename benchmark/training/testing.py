"""Fixtures for tests and CPU demos of training: frozen rewards and a tiny run config (tiny FLUX or SD3, 32 x 32,
4 sampling steps, 4 iterations) whose embedding cache is built on the spot. Nothing downloads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from benchmark.core.configs import merge, parse_overrides
from benchmark.core.testing import tiny_cache
from benchmark.training.config import RunConfig, config_from_dict
from evaluators.rewards import Reward


class TinyReward(Reward):
    """A frozen random conv net scoring images in [0, 1]: smooth, differentiable, prompt-independent."""

    name = "tiny_conv"
    differentiable = True

    def __init__(self, seed: int = 0, channels: int = 8):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.net = nn.Sequential(
            nn.Conv2d(3, channels, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.SiLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 1),
        )
        for p in self.net.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.5
        self.requires_grad_(False).eval()

    def forward(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        assert images.ndim == 4 and images.shape[1] == 3 and len(prompts) == len(images)
        return self.net(images.float()).squeeze(1)


class FaultyReward(Reward):
    """Wraps a reward and returns NaN during the steps in ``nan_steps`` ("all" for every step).

    The loop calls ``on_step`` after each step; pass ``faulty.on_step`` to ``train`` to keep ``step`` current.
    """

    name = "faulty"
    differentiable = True

    def __init__(self, reward: nn.Module, nan_steps: set[int] | str):
        super().__init__()
        self.reward, self.nan_steps, self.step = reward, nan_steps, 1

    def on_step(self, step: int, metrics: dict) -> None:
        self.step = step + 1

    def forward(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        r = self.reward(images, prompts)
        if self.nan_steps == "all" or self.step in self.nan_steps:
            return r * float("nan")
        return r


# method settings that fit 4 sampling steps; LeapAlign's hinge threshold above any tiny reward (always active)
TINY_METHODS = {"refl": {"m": 3}, "drtune": {"m": 3, "K": 2}, "draft_lv": {"n": 1}, "leapalign": {"lam": 100.0},
                "full_backprop": {}}


def tiny_tree(tmp: str | Path, backbone: str = "flux", method: str = "leapalign", cache: bool = True) -> dict:
    """A nested config mapping for a tiny CPU run (float32, 32 x 32, 4 sampling steps, 4 iterations)."""
    tmp = Path(tmp)
    cache_dir = tmp / f"cache-{backbone}"
    if cache and not (cache_dir / "index.json").exists():
        tiny_cache(cache_dir, backbone)
    return {
        "run_dir": str(tmp / "run"),
        "seed": 0,
        "backbone": {"name": backbone, "tiny": True, "height": 32, "width": 32, "dtype": "float32"},
        "method": {"name": method, **TINY_METHODS.get(method, {})},
        "reward": {"name": "tiny_conv"},
        "prompts": {"cache": str(cache_dir)},
        "optim": {"lr": 1e-3, "weight_decay": 1e-4, "grad_clip": 1.0, "ema_decay": 0.9},
        "schedule": {"num_steps": 4, "iterations": 4, "global_batch": 4, "micro_batch": 2},
        "train": {"gradient_checkpointing": True, "autocast": False},
        "checkpoint": {"every": 2, "keep": 2},
        "logging": {"progress": False, "tensorboard": False, "grad_parts_every": 1},
    }


def tiny_config(tmp: str | Path, backbone: str = "flux", method: str = "leapalign", overrides: Sequence[str] = (),
                **kwargs: Any) -> RunConfig:
    return config_from_dict(merge(tiny_tree(tmp, backbone, method, **kwargs), parse_overrides(overrides)))
