"""GenEval correctness as a reward: 1.0 where an image satisfies its prompt's GenEval rules, else 0.0.

Not differentiable: it is for the policy-gradient methods (GRPO), which only need reward values. A
prompt's rules (tag, include, exclude) come from its row in GenEval-format metadata (the JSONL written by
``leapbench geneval-prompts``), found by the prompt's text; the detector (Mask2Former) and the colour
classifier (CLIP ViT-L-14) are those of evaluators.geneval, so training and evaluation judge alike.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from evaluators.rewards.base import Reward


class GenEvalReward(Reward):
    name, differentiable = "geneval", False

    def __init__(self, detector, colour_classifier, rows: list[dict]):
        super().__init__()
        self.detector, self.colour_classifier = detector, colour_classifier
        self.rows = {row["prompt"]: row for row in rows}

    @classmethod
    def from_paths(cls, detector: str, clip: str, metadata: str, device: str | torch.device = "cpu",
                   clip_model: str = "ViT-L-14") -> "GenEvalReward":
        from evaluators.geneval import ClipColourClassifier, Mask2FormerDetector, load_metadata

        return cls(Mask2FormerDetector(detector, device), ClipColourClassifier(clip, clip_model, device=device),
                   load_metadata(metadata))

    @torch.no_grad()
    def forward(self, images: Tensor, prompts: list[str]) -> Tensor:
        from evaluators.geneval.score import score_pil

        self.check_inputs(images, prompts)
        missing = [p for p in prompts if p not in self.rows]
        if missing:
            raise KeyError(f"GenEval reward: no metadata row for prompt {missing[0]!r} (reward.metadata)")
        pixels = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
        correct = [score_pil(Image.fromarray(np.ascontiguousarray(p.numpy())), self.rows[prompt], self.detector,
                             self.colour_classifier)[0] for p, prompt in zip(pixels, prompts)]
        return torch.tensor(correct, dtype=torch.float32, device=images.device)
