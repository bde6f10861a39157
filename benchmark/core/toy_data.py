"""The demo's toy world: 2-D points in four blobs, one of them rare.

The blob a sample lands in is its global structure. Under the flow ODE that choice is made early, at
high noise; late steps only place the point inside its blob. The reward prefers the rare blob, which
the pretrained flow produces for about RARE_WEIGHT of its samples: a method must change the early
steps to move samples there, not just nudge late ones towards it.
"""

from __future__ import annotations

import torch
from torch import Tensor

CENTERS = torch.tensor([[-2.0, 2.0], [2.0, 2.0], [-2.0, -2.0], [2.0, -2.0]])
WEIGHTS = torch.tensor([0.35, 0.35, 0.25, 0.05])
RARE = 3  # index of the preferred, rare blob
SPREAD = 0.35  # standard deviation of each blob
PREFERRED_RADIUS = 1.0  # a sample "has the preferred structure" within this distance of the rare centre


def sample_data(n: int, generator: torch.Generator | None = None) -> Tensor:
    blob = torch.multinomial(WEIGHTS, n, replacement=True, generator=generator)
    return CENTERS[blob] + SPREAD * torch.randn(n, 2, generator=generator)


def preferred(x: Tensor) -> Tensor:
    """1.0 where a sample lies in the rare blob, else 0.0."""
    return ((x - CENTERS[RARE].to(x)).norm(dim=1) < PREFERRED_RADIUS).to(x.dtype)
