"""The methods of Algorithm 1, one file each, chosen by ``method.name`` in the run config, and the
policy-gradient peer GRPO (DanceGRPO / MixGRPO / Flow-GRPO) in the same protocol.

``method_config(values)`` builds and validates a method's config from a mapping (YAML / CLI), and
``build_method(cfg)`` the method; both raise ``ConfigError`` naming the field on bad input.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from benchmark.core.errors import ConfigError
from methods.base import LossContext, Method, MethodStep
from methods.draft_lv import DRaFTLV, DRaFTLVConfig
from methods.drtune import DRTune, DRTuneConfig
from methods.full_backprop import FullBackprop, FullBackpropConfig
from methods.grpo import GRPO, GRPOConfig
from methods.leapalign import LeapAlign, LeapAlignConfig
from methods.refl import ReFL, ReFLConfig

METHODS: dict[str, tuple[type, type]] = {
    "refl": (ReFLConfig, ReFL),
    "draft_lv": (DRaFTLVConfig, DRaFTLV),
    "drtune": (DRTuneConfig, DRTune),
    "leapalign": (LeapAlignConfig, LeapAlign),
    "full_backprop": (FullBackpropConfig, FullBackprop),
    "grpo": (GRPOConfig, GRPO),
}


def method_config(values: Mapping[str, Any]) -> Any:
    """The validated config dataclass of ``values['name']`` from a mapping of its fields."""
    name = values.get("name")
    if name not in METHODS:
        raise ConfigError("method.name", f"one of {', '.join(METHODS)}", name)
    config_cls = METHODS[name][0]
    known = {f.name for f in dataclasses.fields(config_cls)}
    for key in values:
        if key not in known:
            raise ConfigError(f"method.{key}", f"a field of {name} ({', '.join(sorted(known))})", key)
    return config_cls(**values)


def build_method(cfg: Any) -> Method:
    if isinstance(cfg, Mapping):
        cfg = method_config(cfg)
    return METHODS[cfg.name][1](cfg)


__all__ = ["METHODS", "LossContext", "Method", "MethodStep", "build_method", "method_config"]
