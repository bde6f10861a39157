"""The methods of Algorithm 1, one file each, chosen by ``method.name`` in the run config, and the
policy-gradient peer GRPO (DanceGRPO / MixGRPO / Flow-GRPO) in the same protocol.

``method_config(values)`` builds and validates a method's config from a mapping (YAML / CLI), and
``build_method(cfg)`` the method; both raise ``ConfigError`` naming the field on bad input.
"""

from __future__ import annotations

from typing import Any, Mapping

from benchmark.core.configs import typed
from benchmark.core.errors import ConfigError
from methods.base import LossContext, Method, MethodConfig, MethodStep
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


def method_config(values: Mapping[str, Any]) -> MethodConfig:
    """The config dataclass of ``values['name']`` from a mapping of its fields: types checked (unknown fields
    included), then ranges by its ``__post_init__``; ConfigError naming ``method.<field>`` otherwise."""
    name = values.get("name")
    if name not in METHODS:
        raise ConfigError("method.name", f"one of {', '.join(METHODS)}", name)
    return typed(METHODS[name][0], values, "method")


def build_method(cfg: MethodConfig | Mapping[str, Any]) -> Method:
    if isinstance(cfg, Mapping):
        cfg = method_config(cfg)
    return METHODS[cfg.name][1](cfg)


__all__ = ["METHODS", "LossContext", "Method", "MethodConfig", "MethodStep", "build_method", "method_config"]
