"""Means over images with bootstrap confidence intervals over prompts.

The unit of resampling is the prompt (all images of a drawn prompt come along), because images of one prompt
are correlated. A draw with replacement of n prompts is a multinomial count vector, so B resamples are one
(B, n) matrix and each resampled mean is (counts @ prompt_sums) / (counts @ prompt_image_counts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Estimate:
    mean: float
    ci_low: float
    ci_high: float
    n_prompts: int
    n_images: int


def prompt_totals(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per-prompt sum of `value` and number of images, prompts keyed by (prompt_set, prompt_id)."""
    totals = frame.groupby(["prompt_set", "prompt_id"])["value"].agg(["sum", "count"])
    return totals["sum"].to_numpy(float), totals["count"].to_numpy(float)


def bootstrap_means(sums: np.ndarray, counts: np.ndarray, rng: np.random.Generator, resamples: int) -> np.ndarray:
    """`resamples` image means, each over prompts drawn with replacement."""
    n = len(sums)
    draws = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples)
    return (draws @ sums) / (draws @ counts)


def estimate(groups: Sequence[pd.DataFrame], *, resamples: int = 1000, seed: int = 0,
             level: float = 0.95) -> Estimate:
    """Unweighted mean over `groups` of each group's image mean, with a percentile bootstrap CI.

    One group gives the plain mean over images. Several groups (GenEval's six tasks) give the mean of the
    group means, with prompts resampled within each group, as each task has its own prompts.
    """
    totals = [prompt_totals(group) for group in groups]
    if not groups or any(len(sums) == 0 for sums, _ in totals):
        raise ValueError("every group needs at least one scored prompt")
    rng = np.random.default_rng(seed)
    mean = np.mean([sums.sum() / counts.sum() for sums, counts in totals])
    boot = np.mean([bootstrap_means(sums, counts, rng, resamples) for sums, counts in totals], axis=0)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(boot, [tail, 100 - tail])
    return Estimate(float(mean), float(low), float(high),
                    n_prompts=sum(len(s) for s, _ in totals), n_images=int(sum(c.sum() for _, c in totals)))
