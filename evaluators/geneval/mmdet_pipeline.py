"""mmdet 2.x's test-time steps around GenEval's Mask2Former, transcribed so that the converted model
(``mmdet_checkpoint``) gives mmdet's own detections.

Pre-processing: GenEval calls ``inference_detector(model, filepath)`` with the test pipeline of mmdet 2.x's
configs/mask2former/mask2former_r50_lsj_8x2_50e_coco.py (the base of GenEval's Swin-S config, v2.25 on):
LoadImageFromFile (uint8, BGR), Resize(img_scale=(1333, 800), keep_ratio=True) = mmcv.imrescale with cv2's
bilinear resize of the uint8 image, Pad(size_divisor=32, pad_val=128) on the uint8 image, then Normalize
(mmcv.imnormalize_: BGR -> RGB, cv2.subtract of the mean, cv2.multiply by 1 / std, in float32). The resize and
the normalisation per channel do not depend on the channel order, so an RGB image goes through the same calls.

Post-processing: MaskFormerHead.simple_test upsamples the last layer's mask logits bilinearly to the padded
input, MaskFormerFusionHead.simple_test crops them to the resized image and resizes them to the original size,
and instance_postprocess keeps the top 100 (query, class) pairs of softmax(class logits) without the no-object
column (``topk(sorted=False)``), scores each as class probability x mean sigmoid over its mask (logit > 0) and
boxes the mask (mask2bbox).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

SCALE = (1333, 800)
SIZE_DIVISOR, PAD_VALUE = 32, 128
MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)  # RGB, as mmdet's Normalize stores it
STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)
MAX_PER_IMAGE = 100


def rescale_size(height: int, width: int) -> tuple[int, int]:
    """mmcv.rescale_size with a (1333, 800) bound: the largest keep-ratio size inside it, as (height, width)."""
    factor = min(max(SCALE) / max(height, width), min(SCALE) / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def preprocess(rgb: np.ndarray) -> tuple[Tensor, tuple[int, int]]:
    """(1, 3, H', W') normalised, padded model input and the resized (unpadded) size of an RGB uint8 image."""
    height, width = rescale_size(*rgb.shape[:2])
    image = cv2.resize(np.ascontiguousarray(rgb), (width, height), interpolation=cv2.INTER_LINEAR)
    padded_h, padded_w = (-(-n // SIZE_DIVISOR) * SIZE_DIVISOR for n in (height, width))
    image = cv2.copyMakeBorder(image, 0, padded_h - height, 0, padded_w - width, cv2.BORDER_CONSTANT,
                               value=(PAD_VALUE,) * 3).astype(np.float32)
    cv2.subtract(image, np.float64(MEAN.reshape(1, -1)), image)
    cv2.multiply(image, 1 / np.float64(STD.reshape(1, -1)), image)
    return torch.from_numpy(image.transpose(2, 0, 1).copy())[None], (height, width)


def mask_boxes(masks: Tensor) -> Tensor:
    """mmdet's mask2bbox: (x1, y1, x2 + 1, y2 + 1) of each boolean mask's pixels, zeros for an empty one."""
    boxes = masks.new_zeros((masks.shape[0], 4), dtype=torch.float32)
    x_any, y_any = masks.any(dim=1), masks.any(dim=2)
    for i in range(masks.shape[0]):
        xs, ys = torch.where(x_any[i])[0], torch.where(y_any[i])[0]
        if len(xs) and len(ys):
            boxes[i] = torch.tensor([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1], dtype=torch.float32)
    return boxes


def upsample(mask_logits: Tensor, padded: tuple[int, int], resized: tuple[int, int], original: tuple[int, int]):
    """Mask logits (K, h, w) at the model's output size -> (K, H, W) at the original image size."""
    logits = F.interpolate(mask_logits[None], size=padded, mode="bilinear", align_corners=False)[0]
    logits = logits[:, : resized[0], : resized[1]]
    return F.interpolate(logits[:, None], size=original, mode="bilinear", align_corners=False)[:, 0]


def instances(class_logits: Tensor, mask_logits: Tensor, padded: tuple[int, int], resized: tuple[int, int],
              original: tuple[int, int], chunk: int = 16) -> dict[str, Tensor]:
    """mmdet's instances of one image from the model's last-layer logits: class_logits (Q, C + 1) and
    mask_logits (Q, h, w). Returns labels, queries, scores (K,), boxes (K, 4) and masks (K, H, W) bool with
    K = min(100, Q * C), in topk's order. Only the selected queries' masks are upsampled, each once, in chunks:
    every channel is interpolated on its own, so this equals mmdet's upsampling of all queries at once."""
    num_classes = class_logits.shape[-1] - 1
    probs = F.softmax(class_logits, dim=-1)[:, :-1]
    probs, top = probs.flatten().topk(min(MAX_PER_IMAGE, probs.numel()), sorted=False)
    labels, queries = top % num_classes, top // num_classes
    selected, inverse = queries.unique(return_inverse=True)
    masks, mask_scores = [], []
    for start in range(0, len(selected), chunk):
        logits = upsample(mask_logits[selected[start:start + chunk]], padded, resized, original)
        binary = (logits > 0).float()
        mask_scores.append((logits.sigmoid() * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6))
        masks.append(binary.bool())
    masks, mask_scores = torch.cat(masks)[inverse], torch.cat(mask_scores)[inverse]
    return {"labels": labels, "queries": queries, "scores": probs * mask_scores, "boxes": mask_boxes(masks),
            "masks": masks}
