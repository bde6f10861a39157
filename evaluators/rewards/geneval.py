"""GenEval correctness as a reward: 1.0 where an image satisfies its prompt's GenEval rules, else 0.0.

Not differentiable: it is for the policy-gradient methods (GRPO), which only need reward values. A
prompt's rules (tag, include, exclude) come from its row in GenEval-format metadata (the JSONL written by
``leapbench geneval-prompts``), found by the prompt's text; the detector (GenEval's Mask2Former checkpoint, or a
transformers Mask2Former folder) and the colour classifier (CLIP ViT-L-14) are those of evaluators.geneval, so
training and evaluation judge alike.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from evaluators.geneval import ClipColourClassifier, check_detector_path, load_detector, load_metadata
from evaluators.geneval.score import score_pil
from evaluators.rewards.base import Reward, require_file


class GenEvalReward(Reward):
    name, differentiable = "geneval", False

    def __init__(self, detector, colour_classifier, rows: list[dict]):
        super().__init__()
        self.detector, self.colour_classifier = detector, colour_classifier
        self.rows = {row["prompt"]: row for row in rows}

    @property
    def protocol(self) -> str:  # the detector's: "official" for GenEval's own checkpoint
        return getattr(self.detector, "protocol", "")

    @classmethod
    def check(cls, cfg, prefix: str) -> None:
        check_detector_path(cfg.path, f"{prefix}.path")
        require_file(cfg.base_path, f"{prefix}.base_path", "the open_clip ViT-L-14 checkpoint file")
        require_file(cfg.metadata, f"{prefix}.metadata", "GenEval-format metadata (.jsonl) of the prompts")
        load_metadata(cfg.metadata)

    @classmethod
    def build(cls, cfg, device: str | torch.device) -> GenEvalReward:
        return cls.from_paths(cfg.path, cfg.base_path, cfg.metadata, device, clip_model=cfg.clip_model)

    @classmethod
    def from_paths(cls, detector: str, clip: str, metadata: str, device: str | torch.device = "cpu",
                   clip_model: str = "ViT-L-14") -> GenEvalReward:
        return cls(load_detector(detector, device), ClipColourClassifier(clip, clip_model, device=device),
                   load_metadata(metadata))

    @torch.no_grad()
    def forward(self, images: Tensor, prompts: list[str]) -> Tensor:
        self.check_inputs(images, prompts)
        missing = [p for p in prompts if p not in self.rows]
        if missing:
            raise KeyError(f"GenEval reward: no metadata row for prompt {missing[0]!r} (reward.metadata)")
        pixels = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
        correct = [score_pil(Image.fromarray(np.ascontiguousarray(p.numpy())), self.rows[prompt], self.detector,
                             self.colour_classifier)[0] for p, prompt in zip(pixels, prompts)]
        return torch.tensor(correct, dtype=torch.float32, device=images.device)
