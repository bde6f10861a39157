"""The methods of Algorithm 1, one file each, chosen by ``method.name`` in the run config, and the
policy-gradient peer GRPO (DanceGRPO / MixGRPO / Flow-GRPO) in the same protocol.

``method_config(values)`` builds and validates a method's config from a mapping (YAML / CLI), and
``build_method(cfg)`` the method; both raise ``ConfigError`` naming the field on bad input. A method config
class may carry ``presets`` (GRPO: the peers' recipes): ``preset_tree(values)`` is the run-config layer a
``preset:`` value stands for, and ``method_config`` puts its method section under the values given.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

from benchmark.core.configs import merge, typed
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
    """The config dataclass of ``values['name']`` from a mapping of its fields (over its preset's, if it names
    one): types checked (unknown fields included), then ranges by its ``__post_init__``; ConfigError naming
    ``method.<field>`` otherwise."""
    name = values.get("name")
    if name not in METHODS:
        raise ConfigError("method.name", f"one of {', '.join(METHODS)}", name)
    preset = preset_tree(values).get("method")
    return typed(METHODS[name][0], merge(preset, values) if preset else values, "method")


def preset_tree(values: Mapping[str, Any]) -> dict:
    """The run-config tree that the method section ``values`` names with ``preset:`` ({} without one)."""
    preset = values.get("preset") if isinstance(values, Mapping) else None
    if preset is None or values.get("name") not in METHODS:
        return {}
    presets = getattr(METHODS[values["name"]][0], "presets", {})
    if preset not in presets:
        expected = f"one of {', '.join(presets)} (or null)" if presets else f"null ({values['name']} has no presets)"
        raise ConfigError("method.preset", expected, preset)
    return copy.deepcopy(presets[preset])


def build_method(cfg: MethodConfig | Mapping[str, Any]) -> Method:
    if isinstance(cfg, Mapping):
        cfg = method_config(cfg)
    return METHODS[cfg.name][1](cfg)


__all__ = ["METHODS", "LossContext", "Method", "MethodConfig", "MethodStep", "build_method", "method_config",
           "preset_tree"]
