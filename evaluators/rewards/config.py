"""``RewardConfig``, the registry of rewards and ``build_reward``: every bad value is one ConfigError naming the
field, raised before any model is loaded.

The registry maps ``reward.name`` to a ``Reward`` class, as ``methods.METHODS`` maps ``method.name`` to a
method: each class checks its own section without loading anything (``check``) and loads itself from it
(``build``). A ``weighted`` reward is the sum of its ``parts``, each built from the registry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from benchmark.core.configs import typed
from benchmark.core.dtypes import DTYPES
from benchmark.core.errors import ConfigError
from evaluators.rewards.base import Reward
from evaluators.rewards.geneval import GenEvalReward
from evaluators.rewards.hpsv2 import HPSv2
from evaluators.rewards.hpsv3 import HPSv3
from evaluators.rewards.imagereward import ImageReward
from evaluators.rewards.pickscore import PickScore
from evaluators.rewards.toy import TinyConvReward, ToyModeReward
from evaluators.rewards.unified_reward import DIMENSIONS, UnifiedReward
from evaluators.rewards.weighted import WeightedReward

REWARDS: dict[str, type[Reward]] = {
    "hpsv2": HPSv2,
    "pickscore": PickScore,
    "imagereward": ImageReward,
    "hpsv3": HPSv3,
    "unifiedreward": UnifiedReward,
    "geneval": GenEvalReward,
    "toy_mode": ToyModeReward,  # no checkpoint: the toy demo's reward
    "tiny_conv": TinyConvReward,  # no checkpoint: a seeded tiny conv net
}
NAMES = (*REWARDS, "weighted")


@dataclass
class RewardConfig:
    """One reward, or a weighted sum of ``parts``.

    path: the local checkpoint (hpsv2: HPS_v2.1_compressed.pt or its directory; pickscore: a PickScore_v1
      directory; imagereward: a directory with ImageReward.pt and bert-base-uncased/vocab.txt; hpsv3: a
      directory with HPSv3.safetensors); unifiedreward: the server URL (http://host:port).
    base_path: pickscore's CLIP tokenizer directory (default: path); hpsv3's Qwen2-VL-7B-Instruct directory
      (default: path/Qwen2-VL-7B-Instruct).
    weight: this reward's weight when it is a part of a weighted reward.
    dimension: unifiedreward's scored dimension (alignment, coherence, style, final).
    geneval (correctness, not differentiable): path = a transformers Mask2Former directory, base_path = the
      open_clip checkpoint (clip_model, ViT-L-14 as GenEval), metadata = the GenEval-format JSONL holding every
      training prompt.
    dtype: weight dtype (default: float32; hpsv3 bfloat16).
    """

    name: str = "hpsv2"
    path: str | None = None
    base_path: str | None = None
    weight: float = 1.0
    parts: list[RewardConfig] = field(default_factory=list)
    dimension: str = "alignment"
    dtype: str | None = None
    metadata: str | None = None
    clip_model: str = "ViT-L-14"

    def __post_init__(self) -> None:
        self.parts = [p if isinstance(p, RewardConfig) else RewardConfig(**p) for p in self.parts]
        self.check_values()

    def check_values(self, prefix: str = "reward") -> None:
        """Checks that need no filesystem: names, weights, dimension, dtype, parts."""
        if self.name not in NAMES:
            raise ConfigError(f"{prefix}.name", f"one of {', '.join(NAMES)}", self.name)
        if not isinstance(self.weight, (int, float)) or not math.isfinite(self.weight):
            raise ConfigError(f"{prefix}.weight", "a finite number", self.weight)
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ConfigError(f"{prefix}.dtype", f"one of {', '.join(DTYPES)}", self.dtype)
        if self.name == "unifiedreward" and self.dimension not in DIMENSIONS:
            raise ConfigError(f"{prefix}.dimension", f"one of {', '.join(DIMENSIONS)}", self.dimension)
        if self.name == "weighted":
            if not self.parts:
                raise ConfigError(f"{prefix}.parts", "at least one part for a weighted reward", self.parts)
            names = [p.name for p in self.parts]
            if len(set(names)) != len(names) or "weighted" in names:
                raise ConfigError(f"{prefix}.parts", "distinct, non-weighted reward names", names)
        elif self.parts:
            raise ConfigError(f"{prefix}.parts", "no parts unless name is 'weighted'", [p.name for p in self.parts])

    def check_paths(self, prefix: str = "reward") -> None:
        """Checks the checkpoint layout on disk (or the URL's form), each part's too; ConfigError naming the field.
        (The values were checked when the config was built.)"""
        if self.name != "weighted":
            REWARDS[self.name].check(self, prefix)
        for i, part in enumerate(self.parts):
            part.check_paths(f"{prefix}.parts[{i}]")


def reward_config(section: Mapping[str, Any], prefix: str = "reward") -> RewardConfig:
    """A run config's reward section as a checked ``RewardConfig``: fields, values and paths, nothing loaded."""
    cfg = typed(RewardConfig, section, prefix)
    cfg.check_paths(prefix)
    return cfg


def build_reward(cfg: RewardConfig, device: str | torch.device = "cpu") -> Reward:
    """Check ``cfg``'s files, then load the reward onto ``device`` (frozen, eval mode)."""
    cfg.check_paths()
    return load(cfg, device)


def load(cfg: RewardConfig, device: str | torch.device) -> Reward:
    if cfg.name == "weighted":
        return WeightedReward({p.name: (load(p, device), p.weight) for p in cfg.parts})
    return REWARDS[cfg.name].build(cfg, device)
