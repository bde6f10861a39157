"""Object detectors for GenEval behind one protocol: `detect(image) -> list[Detection]` with COCO names.

GenEval (evaluation/evaluate_images.py) uses mmdet's Mask2Former Swin-S instance model
(mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco). The default backend here is the same architecture in
transformers (Mask2FormerForUniversalSegmentation, e.g. facebook/mask2former-swin-small-coco-instance saved
locally); its `post_process_instance_segmentation` computes mmdet's instance scores (class probability times
mean mask probability over the top-`num_queries` query/class pairs). Boxes come from the masks as in mmdet's
mask2bbox. All detections are returned; GenEval's thresholds are applied by `rules.select_detections`.
Known differences from GenEval's numbers: the transformers weights are the original Mask2Former release,
not mmdet's retrained checkpoint, and transformers binarises masks at 384 x 384 before resizing them to the
image (mmdet resizes the logits first), so boxes are quantised to about image_size / 384 pixels. Its scores
carry protocol ``hf-mask2former`` (a different detector from GenEval's); ``MMDetDetector`` with GenEval's
checkpoint is GenEval's own detector (protocol ``official``).
"""

import os
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image
from transformers import AutoImageProcessor, Mask2FormerForUniversalSegmentation

from benchmark.core.errors import ConfigError
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


MMDET_CONFIGS = (
    "mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.py",  # mmdet 2.x name, as in GenEval
    "mask2former_swin-s-p4-w7-224_8xb2-lsj-50e_coco.py",  # the same config renamed in mmdet 3.x
)


def find_mmdet_config() -> Path:
    """GenEval's default config, from the configs shipped with the installed mmdet."""
    import mmdet  # optional dependency (GenEval's own detector), imported only when asked for

    root = Path(mmdet.__file__).resolve().parent
    for base in (root / ".mim" / "configs", root.parent / "configs"):
        for name in MMDET_CONFIGS:
            if (base / "mask2former" / name).is_file():
                return base / "mask2former" / name
    raise ConfigError("geneval.mmdet_config", f"one of {MMDET_CONFIGS} inside mmdet's configs", str(root))


def mmdet_result_to_detections(result) -> list[Detection]:
    """Convert mmdet output to Detections; label i is GenEval class i (COCO order), as in GenEval.

    mmdet 2.x returns (bbox per class: (n, 5) arrays [x1, y1, x2, y2, score], masks per class) as GenEval
    reads; mmdet 3.x returns a DetDataSample whose pred_instances hold bboxes, scores, labels and masks.
    """
    detections = []
    if hasattr(result, "pred_instances"):
        inst = result.pred_instances
        masks = inst.masks.cpu().numpy() if getattr(inst, "masks", None) is not None else None
        boxes, scores, labels = (t.cpu().numpy() for t in (inst.bboxes, inst.scores, inst.labels))
        for i, (box, score, label) in enumerate(zip(boxes, scores, labels)):
            mask = None if masks is None else masks[i].astype(bool)
            detections.append(Detection(CLASSES[int(label)], float(score), tuple(float(v) for v in box[:4]), mask))
        return detections
    bbox = result[0] if isinstance(result, tuple) else result
    segm = result[1] if isinstance(result, tuple) and len(result) > 1 else None
    for label, boxes in enumerate(bbox[: len(CLASSES)]):
        for j, row in enumerate(np.asarray(boxes)):
            mask = None if segm is None else np.asarray(segm[label][j], dtype=bool)
            detections.append(Detection(CLASSES[label], float(row[4]), tuple(float(v) for v in row[:4]), mask))
    return detections


class MMDetDetector:
    """GenEval's own detector through mmdet (optional: `mmdet` and a matching `mmcv` must be installed)."""

    protocol = "official"

    def __init__(self, checkpoint: str | os.PathLike, config: str | os.PathLike | None = None, device: str = "cpu"):
        try:
            from mmdet.apis import inference_detector, init_detector  # optional dependency, see find_mmdet_config
        except ImportError as e:
            raise ImportError(
                "The mmdet GenEval detector needs mmdet and mmcv with compiled ops (not installed by default; "
                "see notes/stack.md). Use Mask2FormerDetector (transformers) instead, or install mmdet."
            ) from e
        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise ConfigError("geneval.mmdet_checkpoint", "an existing mask2former_swin-s .pth file", str(checkpoint))
        config = find_mmdet_config() if config is None else _check_dir(config, "geneval.mmdet_config", "a config file")
        self._infer = inference_detector
        self.model = init_detector(str(config), str(checkpoint), device=device)

    def detect(self, image: Image.Image) -> list[Detection]:
        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
        return mmdet_result_to_detections(self._infer(self.model, bgr))
