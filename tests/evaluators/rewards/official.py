"""Test images shared by the preprocessing and the score tests."""

import numpy as np
import torch
from PIL import Image


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
