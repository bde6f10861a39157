"""Object detectors for GenEval behind one protocol: `detect(image) -> list[Detection]` with COCO names.

GenEval (evaluation/evaluate_images.py) uses mmdet's Mask2Former Swin-S instance model
(mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco). ``OfficialDetector`` (the default) runs that checkpoint in
transformers' Mask2Former through LeapBench's key map (``mmdet_checkpoint``) with mmdet 2.x's pre- and
post-processing (``mmdet_pipeline``): parity-tested against mmdet's own forward on the same weights
(evaluators/parity/references/geneval.json), protocol ``official``. ``Mask2FormerDetector`` runs another
transformers Mask2Former folder (e.g. facebook/mask2former-swin-small-coco-instance saved locally) with
transformers' processor and ``post_process_instance_segmentation`` (mmdet's scores, but masks binarised at
384 x 384 before resizing and the original Mask2Former release weights, not GenEval's): protocol
``hf-mask2former``, a different detector. ``load_detector`` picks one by the path: a checkpoint file or a
folder. All detections are returned; GenEval's thresholds are applied by `rules.select_detections`.
"""

import os
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image
from transformers import AutoImageProcessor, Mask2FormerForUniversalSegmentation

from benchmark.core.errors import ConfigError
from evaluators.geneval.mmdet_checkpoint import load_model
from evaluators.geneval.mmdet_pipeline import instances, preprocess
from evaluators.geneval.rules import Detection
from evaluators.geneval.vocab import CLASSES

# Spellings used by other COCO label lists for GenEval's class names.
ALIASES = {
    "mouse": "computer mouse", "remote": "tv remote", "keyboard": "computer keyboard", "tvmonitor": "tv",
    "tv monitor": "tv", "motorbike": "motorcycle", "aeroplane": "airplane", "sofa": "couch",
    "pottedplant": "potted plant", "diningtable": "dining table", "hair dryer": "hair drier",
    "doughnut": "donut", "cellphone": "cell phone",
}


class Detector(Protocol):
    def detect(self, image: Image.Image) -> list[Detection]: ...


def coco_label_map(id2label: dict) -> dict[int, str]:
    """Model label id -> GenEval class name.

    Labels whose name (lower-cased, '-'/'_' as spaces, ALIASES applied) is a GenEval class map by name and
    the rest (e.g. panoptic "stuff" labels) are dropped; a model with exactly 80 labels must match all 80
    names, or none, and then maps by position in COCO order (GenEval's object_names.txt order).
    """
    by_name = {}
    for idx, name in id2label.items():
        key = str(name).lower().replace("-", " ").replace("_", " ").strip()
        key = ALIASES.get(key, key)
        if key in CLASSES:
            by_name[int(idx)] = key
    if by_name and len(id2label) == len(CLASSES) and len(by_name) < len(CLASSES):
        unmatched = sorted(str(n) for i, n in id2label.items() if int(i) not in by_name)
        raise ConfigError("detector labels", "all 80 COCO class names (or none: positional)", unmatched)
    if by_name:
        return by_name
    if len(id2label) == len(CLASSES):
        return {int(idx): CLASSES[int(idx)] for idx in id2label}
    raise ConfigError("detector labels", f"COCO class names or exactly {len(CLASSES)} labels", dict(id2label))


def mask_to_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """mmdet's mask2bbox: (min x, min y, max x + 1, max y + 1) of the mask's pixels; zeros when empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return (0.0, 0.0, 0.0, 0.0)
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


def _check_dir(path: str | os.PathLike, field: str, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise ConfigError(field, what, str(path))
    return path


class Mask2FormerDetector:
    """transformers Mask2Former instance segmentation loaded from a local folder (config, weights, processor)."""

    protocol = "hf-mask2former"

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu"):
        path = _check_dir(path, "geneval.detector_path", "a local Mask2Former folder (save_pretrained output)")
        self.device = torch.device(device)
        self.model = Mask2FormerForUniversalSegmentation.from_pretrained(path).to(self.device).eval()
        self.processor = AutoImageProcessor.from_pretrained(path)
        self.label_map = coco_label_map(self.model.config.id2label)

    @torch.no_grad()
    def detect(self, image: Image.Image) -> list[Detection]:
        image = image.convert("RGB")
        inputs = self.processor(images=image, return_tensors="pt").to(self.device)
        # One image per call: the processor resizes to a multiple of its size_divisor and adds no padding,
        # so the masks it resizes back to (height, width) stay aligned with the image.
        outputs = self.model(**inputs)
        result = self.processor.post_process_instance_segmentation(
            outputs, threshold=0.0, target_sizes=[(image.height, image.width)], return_binary_maps=True
        )[0]
        detections = []
        for k, seg in enumerate(result["segments_info"]):
            name = self.label_map.get(seg["label_id"])
            if name is None:
                continue
            mask = result["segmentation"][k].cpu().numpy() > 0.5
            detections.append(Detection(name, float(seg["score"]), mask_to_box(mask), mask))
        return detections


class OfficialDetector:
    """GenEval's mmdet checkpoint (a .pth file, mmdet 2.x or 3.x names) converted to transformers' Mask2Former."""

    protocol = "official"

    def __init__(self, checkpoint: str | os.PathLike, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.model = load_model(checkpoint).to(self.device)

    @torch.no_grad()
    def detect(self, image: Image.Image) -> list[Detection]:
        rgb = np.asarray(image.convert("RGB"))
        pixels, resized = preprocess(rgb)
        out = self.model(pixel_values=pixels.to(self.device))
        found = instances(out.class_queries_logits[0], out.masks_queries_logits[0], tuple(pixels.shape[-2:]),
                          resized, rgb.shape[:2])
        masks = found["masks"].cpu().numpy()
        return [Detection(CLASSES[int(label)], float(score), tuple(float(v) for v in box), mask)
                for label, score, box, mask in zip(found["labels"].tolist(), found["scores"].cpu().numpy(),
                                                   found["boxes"].cpu().numpy(), masks)]


def check_detector_path(path: str | os.PathLike, field: str = "geneval.detector") -> Path:
    """GenEval's checkpoint file or a transformers Mask2Former folder (config.json); ConfigError otherwise."""
    path = Path(str(path))
    if not (path.is_file() or (path / "config.json").is_file()):
        raise ConfigError(field, "GenEval's mmdet checkpoint (.pth, protocol official) or a transformers Mask2Former "
                                 "folder (config.json, protocol hf-mask2former)", str(path))
    return path


def load_detector(path: str | os.PathLike, device: str | torch.device = "cpu",
                  field: str = "geneval.detector") -> OfficialDetector | Mask2FormerDetector:
    """``OfficialDetector`` for a checkpoint file, ``Mask2FormerDetector`` for a transformers folder."""
    path = check_detector_path(path, field)
    return OfficialDetector(path, device) if path.is_file() else Mask2FormerDetector(path, device)
