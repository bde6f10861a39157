"""The backbone contract: velocity, differentiable decode, the sigma schedule, and noise of the right shape."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler
from torch import Tensor, nn

from benchmark.core.errors import ConfigError


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


@dataclass(frozen=True)
class TimeGrid:
    """The sigmas a training rollout steps through and the time the model is told (a method declares it).

    ``shift`` None: the backbone's own schedule (FLUX: FluxPipeline's resolution-dependent shift); a number s:
    SD3's static shift of the uniform grid t = linspace(1, 0, T + 1) in float32, sigma = s t / (1 + (s - 1) t)
    (DanceGRPO's and MixGRPO's ``sd3_time_shift``, fastvideo/train_grpo_flux.py). ``levels`` 0: the model is
    told sigma; N: int(N sigma) / N, as DanceGRPO and MixGRPO pass ``timestep = int(sigma * 1000)`` (a long)
    divided by 1000, while the step itself uses the exact sigma.
    """

    shift: float | None = None
    levels: int = 0

    def sigmas(self, backbone: Backbone, num_steps: int) -> Tensor:
        if self.shift is None:
            return backbone.schedule(num_steps)
        if not isinstance(num_steps, int) or num_steps < 2:
            raise ConfigError("schedule.num_steps", "an integer >= 2", num_steps)
        return shift_sigmas(torch.linspace(1, 0, num_steps + 1), self.shift)

    def model(self, backbone: Backbone) -> Backbone:
        """The backbone as the rollout and the loss should call it: itself, or told the quantised time."""
        return QuantisedTime(backbone, self.levels) if self.levels else backbone


class QuantisedTime:
    """A backbone whose velocity is told int(N sigma) / N instead of sigma; everything else is the backbone's."""

    def __init__(self, inner: Backbone, levels: int):
        self.inner, self.levels = inner, levels

    def velocity(self, x: Tensor, sigma: Tensor, cond: Any) -> Tensor:
        return self.inner.velocity(x, quantise(sigma, self.levels), cond)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def quantise(sigma: Tensor, levels: int) -> Tensor:
    """int(levels * sigma) / levels in float32, as DanceGRPO computes it from its float32 sigma (sigma >= 0)."""
    return torch.floor(sigma.float() * levels) / levels


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


class DiffusersBackbone:
    """What FLUX and SD3 share: a diffusers transformer, VAE and flow-matching scheduler, and the image size.

    Subclasses set ``transformer_cls`` and ``patch`` (latent pixels per token side), and define the layout
    of the engine's state (``noise``, ``unpack``), ``velocity`` and ``schedule``.
    """

    name: str
    transformer_cls: type
    patch: int
    input_layer: str  # the transformer's input projection: its weight tells the dtype and device inputs need

    def __init__(self, transformer: nn.Module, vae: nn.Module, scheduler, height: int, width: int, guidance: float):
        self.transformer, self.vae, self.scheduler = transformer, vae, scheduler
        self.guidance = guidance
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        multiple = self.vae_scale_factor * self.patch
        for field, value in (("height", height), ("width", width)):
            if not isinstance(value, int) or value < multiple or value % multiple:
                raise ConfigError(f"backbone.{field}", f"a positive multiple of {multiple}", value)
        self.height, self.width = height, width
        self.latent_h, self.latent_w = height // self.vae_scale_factor, width // self.vae_scale_factor

    @classmethod
    def from_pretrained(cls, path: str | Path, *, height: int, width: int, guidance: float, dtype=torch.bfloat16,
                        transformer: nn.Module | None = None):
        """Load from a local diffusers directory (transformer/, vae/, scheduler/), checked before reading weights.

        ``transformer`` (a trained one) replaces the directory's, which is then never read.
        """
        root = require_diffusers_dir(path, ("transformer", "vae", "scheduler"))
        return cls(
            transformer or cls.transformer_cls.from_pretrained(root, subfolder="transformer", torch_dtype=dtype),
            AutoencoderKL.from_pretrained(root, subfolder="vae", torch_dtype=dtype),
            FlowMatchEulerDiscreteScheduler.from_pretrained(root, subfolder="scheduler"),
            height, width, guidance,
        )

    @property
    def input_weight(self) -> Tensor:
        """The input projection's weight. Read per step instead of ``transformer.dtype`` / ``.device``, which
        scan every parameter (about 160 us a call in diffusers)."""
        return operator.attrgetter(self.input_layer)(self.transformer).weight

    def check_steps(self, num_steps: int) -> None:
        if not isinstance(num_steps, int) or num_steps < 2:
            raise ConfigError("schedule.num_steps", "an integer >= 2", num_steps)

    def unpack(self, x: Tensor) -> Tensor:
        return x

    def decode(self, x0: Tensor) -> Tensor:
        return vae_decode(self.vae, self.unpack(x0))
