"""The toy backbone: a small velocity MLP on low-dimensional data, for the CPU demo and exact maths tests.

Everything a real backbone has is here in miniature: a conditioned velocity field v(x, sigma, c), a
shifted sigma schedule and a decode (the identity: toy samples are their own "images"). It runs in
float64 so that gradients can be checked against the paper's equations to 1e-6 and tighter.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from benchmark.core.backbones.base import shift_sigmas
from benchmark.core.errors import ConfigError


@dataclass
class ToyConfig:
    dim: int = 2
    hidden: int = 64
    depth: int = 3
    cond_dim: int = 0
    time_features: int = 8
    shift: float = 1.0
    dtype: str = "float32"

    def __post_init__(self):
        for name in ("dim", "hidden", "depth", "time_features"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"backbone.toy.{name}", "a positive integer", getattr(self, name))
        if self.cond_dim < 0:
            raise ConfigError("backbone.toy.cond_dim", "an integer >= 0", self.cond_dim)
        if not self.shift > 0:
            raise ConfigError("backbone.toy.shift", "a number > 0", self.shift)
        if self.dtype not in ("float32", "float64"):
            raise ConfigError("backbone.toy.dtype", "one of float32, float64", self.dtype)


class ToyVelocityNet(nn.Module):
    """v_theta(x, sigma, c): an MLP on [x, Fourier features of sigma, c] with SiLU (smooth, so Jacobians are rich)."""

    def __init__(self, cfg: ToyConfig):
        super().__init__()
        self.freqs = nn.Parameter(torch.arange(1, cfg.time_features // 2 + 1) * math.pi, requires_grad=False)
        width_in = cfg.dim + 2 * len(self.freqs) + cfg.cond_dim
        layers: list[nn.Module] = []
        for i in range(cfg.depth):
            layers += [nn.Linear(width_in if i == 0 else cfg.hidden, cfg.hidden), nn.SiLU()]
        layers.append(nn.Linear(cfg.hidden, cfg.dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, sigma: Tensor, cond: Tensor | None = None) -> Tensor:
        angle = sigma.to(x.dtype).reshape(-1, 1) * self.freqs.to(x.dtype)
        features = [x, torch.sin(angle).expand(len(x), -1), torch.cos(angle).expand(len(x), -1)]
        if cond is not None:
            features.append(cond.to(x.dtype))
        return self.net(torch.cat(features, dim=1))


class ToyBackbone:
    name = "toy"

    def __init__(self, cfg: ToyConfig, transformer: ToyVelocityNet | None = None):
        self.cfg = cfg
        self.dtype = getattr(torch, cfg.dtype)
        self.transformer = (transformer or ToyVelocityNet(cfg)).to(self.dtype)

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: str | None = None) -> "ToyBackbone":
        """A toy flow saved by ``save_pretrained``: config.json (ToyConfig) + model.safetensors."""
        root = Path(path).expanduser()
        for name in ("config.json", "model.safetensors"):
            if not (root / name).is_file():
                raise ConfigError("backbone.path", f"a toy flow directory with {name} (ToyBackbone.save_pretrained)", str(path))
        values = json.loads((root / "config.json").read_text())
        backbone = cls(ToyConfig(**{**values, **({"dtype": dtype} if dtype else {})}))
        state = load_file(str(root / "model.safetensors"))
        backbone.transformer.load_state_dict({k: v.to(backbone.dtype) for k, v in state.items()})
        return backbone

    def save_pretrained(self, path: str | Path) -> None:
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        (root / "config.json").write_text(json.dumps(dataclasses.asdict(self.cfg), indent=2))
        save_file({k: v.contiguous() for k, v in self.transformer.state_dict().items()}, str(root / "model.safetensors"))

    def velocity(self, x: Tensor, sigma: Tensor, cond: Tensor | None) -> Tensor:
        return self.transformer(x, sigma, cond)

    def decode(self, x0: Tensor) -> Tensor:
        return x0

    def schedule(self, num_steps: int) -> Tensor:
        if num_steps < 2:
            raise ConfigError("schedule.num_steps", "an integer >= 2", num_steps)
        return shift_sigmas(torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64), self.cfg.shift).to(
            self.dtype
        )

    def noise(self, batch: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn(batch, self.cfg.dim, generator=generator, dtype=self.dtype)
