"""The backbone contract: velocity, differentiable decode, the sigma schedule, and noise of the right shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from benchmark.errors import ConfigError


class Backbone(Protocol):
    """A flow-matching model the engine can roll out and the methods can train.

    ``transformer`` is the module whose parameters are trained (LoRA or full). ``velocity`` takes the
    state in the engine's layout (FLUX: packed tokens, SD3: latents, toy: vectors), a 0-dim sigma and the
    backbone's conditioning; ``decode`` maps a sample x_0 to images in [0, 1] with gradient.
    """

    name: str
    transformer: nn.Module

    def velocity(self, x: Tensor, sigma: Tensor, cond: Any) -> Tensor: ...

    def decode(self, x0: Tensor) -> Tensor: ...

    def schedule(self, num_steps: int) -> Tensor: ...

    def noise(self, batch: int, generator: torch.Generator) -> Tensor: ...


def shift_sigmas(sigmas: Tensor, shift: float) -> Tensor:
    """SD3's static time shift, sigma' = s * sigma / (1 + (s - 1) * sigma)."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def require_diffusers_dir(path: str | Path, parts: tuple[str, ...], field: str = "backbone.path") -> Path:
    """Check that ``path`` is a local diffusers-format model directory holding ``parts`` (before loading)."""
    if not str(path):
        raise ConfigError(field, "a local diffusers model directory", path)
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ConfigError(field, "an existing local diffusers model directory", str(path))
    for part in parts:
        config = "scheduler_config.json" if part == "scheduler" else "config.json"
        if not (root / part / config).is_file():
            raise ConfigError(
                field, f"a diffusers layout with {part}/{config} (as saved by save_pretrained)", str(root)
            )
    return root


def scheduler_sigmas(scheduler, num_steps: int, **kwargs) -> Tensor:
    """The sigmas (T + 1 values ending at 0, float32) a diffusers flow-matching scheduler uses for T steps.

    Calls the scheduler's own ``set_timesteps`` so shifts, dynamic shifting and terminal values are
    exactly the pipeline's; ``kwargs`` are the pipeline's (FLUX passes its sigmas and mu).
    """
    scheduler.set_timesteps(num_steps, device="cpu", **kwargs)
    return scheduler.sigmas.detach().to(torch.float32).clone()


def vae_decode(vae: nn.Module, z: Tensor) -> Tensor:
    """Latents -> images in [0, 1]: z / scaling_factor + shift_factor, decode, x / 2 + 0.5, clamp (differentiable)."""
    shift = vae.config.shift_factor or 0.0
    z = z / vae.config.scaling_factor + shift
    image = vae.decode(z.to(vae.dtype), return_dict=False)[0]
    return (image.float() / 2 + 0.5).clamp(0, 1)
