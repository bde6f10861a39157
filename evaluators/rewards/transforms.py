"""Differentiable torch versions of the official preprocessing of the reward models (the training path).

Every function takes images (B, 3, H, W) in [0, 1] and is differentiable in them. The resize is bicubic with
antialias, which is PIL's bicubic filter (a = -0.5, support widened by the scale when downsampling) and
torchvision's tensor resize. HPSv2 resizes a float tensor as we do (no clamp): exact. PickScore, ImageReward
and HPSv3 resize the decoded 8-bit image with PIL, which clips to [0, 255] (we clamp) and rounds to 8 bits
after each of its two separable passes, which a differentiable path cannot do: measured 1/255 per pixel on
smooth images and up to 13/255 on noise. Evaluation therefore uses ``official.py``; the training path's gap
to the official score per reward and size is in docs/rewards.md and bounded by tests.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def resize(images: Tensor, height: int, width: int, clamp: bool = True) -> Tensor:
    """Bicubic antialiased resize to (height, width); ``clamp``: clipped to [0, 1] as PIL clips to [0, 255]
    (torchvision's float-tensor resize, HPSv2's, does not clip)."""
    if images.shape[-2:] == (height, width):
        return images
    out = F.interpolate(images, size=(height, width), mode="bicubic", align_corners=False, antialias=True)
    return out.clamp(0.0, 1.0) if clamp else out


def resize_shortest(images: Tensor, size: int) -> Tensor:
    """torchvision ``Resize(size)`` / HF ``shortest_edge``: short side -> size, long side int(size * long / short)."""
    h, w = images.shape[-2:]
    if h <= w:
        return resize(images, size, int(size * w / h))
    return resize(images, int(size * h / w), size)


def center_crop(images: Tensor, size: int, rounding: str = "round") -> Tensor:
    """Centre crop to size x size. ``rounding="round"``: torchvision's int(round(d / 2)); ``"floor"``: HF's d // 2."""
    h, w = images.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"cannot centre-crop {h}x{w} to {size}x{size}")
    if rounding == "round":
        top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    elif rounding == "floor":
        top, left = (h - size) // 2, (w - size) // 2
    else:
        raise ValueError(f"rounding must be 'round' or 'floor', got {rounding!r}")
    return images[..., top : top + size, left : left + size]


def resize_longest_and_pad(images: Tensor, size: int) -> Tensor:
    """HPSv2's ``ResizeMaxSize``: longest side -> size (round; torchvision's tensor resize, not clamped), then
    zero-pad centred (left/top get d // 2)."""
    h, w = images.shape[-2:]
    scale = size / max(h, w)
    new_h, new_w = round(h * scale), round(w * scale)
    images = resize(images, new_h, new_w, clamp=False)
    pad_h, pad_w = size - new_h, size - new_w
    return F.pad(images, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=0.0)


def normalize(images: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """(x - mean) / std per channel."""
    mean_t = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images - mean_t) / std_t
