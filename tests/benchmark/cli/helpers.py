"""Samples directories for the command tests (``leapbench score``, ``table``, ``plot``)."""

import json

import numpy as np
from PIL import Image

PROMPTS = ["a photo of a cat", "a red car", "two dogs on a table"]
GENEVAL_ROWS = [
    {"tag": "single_object", "include": [{"class": "dog", "count": 1}], "prompt": "a photo of a dog"},
    {"tag": "colors", "include": [{"class": "dog", "count": 1, "color": "red"}], "prompt": "a photo of a red dog"},
]


def write_samples(root, rows, images=2, size=40, labels=True):
    """A samples directory in GenEval's layout with random PNGs (and sampling.json labels)."""
    rng = np.random.default_rng(0)
    for i, row in enumerate(rows):
        (root / f"{i:05d}" / "samples").mkdir(parents=True)
        (root / f"{i:05d}" / "metadata.jsonl").write_text(json.dumps(row))
        for k in range(images):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
                root / f"{i:05d}" / "samples" / f"{k}.png")
    if labels:
        (root / "sampling.json").write_text(json.dumps({"run": "flux-refl", "method": "refl", "prompt_set": "hpdv2"}))
    return root
