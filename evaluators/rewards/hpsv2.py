"""HPS v2.1 (tgxs002/HPSv2): an open_clip ViT-H-14 fine-tuned on human preferences.

score = <f_img / |f_img|, f_txt / |f_txt|>, the raw cosine (about 0.25-0.33), where the image is resized so its
longest side is 224 (bicubic), zero-padded to 224 x 224 centred, and normalised with the OpenAI CLIP mean/std
(``ResizeMaxSize`` in HPSv2's open_clip fork: a float-tensor resize, not clamped). The weights are
``HPS_v2.1_compressed.pt['state_dict']``, loaded into open_clip's own ``ViT-H-14`` (same 686 keys and shapes).

``forward`` (training) resizes the image tensor; ``evaluate`` runs the official ``preprocess_val`` on the
decoded images and, on a GPU, the official precision: ``hpsv2.img_score.score`` computes the features and
``image_features @ text_features.T`` under ``torch.cuda.amp.autocast()``, so its score is a float16 number
(steps of 2^-12 = 0.00024 near 0.3). On a CPU the official code runs in float32, and so does ``evaluate``.
"""

from __future__ import annotations

from pathlib import Path

import open_clip
import torch
from PIL import Image
from torch import Tensor

from evaluators.rewards.base import Reward, on_device, require_file
from evaluators.rewards.official import hpsv2_pixels
from evaluators.rewards.transforms import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, normalize, resize_longest_and_pad

CHECKPOINT_NAME = "HPS_v2.1_compressed.pt"


class HPSv2(Reward):
    name = "hpsv2"
    differentiable = True
    protocol = "official"

    def __init__(self, clip: torch.nn.Module, tokenizer) -> None:
        super().__init__()
        self.clip = clip
        self.tokenizer = tokenizer
        size = clip.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.freeze()

    @classmethod
    def check(cls, cfg, prefix: str) -> None:
        resolve_checkpoint(cfg.path, f"{prefix}.path")

    @classmethod
    def build(cls, cfg, device: str | torch.device) -> HPSv2:
        return on_device(cls.from_checkpoint(cfg.path), cfg, device)

    @classmethod
    def from_config(cls, model_name: str) -> HPSv2:
        """A randomly initialised open_clip model registered under ``model_name`` (tests use tiny configs)."""
        clip = open_clip.create_model(model_name, pretrained=None)
        return cls(clip, open_clip.get_tokenizer(model_name))

    @classmethod
    def from_checkpoint(cls, path: str | Path, model_name: str = "ViT-H-14") -> HPSv2:
        """Load ``HPS_v2.1_compressed.pt`` (a file, or a directory holding it) into open_clip's ``model_name``."""
        file = resolve_checkpoint(path)
        state = torch.load(file, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        clip = open_clip.create_model(model_name, pretrained=None)
        clip.load_state_dict(state, strict=True)
        return cls(clip, open_clip.get_tokenizer(model_name))

    def forward(self, images: Tensor, prompts: list[str]) -> Tensor:
        self.check_inputs(images, prompts)
        x = normalize(resize_longest_and_pad(images.float(), self.image_size), OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)
        f_img, f_txt = self.features(x, prompts)
        return (f_img * f_txt).sum(dim=-1).float()

    @torch.no_grad()
    def evaluate(self, images: list[Image.Image], prompts: list[str]) -> Tensor:
        x = hpsv2_pixels(images, self.image_size).to(self.device)
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.device.type == "cuda"):
            f_img, f_txt = self.features(x, prompts)
            return torch.diagonal(f_img @ f_txt.T).float()

    def features(self, pixels: Tensor, prompts: list[str]) -> tuple[Tensor, Tensor]:
        """Normalised image and text features (open_clip's ``encode_*(normalize=True)``, as the fork's
        ``model(image, text)`` with output_dict)."""
        dtype = next(self.clip.parameters()).dtype
        f_img = self.clip.encode_image(pixels.to(dtype), normalize=True)
        f_txt = self.clip.encode_text(self.tokenizer(prompts).to(pixels.device), normalize=True)
        return f_img, f_txt


def resolve_checkpoint(path: str | Path | None, field: str = "reward.path") -> Path:
    """``path`` itself if it is a file, else ``path/HPS_v2.1_compressed.pt``; ConfigError if neither exists."""
    expected = f"the HPS v2.1 checkpoint file or a directory holding {CHECKPOINT_NAME}"
    if path is not None and Path(path).expanduser().is_dir():
        return require_file(Path(path).expanduser() / CHECKPOINT_NAME, field, expected)
    return require_file(path, field, expected)
