"""Each differentiable reward's real architecture on the meta device: no weights, no memory, nothing read.

For memory planning, which needs the shapes and the code path of the real scorer, never its values: HPSv2.1 is
open_clip's ViT-H-14 (its config ships with open_clip); PickScore is CLIP ViT-H/14 (laion/CLIP-ViT-H-14-laion2B-
s32B-b79K: text 24 x 1024, vision 32 x 1280 at 224 px in patches of 14, projection 1024); ImageReward is BLIP's
ViT-L/16 with a BERT-base text encoder (``imagereward.vision_config`` / ``text_config``). Tokenizers are the
offline ones of the tiny rewards (the real vocabularies' sizes are in the configs). HPSv3 finds its reward token
by a data-dependent lookup that shape-only tensors cannot follow, so it has no architecture here.
"""

from __future__ import annotations

import open_clip
import torch
from transformers import CLIPConfig

from benchmark.core.dtypes import DTYPES
from benchmark.core.errors import ConfigError
from evaluators.rewards.base import Reward
from evaluators.rewards.config import RewardConfig
from evaluators.rewards.hpsv2 import HPSv2
from evaluators.rewards.imagereward import ImageReward, text_config, vision_config
from evaluators.rewards.pickscore import PickScore
from evaluators.rewards.tiny import bert_tokenizer, clip_tokenizer
from evaluators.rewards.toy import TinyConvReward, ToyModeReward
from evaluators.rewards.weighted import WeightedReward

PICKSCORE_CLIP = {
    "text_config": {"vocab_size": 49408, "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
                     "num_attention_heads": 16, "max_position_embeddings": 77, "hidden_act": "gelu"},
    "vision_config": {"hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32, "num_attention_heads": 16,
                       "image_size": 224, "patch_size": 14, "hidden_act": "gelu"},
    "projection_dim": 1024,
}
BUILDERS = {
    "hpsv2": lambda: HPSv2(open_clip.create_model("ViT-H-14", pretrained=None, device="meta"),
                           open_clip.get_tokenizer("ViT-H-14")),
    "pickscore": lambda: PickScore.from_config(CLIPConfig(**PICKSCORE_CLIP), clip_tokenizer()),
    "imagereward": lambda: ImageReward.from_config(vision_config(), text_config(1024), bert_tokenizer()),
    "tiny_conv": TinyConvReward,
    "toy_mode": ToyModeReward,
}


def architecture(cfg: RewardConfig, prefix: str = "reward") -> Reward:
    """The reward of section ``cfg`` with its real architecture on the meta device, in its dtype."""
    if cfg.name == "weighted":
        return WeightedReward({p.name: (architecture(p, f"{prefix}.parts[{i}]"), p.weight)
                               for i, p in enumerate(cfg.parts)})
    if cfg.name not in BUILDERS:
        raise ConfigError(f"{prefix}.name", f"a reward whose architecture can be planned ({', '.join(BUILDERS)})",
                          cfg.name)
    with torch.device("meta"):
        reward = BUILDERS[cfg.name]()
    return reward.to(DTYPES[cfg.dtype]) if cfg.dtype else reward
