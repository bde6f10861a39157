"""PickScore v1 (yuvalkirstain/PickScore_v1): a CLIP ViT-H/14 fine-tuned on Pick-a-Pic preferences.

score = exp(logit_scale) * <f_img / |f_img|, f_txt / |f_txt|> (about 22-24 for FLUX), where the image goes
through the processor of laion/CLIP-ViT-H-14-laion2B-s32B-b79K: shortest side to 224 (bicubic), centre crop
224 (HF rounding: offset (d // 2)), OpenAI CLIP mean/std; the prompt is padded/truncated to 77 tokens.
``forward`` (training) resizes the image tensor; ``evaluate`` runs that processor on the decoded images (PIL,
8-bit), as PickScore's README ``calc_probs`` does, in float32 as the README's model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from transformers import AutoTokenizer, CLIPConfig, CLIPModel

from benchmark.core.errors import ConfigError
from evaluators.rewards.base import Reward, on_device, require_dir
from evaluators.rewards.official import pickscore_pixels
from evaluators.rewards.transforms import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, center_crop, normalize, resize_shortest

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json")


class PickScore(Reward):
    name = "pickscore"
    differentiable = True
    protocol = "official"

    def __init__(self, clip: CLIPModel, tokenizer, max_length: int = 77) -> None:
        super().__init__()
        self.clip = clip
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.image_size = int(clip.config.vision_config.image_size)
        self.freeze()

    @classmethod
    def check(cls, cfg, prefix: str) -> None:
        check_layout(cfg.path, cfg.base_path, f"{prefix}.path")

    @classmethod
    def build(cls, cfg, device: str | torch.device) -> PickScore:
        return on_device(cls.from_pretrained(cfg.path, cfg.base_path), cfg, device)

    @classmethod
    def from_config(cls, config: CLIPConfig, tokenizer) -> PickScore:
        """A randomly initialised CLIPModel of ``config`` (tests use a tiny one)."""
        return cls(CLIPModel(config), tokenizer)

    @classmethod
    def from_pretrained(cls, path: str | Path, base_path: str | Path | None = None) -> PickScore:
        """Load a local PickScore_v1 copy; the CLIP tokenizer (of laion/CLIP-ViT-H-14-laion2B-s32B-b79K) comes
        from ``base_path``, default ``path``."""
        model_dir, processor_dir = check_layout(path, base_path)
        clip = CLIPModel.from_pretrained(model_dir, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(processor_dir, local_files_only=True)
        return cls(clip, tokenizer)

    def forward(self, images: Tensor, prompts: list[str]) -> Tensor:
        self.check_inputs(images, prompts)
        x = center_crop(resize_shortest(images.float(), self.image_size), self.image_size, rounding="floor")
        return self.score_pixels(normalize(x, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD), prompts)

    @torch.no_grad()
    def evaluate(self, images: list[Image.Image], prompts: list[str]) -> Tensor:
        return self.score_pixels(pickscore_pixels(images, self.image_size).to(self.device), prompts)

    def score_pixels(self, pixels: Tensor, prompts: list[str]) -> Tensor:
        """exp(logit_scale) * cosine of the image and text embeddings, from the model's input pixels."""
        dtype = self.clip.visual_projection.weight.dtype
        tokens = self.tokenizer(
            prompts, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(pixels.device)
        f_img = self.clip.get_image_features(pixel_values=pixels.to(dtype)).pooler_output
        f_txt = self.clip.get_text_features(**tokens).pooler_output
        f_img = f_img / f_img.norm(dim=-1, keepdim=True)
        f_txt = f_txt / f_txt.norm(dim=-1, keepdim=True)
        return (self.clip.logit_scale.exp() * (f_img * f_txt).sum(dim=-1)).float()


def check_layout(path, base_path=None, field: str = "reward.path") -> tuple[Path, Path]:
    """Validate a saved CLIPModel directory and a tokenizer directory before loading anything."""
    model_dir = require_dir(path, field, "a local PickScore_v1 directory (config.json and weights)", ("config.json",))
    if not any((model_dir / name).is_file() for name in WEIGHT_FILES):
        raise ConfigError(field, f"a PickScore_v1 directory with one of {', '.join(WEIGHT_FILES)}", str(model_dir))
    processor_field = "reward.base_path" if base_path is not None else field
    processor_dir = require_dir(
        base_path if base_path is not None else path, processor_field,
        "a directory with the CLIP tokenizer of laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
    )
    if not any((processor_dir / name).is_file() for name in TOKENIZER_FILES):
        raise ConfigError(processor_field, f"a CLIP tokenizer directory with {' or '.join(TOKENIZER_FILES)}",
                          str(processor_dir))
    return model_dir, processor_dir
