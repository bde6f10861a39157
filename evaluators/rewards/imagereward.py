"""ImageReward (THUDM/ImageReward) rebuilt on transformers' BLIP modules.

r = MLP(BERT_xattn(tokens, ViT(image))[CLS]) and score = (r - 0.16717362830052426) / 1.0333394966054072, where
ViT is BLIP's ViT-L/16 at 224 (24 layers, width 1024, LayerNorm eps 1e-6), BERT_xattn is BLIP's med.py BERT
(12 layers, 768, vocab 30524) reading bert-base-uncased tokens padded/truncated to 35 with cross-attention
to all image tokens, and MLP is 768 -> 1024 -> 128 -> 64 -> 16 -> 1 with dropout and NO activations (the
ReLUs are commented out in the original). The image is resized so its shortest side is 224 (bicubic), centre
cropped to 224 (torchvision rounding) and normalised with the OpenAI CLIP mean/std. ``forward`` (training)
resizes the image tensor; ``evaluate`` runs the official ``_transform(224)`` (torchvision on the PIL image) on
the decoded images, in float32 as ``ImageReward.load`` does.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn
from transformers import BertTokenizer, BlipTextConfig, BlipTextModel, BlipVisionConfig, BlipVisionModel

from benchmark.core.errors import ConfigError
from evaluators.rewards.base import Reward, on_device, require_dir
from evaluators.rewards.imagereward_keys import original_to_ours
from evaluators.rewards.official import imagereward_pixels
from evaluators.rewards.transforms import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, center_crop, normalize, resize_shortest

REWARD_MEAN = 0.16717362830052426
REWARD_STD = 1.0333394966054072
CHECKPOINT_NAME = "ImageReward.pt"
MED_CONFIG_NAME = "med_config.json"
TOKENIZER_DIR = "bert-base-uncased"


def vision_config(**overrides) -> BlipVisionConfig:
    """BLIP ViT-L/16 at 224, as ``create_vit('large', 224)`` builds it (timm LayerNorm eps 1e-6, exact GELU)."""
    kwargs = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                  image_size=224, patch_size=16, layer_norm_eps=1e-6, hidden_act="gelu")
    return BlipVisionConfig(**{**kwargs, **overrides})


def text_config(encoder_hidden_size: int = 1024, **overrides) -> BlipTextConfig:
    """ImageReward's med_config.json: BERT-base with cross-attention (``is_decoder`` builds those layers)."""
    kwargs = dict(vocab_size=30524, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                  intermediate_size=3072, max_position_embeddings=512, layer_norm_eps=1e-12, hidden_act="gelu",
                  pad_token_id=0, encoder_hidden_size=encoder_hidden_size, is_decoder=True)
    return BlipTextConfig(**{**kwargs, **overrides})


class RewardHead(nn.Module):
    """The original ``MLP(768)``; indices match the checkpoint's ``mlp.layers.{0,2,4,6,7}``."""

    def __init__(self, width: int = 768) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(width, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1),
        )

    def forward(self, h: Tensor) -> Tensor:
        return self.layers(h)


class ImageReward(Reward):
    name = "imagereward"
    differentiable = True
    protocol = "official"

    def __init__(self, vision: BlipVisionModel, text: BlipTextModel, mlp: RewardHead, tokenizer,
                 max_length: int = 35) -> None:
        super().__init__()
        self.vision, self.text, self.mlp = vision, text, mlp
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.image_size = int(vision.config.image_size)
        self.freeze()

    @classmethod
    def check(cls, cfg, prefix: str) -> None:
        check_layout(cfg.path, f"{prefix}.path")

    @classmethod
    def build(cls, cfg, device: str | torch.device) -> ImageReward:
        return on_device(cls.from_checkpoint(cfg.path), cfg, device)

    @classmethod
    def from_config(cls, vision_cfg: BlipVisionConfig, text_cfg: BlipTextConfig, tokenizer) -> ImageReward:
        """Randomly initialised modules of the given configs (tests use tiny ones)."""
        vision = BlipVisionModel(vision_cfg)
        text = BlipTextModel(text_cfg, add_pooling_layer=False)
        return cls(vision, text, RewardHead(text_cfg.hidden_size), tokenizer)

    @classmethod
    def from_checkpoint(cls, path: str | Path, vision_cfg: BlipVisionConfig | None = None) -> ImageReward:
        """Load ``path/ImageReward.pt`` (original key names), ``path/med_config.json`` if present and the
        bert-base-uncased tokenizer from ``path/bert-base-uncased/``; ``vision_cfg`` defaults to
        BLIP's ViT-L/16 (the cross-attention width follows it, as BLIP sets encoder_width = vision_width)."""
        root = check_layout(path)
        text_kwargs = {}
        if (root / MED_CONFIG_NAME).is_file():
            med = json.loads((root / MED_CONFIG_NAME).read_text())
            keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                    "max_position_embeddings", "layer_norm_eps", "hidden_act", "pad_token_id")
            text_kwargs = {k: med[k] for k in keys if k in med}
        v_cfg = vision_cfg or vision_config()
        model = cls.from_config(v_cfg, text_config(v_cfg.hidden_size, **text_kwargs), load_tokenizer(root))
        state = torch.load(root / CHECKPOINT_NAME, map_location="cpu", weights_only=True)
        model.load_original_state_dict(state)
        return model

    def load_original_state_dict(self, state: dict[str, Tensor]) -> None:
        """Load a state dict with the original BLIP/ImageReward names; every key must be accounted for."""
        self.load_state_dict(original_to_ours(state), strict=True)

    def forward(self, images: Tensor, prompts: list[str]) -> Tensor:
        self.check_inputs(images, prompts)
        x = center_crop(resize_shortest(images.float(), self.image_size), self.image_size, rounding="round")
        return self.score_pixels(normalize(x, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD), prompts)

    @torch.no_grad()
    def evaluate(self, images: list[Image.Image], prompts: list[str]) -> Tensor:
        return self.score_pixels(imagereward_pixels(images, self.image_size).to(self.device), prompts)

    def score_pixels(self, pixels: Tensor, prompts: list[str]) -> Tensor:
        """The normalised reward from the model's input pixels (``ImageReward.score``)."""
        dtype = self.vision.embeddings.patch_embedding.weight.dtype
        image_embeds = self.vision(pixel_values=pixels.to(dtype)).last_hidden_state
        tokens = self.tokenizer(prompts, padding="max_length", truncation=True, max_length=self.max_length,
                                return_tensors="pt").to(pixels.device)
        h = self.text(
            input_ids=tokens.input_ids,
            attention_mask=tokens.attention_mask,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=pixels.device),
        ).last_hidden_state[:, 0, :]
        r = self.mlp(h.float()).squeeze(-1).float()  # float32 scores, also under bf16 autocast
        return (r - REWARD_MEAN) / REWARD_STD


def load_tokenizer(root: Path) -> BertTokenizer:
    """bert-base-uncased plus BLIP's two added tokens ([DEC] as bos, [ENC]), as BLIP's init_tokenizer does."""
    tokenizer = BertTokenizer.from_pretrained(root / TOKENIZER_DIR, local_files_only=True)
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tokenizer


def check_layout(path, field: str = "reward.path") -> Path:
    """Validate the directory layout before loading anything."""
    expected = (f"a directory with {CHECKPOINT_NAME} (THUDM/ImageReward) and {TOKENIZER_DIR}/ "
                "(vocab.txt or tokenizer.json)")
    root = require_dir(path, field, expected, (CHECKPOINT_NAME, TOKENIZER_DIR))
    if not any((root / TOKENIZER_DIR / name).is_file() for name in ("vocab.txt", "tokenizer.json")):
        raise ConfigError(field, expected, str(root))
    return root
