"""UnifiedReward (CodeGoat24/UnifiedReward) as a client of an OpenAI-compatible chat server (vLLM), eval only.

Each image is sent as a PNG base64 data URL with one of the repository's pointwise prompts, decoded greedily
(temperature 0), and the score is parsed from the reply: the "ACS" prompt of UnifiedReward-2.0
(inference_qwen/UnifiedReward-2.0-inference/point_score_ACS_image_generation.py) answers
"Alignment Score (1-5): X / Coherence Score (1-5): Y / Style Score (1-5): Z"; the older pointwise prompt
(inference_qwen/image_generation/qwen_point_score_image_generation.py) answers "... Final Score: X".
Uses only the standard library (urllib).
"""

from __future__ import annotations

import base64
import io
import json
import re
import time
import urllib.error
import urllib.request
from urllib.parse import urlparse

import torch
from PIL import Image
from torch import Tensor

from benchmark.core.errors import ConfigError
from evaluators.rewards.base import Reward

ACS_PROMPT = (
    "You are presented with a generated image and its associated text caption. "
    "Your task is to analyze the image across multiple dimensions in relation to the caption. Specifically:\n"
    "Provide overall assessments for the image along the following axes (each rated from 1 to 5):\n"
    "- Alignment Score: How well the image matches the caption in terms of content.\n"
    "- Coherence Score: How logically consistent the image is (absence of visual glitches, object distortions, "
    "etc.).\n"
    "- Style Score: How aesthetically appealing the image looks, regardless of caption accuracy.\n\n"
    "Output your evaluation using the format below:\n\n"
    "Alignment Score (1-5): X\n"
    "Coherence Score (1-5): Y\n"
    "Style Score (1-5): Z\n\n"
    "Your task is provided as follows:\n"
    "Text Caption: [{prompt}]"
)
FINAL_SCORE_PROMPT = (
    "You are given a text caption and a generated image based on that caption. Your task is to evaluate this "
    "image based on two key criteria:\n"
    "1. Alignment with the Caption: Assess how well this image aligns with the provided caption. Consider the "
    "accuracy of depicted objects, their relationships, and attributes as described in the caption.\n"
    "2. Overall Image Quality: Examine the visual quality of this image, including clarity, detail preservation, "
    "color accuracy, and overall aesthetic appeal.\n"
    "Extract key elements from the provided text caption, evaluate their presence in the generated image using "
    "the format: 'element (type): value' (where value=0 means not generated, and value=1 means generated), and "
    "assign a score from 1 to 5 after 'Final Score:'.\n"
    "Your task is provided as follows:\n"
    "Text Caption: [{prompt}]"
)
_NUMBER = r"([-+]?\d+(?:\.\d+)?)"
# dimension -> (prompt template, answer pattern)
DIMENSIONS = {
    "alignment": (ACS_PROMPT, rf"Alignment Score \(1-5\):\s*{_NUMBER}"),
    "coherence": (ACS_PROMPT, rf"Coherence Score \(1-5\):\s*{_NUMBER}"),
    "style": (ACS_PROMPT, rf"Style Score \(1-5\):\s*{_NUMBER}"),
    "final": (FINAL_SCORE_PROMPT, rf"Final Score:\s*{_NUMBER}"),
}


class UnifiedRewardError(RuntimeError):
    """The server at ``url`` could not be reached or gave an answer without a score."""


class UnifiedReward(Reward):
    """Score = the number after the dimension's label in the judge's greedy answer (1-5)."""

    differentiable = False

    def __init__(self, url: str, dimension: str = "alignment", model: str = "UnifiedReward", timeout_s: float = 120.0,
                 retries: int = 3, backoff_s: float = 2.0, max_tokens: int = 4096) -> None:
        super().__init__()
        if dimension not in DIMENSIONS:
            raise ValueError(f"dimension must be one of {sorted(DIMENSIONS)}, got {dimension!r}")
        self.url = url.rstrip("/")
        self.endpoint = self.url + ("" if self.url.endswith("/chat/completions") else "/v1/chat/completions")
        self.dimension, self.model = dimension, model
        self.timeout_s, self.retries, self.backoff_s, self.max_tokens = timeout_s, retries, backoff_s, max_tokens
        self.name = f"unifiedreward_{dimension}"

    @classmethod
    def check(cls, cfg, prefix: str) -> None:
        url = urlparse(cfg.path or "")
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ConfigError(f"{prefix}.path", "the http(s) URL of an OpenAI-compatible server", cfg.path)

    @classmethod
    def build(cls, cfg, device: str | torch.device) -> UnifiedReward:
        return cls(cfg.path, cfg.dimension)

    @torch.no_grad()
    def forward(self, images: Tensor, prompts: list[str]) -> Tensor:
        self.check_inputs(images, prompts)
        template, pattern = DIMENSIONS[self.dimension]
        scores = []
        for image, prompt in zip(images, prompts):
            answer = self.ask(image, template.format(prompt=prompt))
            match = re.search(pattern, answer)
            if match is None:
                raise UnifiedRewardError(
                    f"UnifiedReward server {self.endpoint}: reply has no '{self.dimension}' score: {answer[:300]!r}")
            scores.append(float(match.group(1)))
        return torch.tensor(scores, dtype=torch.float32, device=images.device)

    def ask(self, image: Tensor, text: str) -> str:
        """One greedy chat completion with the image and text; retries with exponential backoff."""
        payload = {
            "model": self.model,
            "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": png_data_url(image)}},
                {"type": "text", "text": text},
            ]}],
            "temperature": 0.0,
            "max_tokens": self.max_tokens,
        }
        request = urllib.request.Request(self.endpoint, data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        failure = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    body = json.loads(response.read().decode())
                return body["choices"][0]["message"]["content"]
            except urllib.error.HTTPError as error:  # a server answer: retry only server-side errors
                failure = f"HTTP {error.code} {error.reason}"
                if error.code < 500 and error.code != 429:
                    break
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                failure = f"unreachable ({getattr(error, 'reason', error)})"
            except (ValueError, KeyError, IndexError, TypeError) as error:
                failure = f"malformed reply ({type(error).__name__}: {error})"
                break
        raise UnifiedRewardError(f"UnifiedReward server {self.endpoint}: {failure} after {attempt + 1} attempt(s)")


def png_data_url(image: Tensor) -> str:
    """(3, H, W) in [0, 1] -> 'data:image/png;base64,...' (8-bit RGB, rounded)."""
    array = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
