"""The official preprocessing pipelines of the reward models, transcribed with the file each comes from, and the
test images they are compared on (shared by the preprocessing and the score tests)."""

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from evaluators.rewards.transforms import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD


def smooth_image(height: int, width: int, seed: int = 0) -> Image.Image:
    """Random RGB texture at a quarter of the resolution, upsampled: detailed enough that a wrong filter, size or
    crop offset shows, smooth enough to be resampled like a picture."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, height // 4, width // 4, generator=g)
    high = torch.nn.functional.interpolate(low, size=(height, width), mode="bilinear", align_corners=False)
    array = (high[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(array)


def as_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255).unsqueeze(0)


def hpsv2_official(image: Image.Image, size: int = 224) -> torch.Tensor:
    """HPSv2's open_clip fork: ResizeMaxSize(size, fill=0), ToTensor, Normalize (hpsv2/src/open_clip/transform.py)."""
    width, height = image.size
    scale = size / max(height, width)
    if scale != 1.0:
        new = tuple(round(d * scale) for d in (height, width))
        image = TF.resize(image, new, InterpolationMode.BICUBIC)
        pad_h, pad_w = size - new[0], size - new[1]
        image = TF.pad(image, [pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2], fill=0)
    return Normalize(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)(ToTensor()(image.convert("RGB"))).unsqueeze(0)


def imagereward_official(image: Image.Image, size: int = 224) -> torch.Tensor:
    """ImageReward/ImageReward.py ``_transform(224)``."""
    transform = Compose([Resize(size, interpolation=InterpolationMode.BICUBIC), CenterCrop(size),
                         lambda im: im.convert("RGB"), ToTensor(), Normalize(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)])
    return transform(image).unsqueeze(0)


def pickscore_official(image: Image.Image) -> torch.Tensor:
    """The PIL CLIP processor with laion ViT-H-14's settings (shortest edge 224, crop 224)."""
    return CLIPImageProcessorPil()(images=[image], return_tensors="pt").pixel_values
