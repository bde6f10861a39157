"""Backbones: FLUX.1, SD3/3.5 and the toy flow, chosen by ``backbone.name``; see ``base.Backbone``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from benchmark.core.backbones.base import Backbone, require_diffusers_dir
from benchmark.core.backbones.flux import FluxBackbone
from benchmark.core.backbones.sd3 import SD3Backbone
from benchmark.core.backbones.tiny import tiny_flux, tiny_sd3
from benchmark.core.backbones.toy import ToyBackbone, ToyConfig
from benchmark.core.dtypes import DTYPES
from benchmark.core.errors import ConfigError

BACKBONES = ("flux", "sd3", "toy")
DEFAULTS = {"flux": dict(height=720, width=720, guidance=3.5), "sd3": dict(height=512, width=512, guidance=4.5)}


@dataclass
class BackboneConfig:
    name: str = "flux"
    path: str | None = None  # a local diffusers-format model directory (flux, sd3); toy: a saved toy flow
    tiny: bool = False  # build a tiny random model instead (tests, the demo, CPU benchmarks)
    height: int | None = None  # None: 720 for FLUX (the paper's training size), 512 for SD3.5-M
    width: int | None = None
    guidance: float | None = None  # FLUX: distilled guidance (3.5); SD3: real CFG scale
    dtype: str = "bfloat16"
    toy: ToyConfig = field(default_factory=ToyConfig)

    def __post_init__(self):
        if self.name not in BACKBONES:
            raise ConfigError("backbone.name", f"one of {', '.join(BACKBONES)}", self.name)
        if self.dtype not in DTYPES:
            raise ConfigError("backbone.dtype", f"one of {', '.join(DTYPES)}", self.dtype)
        if isinstance(self.toy, dict):
            self.toy = ToyConfig(**self.toy)
        if self.name == "toy":
            return
        for key, value in DEFAULTS[self.name].items():
            if getattr(self, key) is None:
                setattr(self, key, 32 if self.tiny and key != "guidance" else value)
        if not (self.guidance >= 0 and math.isfinite(self.guidance)):
            raise ConfigError("backbone.guidance", "a finite number >= 0", self.guidance)
        multiple = 4 if self.tiny else 16  # VAE scale x patch: 8 x 2 for FLUX.1 and SD3.5, 2 x 2 for the tiny ones
        for key in ("height", "width"):
            value = getattr(self, key)
            if value < multiple or value % multiple:
                raise ConfigError(f"backbone.{key}", f"a positive multiple of {multiple} pixels", value)

    def check_paths(self) -> None:
        """Check the model directory's layout without loading anything."""
        if self.name == "toy" or self.tiny:
            return
        if not self.path:
            raise ConfigError("backbone.path", f"a local diffusers {self.name} directory (or backbone.tiny=true)", self.path)
        require_diffusers_dir(self.path, ("transformer", "vae", "scheduler"))


def build_backbone(cfg: BackboneConfig, transformer: torch.nn.Module | None = None) -> Backbone:
    """Load (or build tiny) the backbone of ``cfg``; the path is checked before any weight is read.

    ``transformer``: a trained transformer to use instead of the model directory's (FLUX, SD3).
    """
    if cfg.name == "toy":
        return ToyBackbone.from_pretrained(cfg.path) if cfg.path else ToyBackbone(cfg.toy)
    cfg.check_paths()
    size = dict(height=cfg.height, width=cfg.width, guidance=cfg.guidance)
    if cfg.tiny:
        backbone = (tiny_flux if cfg.name == "flux" else tiny_sd3)(**size)
        if cfg.dtype != "float32":  # built in float32
            backbone.transformer.to(DTYPES[cfg.dtype])
            backbone.vae.to(DTYPES[cfg.dtype])
        backbone.transformer = transformer or backbone.transformer
        return backbone
    cls = FluxBackbone if cfg.name == "flux" else SD3Backbone
    return cls.from_pretrained(cfg.path, dtype=DTYPES[cfg.dtype], transformer=transformer, **size)


__all__ = ["BACKBONES", "DTYPES", "Backbone", "BackboneConfig", "ToyBackbone", "ToyConfig", "build_backbone"]
