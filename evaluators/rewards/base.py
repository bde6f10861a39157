"""The reward contract: ``reward(images, prompts) -> Tensor[B]``, frozen, differentiable in the images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import Tensor, nn

from benchmark.core.dtypes import DTYPES
from benchmark.core.errors import ConfigError

Scores = tuple[Tensor, dict[str, tuple[Tensor, float]]]  # rewards [B], {part: (unweighted scores [B], weight)}


class Reward(nn.Module):
    """A frozen scorer of images in [0, 1] against their prompts.

    ``forward(images, prompts)`` takes ``images`` of shape (B, 3, H, W) in [0, 1] and ``len(prompts) == B``
    and returns float32 scores of shape (B,). Parameters never require grad and the module stays in eval
    mode (``train()`` is a no-op), but when ``differentiable`` is true the score is differentiable with
    respect to ``images``, so the loss can flow back into the generator.
    """

    name: str = "reward"
    differentiable: bool = True
    protocol: str = "differentiable"  # how ``evaluate`` scores (evaluators.report.scores.PROTOCOLS)

    @classmethod
    def check(cls, cfg: Any, prefix: str) -> None:
        """Check the reward section ``cfg`` (a ``RewardConfig``) on disk, loading nothing; ConfigError naming the
        field. Rewards without files have nothing to check."""

    @classmethod
    def build(cls, cfg: Any, device: str | torch.device) -> Reward:
        """Load the reward of section ``cfg`` onto ``device`` (rewards without files: their defaults)."""
        return on_device(cls(), cfg, device)

    def score(self, images: Tensor, prompts: list[str]) -> Scores:
        """The rewards [B] and, for a sum of rewards, each part's unweighted scores and weight, from one call."""
        return self(images, prompts), {}

    @torch.no_grad()
    def evaluate(self, images: list[Image.Image], prompts: list[str]) -> Tensor:
        """Scores for evaluation from decoded images (any sizes), float32 of shape (B,).

        Rewards with an official scorer override this with its preprocessing and precision (``protocol`` is
        then "official"); the default runs ``forward`` on each image's [0, 1] tensor at its own size.
        """
        self.check_inputs(torch.empty(len(images), 3, 1, 1), prompts)
        return torch.cat([self(TF.to_tensor(image.convert("RGB"))[None].to(self.device), [prompt]).float()
                          for image, prompt in zip(images, prompts)])

    def freeze(self) -> Reward:
        """Put the scorer in eval mode and stop gradients into its own weights."""
        self.requires_grad_(False)
        return super().train(False)

    def train(self, mode: bool = True) -> Reward:
        # A reward is never trained: a parent module's .train() must not switch dropout back on.
        return super().train(False)

    @property
    def device(self) -> torch.device:
        tensor = next(iter(self.parameters()), None)
        return tensor.device if tensor is not None else torch.device("cpu")

    @staticmethod
    def check_inputs(images: Tensor, prompts: list[str]) -> None:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W) in [0, 1], got shape {tuple(images.shape)}")
        if len(prompts) != images.shape[0]:
            raise ValueError(f"got {images.shape[0]} images but {len(prompts)} prompts")


def on_device(reward: Reward, cfg: Any, device: str | torch.device) -> Reward:
    """``reward`` on ``device``, in the section's ``dtype`` when it sets one."""
    return reward.to(device=device, dtype=DTYPES[cfg.dtype]) if cfg.dtype else reward.to(device)


def require_file(path: str | Path | None, field: str, expected: str) -> Path:
    """Return ``path`` as an existing file, or raise ConfigError naming ``field`` (before any loading)."""
    if path is None or not str(path):
        raise ConfigError(field, expected, path)
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(field, expected, str(path))
    return file


def require_dir(path: str | Path | None, field: str, expected: str, files: tuple[str, ...] = ()) -> Path:
    """Return ``path`` as an existing directory holding every name in ``files``, else raise ConfigError."""
    if path is None or not str(path):
        raise ConfigError(field, expected, path)
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ConfigError(field, expected, str(path))
    missing = [name for name in files if not (root / name).exists()]
    if missing:
        raise ConfigError(field, f"{expected} (missing {', '.join(missing)})", str(root))
    return root
