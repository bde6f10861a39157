"""``python -m evaluators.parity.gaps``: the training path's gap to the official score, per scorer and image
size, on the parity references' models and images (a Markdown table for docs/rewards.md)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
import torchvision.transforms.functional as TF

from evaluators.parity.rebuild import build, load_reference, reference_images
from evaluators.parity.record import REWARDS


def gaps(scorer: str) -> tuple[list[str], list[float], list[float], float]:
    """(image labels, |training - official|, |evaluate - official|, spread of the official scores)."""
    reference = load_reference(scorer)
    images = reference_images(reference)
    with tempfile.TemporaryDirectory() as tmp:
        reward = build(scorer, reference, Path(tmp))
        with torch.no_grad():
            train = torch.cat([reward(TF.to_tensor(im)[None], [p]) for im, p in zip(images, reference["prompts"])])
        evaluated = reward.evaluate(images, reference["prompts"])
    official = torch.tensor(reference["scores"], dtype=torch.float64)
    labels = [f"{kind} {h}x{w}" for kind, h, w, *_ in reference["images"]]
    spread = (official.max() - official.min()).item()
    return (labels, (train.double() - official).abs().tolist(), (evaluated.double() - official).abs().tolist(),
            spread)


def main() -> int:
    results = {scorer: gaps(scorer) for scorer in REWARDS}
    labels = results[REWARDS[0]][0]
    print("| image (H x W) | " + " | ".join(f"{s} training | {s} evaluate" for s in REWARDS) + " |")
    print("|---|" + "---:|---:|" * len(REWARDS))
    for i, label in enumerate(labels):
        cells = [f"{results[s][1][i]:.1e} | {results[s][2][i]:.1e}" for s in REWARDS]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("| spread of the official scores | " + " | ".join(f"{results[s][3]:.3g} | " for s in REWARDS) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
