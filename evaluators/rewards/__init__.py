"""Reward models: ``reward(images in [0, 1], prompts) -> Tensor[B]``, frozen and differentiable in the images.

HPSv2.1, PickScore, ImageReward and HPSv3 load from local checkpoints and are differentiable; UnifiedReward
is a client of a vLLM server and is evaluation-only; WeightedReward sums any of them. ``REWARDS`` maps
``reward.name`` to its class; ``build_reward(RewardConfig)`` checks a section and loads it.
"""

from evaluators.rewards.base import Reward, Scores
from evaluators.rewards.config import NAMES, REWARDS, RewardConfig, build_reward, reward_config
from evaluators.rewards.hpsv2 import HPSv2
from evaluators.rewards.hpsv3 import HPSv3
from evaluators.rewards.imagereward import ImageReward
from evaluators.rewards.pickscore import PickScore
from evaluators.rewards.tiny import tiny_reward
from evaluators.rewards.unified_reward import UnifiedReward, UnifiedRewardError
from evaluators.rewards.weighted import WeightedReward

__all__ = [
    "HPSv2", "HPSv3", "ImageReward", "NAMES", "PickScore", "REWARDS", "Reward", "RewardConfig", "Scores",
    "UnifiedReward", "UnifiedRewardError", "WeightedReward", "build_reward", "reward_config", "tiny_reward",
]
