"""A weighted sum of rewards: score = sum_k w_k * r_k(images, prompts)."""

from __future__ import annotations

from torch import Tensor, nn

from evaluators.rewards.base import Reward, Scores


class WeightedReward(Reward):
    """``WeightedReward({"hpsv2": (hpsv2, 1.0), "pickscore": (pick, 0.05)})``; differentiable iff every part is.

    ``score`` returns each part's unweighted score (detached) and weight beside the total, from the same call
    (MixGRPO's per-reward advantages, logging).
    """

    def __init__(self, parts: dict[str, tuple[Reward, float]], name: str | None = None) -> None:
        super().__init__()
        if not parts:
            raise ValueError("WeightedReward needs at least one part")
        self.parts = nn.ModuleDict({key: reward for key, (reward, _) in parts.items()})
        self.weights = {key: float(weight) for key, (_, weight) in parts.items()}
        self.name = name or "+".join(f"{w:g}*{key}" for key, w in self.weights.items())
        self.differentiable = all(reward.differentiable for reward, _ in parts.values())
        self.freeze()

    def score(self, images: Tensor, prompts: list[str]) -> Scores:
        self.check_inputs(images, prompts)
        total, parts = 0.0, {}
        for key, reward in self.parts.items():
            r = reward(images, prompts).float()
            parts[key] = (r.detach(), self.weights[key])
            total = total + self.weights[key] * r
        return total, parts

    def forward(self, images: Tensor, prompts: list[str]) -> Tensor:
        return self.score(images, prompts)[0]
