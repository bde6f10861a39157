"""Rewards for the toy backbone and the tiny FLUX demo: differentiable, nothing to download.

``toy_mode``: r(x) = -|x - c_rare| on 2-D toy samples (the demo's preferred structure, see
benchmark/core/toy_data.py): its gradient has unit norm everywhere, so every sample is pulled toward the rare
blob, and the question is whether a method moves it there (early steps) or merely drags it (late steps).
``tiny_conv``: a frozen, seeded two-layer conv net scoring images in [0, 1] (the tiny FLUX demo, benchmarks).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from benchmark.core.toy_data import CENTERS, RARE
from evaluators.rewards.base import Reward


class ToyModeReward(Reward):
    name, differentiable = "toy_mode", True

    def __init__(self):
        super().__init__()
        self.register_buffer("center", CENTERS[RARE].clone())

    def forward(self, images: Tensor, prompts: list[str] | None = None) -> Tensor:
        return -(images - self.center.to(images)).norm(dim=1)


class TinyConvReward(Reward):
    name, differentiable = "tiny_conv", True

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 3, stride=2), nn.Conv2d(8, 8, 3, stride=2)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.2
        self.freeze()

    def forward(self, images: Tensor, prompts: list[str] | None = None) -> Tensor:
        act = nn.functional.silu
        x = images.to(self.conv1.weight.dtype) * 2 - 1
        return act(self.conv2(act(self.conv1(x)))).float().mean(dim=(1, 2, 3))
