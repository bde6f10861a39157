"""The training path's torch preprocessing against the evaluation path's official one (evaluators.rewards.official,
itself checked against the official packages by tests/evaluators/parity), image by image.

HPSv2 resizes a float tensor in both (torchvision's resize is F.interpolate with antialias, unclamped): equal to
float precision. The others resize the 8-bit PIL image officially.

Tolerance: PIL resamples uint8 images in two separable passes (horizontal, then vertical) and rounds to
integers after each, which a differentiable path cannot do: the first rounding (0.5/255) passes through the
second filter (sum of |weights| about 1.1) and the second adds 0.5/255, so a resized pixel may differ by
about 1.05/255 in [0, 1] units, 0.016 after dividing by the smallest OpenAI std (0.2613). We allow
1.5/255/0.2613 = 0.0225 on the maximum and 0.005 on the mean absolute difference (a uniform rounding error
has mean |e| = 0.25/255, 0.0037 after normalising), twice that when the official path chains two resizes.
A wrong filter is far above both (bilinear: max 0.16, mean 0.026; bicubic without antialias: 0.10, 0.015).
Without a resize (the image is already at the model's size) the pipelines agree to float precision (1e-6).
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from evaluators.rewards.hpsv3 import PIXELS, pixel_values
from evaluators.rewards.official import hpsv2_pixels, hpsv3_pixels, imagereward_pixels, pickscore_pixels
from evaluators.rewards.transforms import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    center_crop,
    normalize,
    resize_longest_and_pad,
    resize_shortest,
)
from tests.evaluators.rewards.official import as_tensor, smooth_image

RESIZED_MAX = 1.5 / 255 / 0.2613
RESIZED_MEAN = 0.005
EXACT = 1e-6


def assert_close_after_resize(ours: torch.Tensor, official: torch.Tensor, resizes: int = 1) -> None:
    """``resizes``: how many PIL resizes the official path chains (each adds its own rounding)."""
    assert ours.shape == official.shape
    diff = (ours - official).abs()
    assert diff.max().item() < resizes * RESIZED_MAX, diff.max().item()
    assert diff.mean().item() < resizes * RESIZED_MEAN, diff.mean().item()


@pytest.mark.parametrize("height,width", [(256, 320), (512, 512), (300, 200), (100, 150)])
def test_hpsv2_resize_and_pad_equals_official(height, width):
    """No clamp after the resize: HPSv2's ResizeMaxSize overshoots [0, 1] on sharp edges, and so do we."""
    image = smooth_image(height, width)
    ours = normalize(resize_longest_and_pad(as_tensor(image), 224), OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)
    assert (ours - hpsv2_pixels([image])).abs().max().item() < EXACT


def test_hpsv2_keeps_the_overshoot_of_a_sharp_edge():
    edge = Image.fromarray((torch.arange(300) >= 150).to(torch.uint8).mul(255).view(1, 300, 1).expand(300, 300, 3)
                           .contiguous().numpy())
    x = resize_longest_and_pad(as_tensor(edge), 224)
    assert x.min().item() < -1e-3 and x.max().item() > 1 + 1e-3  # a clamp would give exactly 0 and 1


@pytest.mark.parametrize("height,width", [(256, 323), (512, 512), (301, 224), (160, 200)])
def test_imagereward_resize_and_crop_matches_official(height, width):
    image = smooth_image(height, width, seed=1)
    ours = normalize(center_crop(resize_shortest(as_tensor(image), 224), 224, "round"),
                     OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)
    assert_close_after_resize(ours, imagereward_pixels([image]))


@pytest.mark.parametrize("height,width", [(256, 323), (512, 512), (224, 301)])
def test_pickscore_resize_and_crop_matches_official(height, width):
    image = smooth_image(height, width, seed=2)
    ours = normalize(center_crop(resize_shortest(as_tensor(image), 224), 224, "floor"),
                     OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)
    assert_close_after_resize(ours, pickscore_pixels([image]))


def test_without_resize_pipelines_agree_exactly():
    image = smooth_image(224, 224, seed=3)
    x = as_tensor(image)
    ours = normalize(x, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)
    for official in (hpsv2_pixels([image]), imagereward_pixels([image]), pickscore_pixels([image])):
        assert (ours - official).abs().max().item() < EXACT


def test_centre_crop_rounding_differs_between_torchvision_and_hf():
    """An odd margin of 3: torchvision crops from int(round(1.5)) = 2, HF from 3 // 2 = 1."""
    x = torch.arange(7.0).view(1, 1, 1, 7).expand(1, 3, 7, 7)
    assert center_crop(x, 4, "round")[0, 0, 0, 0].item() == 2.0
    assert center_crop(x, 4, "floor")[0, 0, 0, 0].item() == 1.0


def test_hpsv3_pixel_values_match_qwen2vl_image_processor():
    """Same layout as Qwen2VLImageProcessor on a 448 x 448 image (no resize): float-exact."""
    image = smooth_image(448, 448, seed=4)
    official = Qwen2VLImageProcessorPil(min_pixels=PIXELS, max_pixels=PIXELS)(images=[image, image],
                                                                              return_tensors="pt")
    ours, grid = pixel_values(torch.cat([as_tensor(image)] * 2))
    assert grid.tolist() == official.image_grid_thw.tolist() == [[1, 32, 32]] * 2
    assert ours.shape == official.pixel_values.shape == (2 * 1024, 3 * 2 * 14 * 14)
    assert (ours - official.pixel_values).abs().max().item() < EXACT


@pytest.mark.parametrize("height,width", [(512, 512), (600, 480), (480, 600)])
def test_hpsv3_resize_matches_the_official_pil_resize(height, width):
    """HPSv3's fetch_image resizes with PIL (bicubic) to smart_resize(H, W); the processor's own smart_resize
    (min 3136, max 12845056 pixels) keeps that size: one rounding."""
    image = smooth_image(height, width, seed=5)
    ours, grid = pixel_values(as_tensor(image))
    official, official_grid = hpsv3_pixels([image])
    assert grid.tolist() == official_grid.tolist()
    assert_close_after_resize(ours, official)


def test_preprocessing_is_differentiable():
    x = as_tensor(smooth_image(256, 320)).requires_grad_(True)
    y = resize_longest_and_pad(x, 224).sum() + center_crop(resize_shortest(x, 224), 224).sum()
    y = y + pixel_values(x)[0].sum()
    y.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
