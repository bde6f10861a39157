"""GenEval (Ghosh et al. 2023, djghosh13/geneval): prompt generation, metadata, scoring rules, detectors.

The rules are pure functions; the detectors (GenEval's mmdet checkpoint converted to transformers' Mask2Former, or
another transformers Mask2Former) and the colour classifier wrap transformers and open_clip models.
"""

from evaluators.geneval.colour import ClipColourClassifier, paste_crop
from evaluators.geneval.detectors import (
    Detector,
    Mask2FormerDetector,
    OfficialDetector,
    check_detector_path,
    coco_label_map,
    load_detector,
)
from evaluators.geneval.metadata import load_evaluation_metadata, load_metadata, write_metadata
from evaluators.geneval.prompts import PAPER_RATIOS, allocate, generate_suite, generate_training_prompts
from evaluators.geneval.rules import Detection, RuleConfig, evaluate, relative_position, select_detections
from evaluators.geneval.score import score_folder, summarize, write_prompt_folder, write_results
from evaluators.geneval.vocab import CLASSES, COLORS, POSITIONS, TAGS

__all__ = [
    "CLASSES", "COLORS", "POSITIONS", "TAGS", "PAPER_RATIOS",
    "Detection", "RuleConfig", "evaluate", "relative_position", "select_detections",
    "load_metadata", "load_evaluation_metadata", "write_metadata",
    "allocate", "generate_suite", "generate_training_prompts",
    "Detector", "Mask2FormerDetector", "OfficialDetector", "check_detector_path", "coco_label_map", "load_detector",
    "ClipColourClassifier", "paste_crop",
    "score_folder", "summarize", "write_prompt_folder", "write_results",
]
