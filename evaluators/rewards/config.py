"""``RewardConfig`` and ``build_reward``: every bad value raises ConfigError before any model is loaded."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from urllib.parse import urlparse

import torch

from benchmark.core.backbones import DTYPES
from benchmark.core.errors import ConfigError
from evaluators.rewards import hpsv2, hpsv3, imagereward, pickscore
from evaluators.rewards.base import Reward
from evaluators.rewards.unified_reward import DIMENSIONS, UnifiedReward
from evaluators.rewards.weighted import WeightedReward

NAMES = ("hpsv2", "pickscore", "imagereward", "hpsv3", "unifiedreward", "geneval", "weighted", "toy_mode", "tiny_conv")
BUILT_IN = ("toy_mode", "tiny_conv")  # no checkpoint: the toy demo's reward and a seeded tiny conv net


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
        """Checks the checkpoint layout on disk (or the URL's form); raises ConfigError naming the field."""
        field_name = f"{prefix}.path"
        if self.name == "hpsv2":
            hpsv2.resolve_checkpoint(self.path, field_name)
        elif self.name == "pickscore":
            pickscore.check_layout(self.path, self.base_path, field_name)
        elif self.name == "imagereward":
            imagereward.check_layout(self.path, field_name)
        elif self.name == "hpsv3":
            hpsv3.check_layout(self.path, self.base_path, field_name)
        elif self.name == "unifiedreward":
            url = urlparse(self.path or "")
            if url.scheme not in ("http", "https") or not url.netloc:
                raise ConfigError(field_name, "the http(s) URL of an OpenAI-compatible server", self.path)
        elif self.name == "geneval":
            from evaluators.geneval import load_metadata
            from evaluators.rewards.base import require_dir, require_file

            require_dir(self.path, field_name, "a transformers Mask2Former directory (config.json)", ("config.json",))
            require_file(self.base_path, f"{prefix}.base_path", "the open_clip ViT-L-14 checkpoint file")
            require_file(self.metadata, f"{prefix}.metadata", "GenEval-format metadata (.jsonl) of the prompts")
            load_metadata(self.metadata)
        elif self.name == "weighted":
            for i, part in enumerate(self.parts):
                part.check_values(f"{prefix}.parts[{i}]")
                part.check_paths(f"{prefix}.parts[{i}]")


def build_reward(cfg: RewardConfig, device: str | torch.device = "cpu") -> Reward:
    """Validate ``cfg`` completely, then load the reward onto ``device`` (frozen, eval mode)."""
    cfg.check_values()
    cfg.check_paths()
    return _load(cfg, device)


def _load(cfg: RewardConfig, device) -> Reward:
    dtype = DTYPES[cfg.dtype] if cfg.dtype else None
    if cfg.name == "hpsv2":
        reward = hpsv2.HPSv2.from_checkpoint(cfg.path)
    elif cfg.name == "pickscore":
        reward = pickscore.PickScore.from_pretrained(cfg.path, cfg.base_path)
    elif cfg.name == "imagereward":
        reward = imagereward.ImageReward.from_checkpoint(cfg.path)
    elif cfg.name == "hpsv3":
        return hpsv3.HPSv3.from_checkpoint(cfg.path, cfg.base_path, dtype=dtype or torch.bfloat16, device=device)
    elif cfg.name == "unifiedreward":
        return UnifiedReward(cfg.path, cfg.dimension)
    elif cfg.name == "geneval":
        from evaluators.rewards.geneval import GenEvalReward

        return GenEvalReward.from_paths(cfg.path, cfg.base_path, cfg.metadata, device, clip_model=cfg.clip_model)
    elif cfg.name in BUILT_IN:
        from evaluators.rewards.toy import TinyConvReward, ToyModeReward

        reward = ToyModeReward() if cfg.name == "toy_mode" else TinyConvReward()
    else:
        return WeightedReward({p.name: (_load(p, device), p.weight) for p in cfg.parts})
    return reward.to(device=device, dtype=dtype) if dtype else reward.to(device)
