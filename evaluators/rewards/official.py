"""The official preprocessing of each scorer, for evaluation: decoded 8-bit images in, model pixels out.

Training rewards resize float tensors (``transforms.py``, differentiable); the official code resizes the decoded
image, mostly with PIL, which rounds to 8 bits after each pass. Evaluation must give the official number, so
``Reward.evaluate`` preprocesses here with the same library calls as the official code:

- HPSv2 (hpsv2 1.2.0, ``src/open_clip/transform.py``: ``image_transform(..., resize_longest_max=True)``):
  ``ToTensor`` first, then ``ResizeMaxSize``: torchvision's *tensor* resize (bicubic, antialiased since
  torchvision 0.17, no clamp: values overshoot [0, 1]), zero padding centred, ``Normalize``.
- ImageReward (``ImageReward/ImageReward.py: _transform(224)``): torchvision ``Resize(224, BICUBIC)`` and
  ``CenterCrop(224)`` on the PIL image (PIL's bicubic, 8-bit), ``ToTensor``, ``Normalize``.
- PickScore (its README: ``AutoProcessor`` of laion/CLIP-ViT-H-14-laion2B-s32B-b79K, transformers 4.27's PIL
  ``CLIPImageProcessor``): shortest side to 224 with PIL bicubic, centre crop 224 (offset (d // 2)), / 255,
  OpenAI mean / std; transformers' ``CLIPImageProcessorPil`` is that processor.
- HPSv3 (hpsv3 1.0.0, ``dataset/utils.py: fetch_image``): PIL bicubic resize to ``smart_resize(H, W, 28,
  min_pixels = max_pixels = 256 * 28 * 28)``, then Qwen2-VL-7B-Instruct's ``Qwen2VLImageProcessor``
  (min_pixels 3136, max_pixels 12845056: its own smart_resize keeps that size), which rescales, normalises
  and lays out the patches; ``Qwen2VLImageProcessorPil`` is that processor.
"""

from __future__ import annotations

import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import Tensor
from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil, smart_resize

from evaluators.rewards.transforms import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

HPSV3_PIXELS = 256 * 28 * 28  # HPSv3's prepare_batch: min_pixels = max_pixels
QWEN2VL_MIN_PIXELS, QWEN2VL_MAX_PIXELS = 3136, 12845056  # Qwen2-VL-7B-Instruct's preprocessor_config.json


def rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def hpsv2_pixels(images: list[Image.Image], size: int = 224) -> Tensor:
    """HPSv2's ``preprocess_val``: (B, 3, size, size) float32.

    The official transform keeps an RGBA image's alpha channel (the model then fails); we take RGB. An image
    whose longest side already equals ``size`` is not resized nor padded by the official code (a non-square
    one then fails in the model); we pad it, which is what the transform means.
    """
    out = []
    for image in images:
        x = TF.to_tensor(rgb(image))
        h, w = x.shape[-2:]
        scale = size / max(h, w)
        new_h, new_w = (round(h * scale), round(w * scale)) if scale != 1.0 else (h, w)
        if scale != 1.0:
            x = TF.resize(x, [new_h, new_w], InterpolationMode.BICUBIC, antialias=True)
        pad_h, pad_w = size - new_h, size - new_w
        x = TF.pad(x, [pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2], fill=0)
        out.append(TF.normalize(x, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD))
    return torch.stack(out)


def imagereward_pixels(images: list[Image.Image], size: int = 224) -> Tensor:
    """ImageReward's ``_transform(224)``: (B, 3, size, size) float32."""
    transform = Compose([Resize(size, interpolation=InterpolationMode.BICUBIC), CenterCrop(size), rgb, ToTensor(),
                         Normalize(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)])
    return torch.stack([transform(image) for image in images])


def pickscore_pixels(images: list[Image.Image], size: int = 224) -> Tensor:
    """The laion CLIP processor's ``pixel_values``: (B, 3, size, size) float32."""
    processor = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    return processor(images=[rgb(image) for image in images], return_tensors="pt").pixel_values


def hpsv3_pixels(images: list[Image.Image], patch: int = 14, merge: int = 2, temporal: int = 2
                 ) -> tuple[Tensor, Tensor]:
    """``pixel_values`` (sum of patches, 3 * temporal * patch^2) and ``image_grid_thw`` (B, 3) as HPSv3's
    ``prepare_batch`` makes them."""
    factor = patch * merge
    fetched = []
    for image in images:
        image = rgb(image)
        h, w = smart_resize(image.height, image.width, factor, HPSV3_PIXELS, HPSV3_PIXELS)
        fetched.append(image.resize((w, h), Image.Resampling.BICUBIC))
    processor = Qwen2VLImageProcessorPil(min_pixels=QWEN2VL_MIN_PIXELS, max_pixels=QWEN2VL_MAX_PIXELS,
                                         patch_size=patch, merge_size=merge, temporal_patch_size=temporal)
    batch = processor(images=fetched, return_tensors="pt")
    return batch.pixel_values, batch.image_grid_thw
