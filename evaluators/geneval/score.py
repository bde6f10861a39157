"""Score a folder of generated images in GenEval's layout and summarise it.

Layout (GenEval's generation scripts): `<dir>/<NNNNN>/metadata.jsonl` holds the prompt's metadata row as one
JSON object and `<dir>/<NNNNN>/samples/<k>.png` its images. Summary (evaluation/summary_scores.py): accuracy
per task is the mean of per-image correctness; overall is the unweighted mean over the tasks.
"""

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps
from tqdm.auto import tqdm

from benchmark.core.errors import ConfigError
from benchmark.core.io import atomic_write_text
from evaluators.geneval.detectors import Detector
from evaluators.geneval.metadata import check_row, load_prompt_metadata
from evaluators.geneval.rules import RuleConfig, evaluate, select_detections
from evaluators.geneval.vocab import TAGS

COLUMNS = ["prompt_index", "tag", "prompt", "image_index", "correct", "reason", "filename", "metadata", "details"]
_IMAGE = re.compile(r"(\d+)\.png")


def prompt_folder(root: str | os.PathLike, index: int) -> Path:
    """`<root>/<index as 5 digits>`, GenEval's folder name for prompt `index`."""
    return Path(root) / f"{index:0>5}"


def write_prompt_folder(root: str | os.PathLike, index: int, row: dict) -> Path:
    """Create a prompt folder with its metadata.jsonl (one JSON object) and an empty samples/ folder."""
    folder = prompt_folder(root, index)
    (folder / "samples").mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "metadata.jsonl", json.dumps(check_row(row)))
    return folder


def list_images(image_dir: str | os.PathLike) -> list[tuple[int, dict, int, Path]]:
    """(prompt index, metadata row, image index, path) for every `<NNNNN>/samples/<k>.png`, in numeric order."""
    root = Path(image_dir)
    if not root.is_dir():
        raise ConfigError("geneval.image_dir", "an existing folder in GenEval's layout", str(root))
    items = []
    for folder in sorted((p for p in root.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)):
        row = load_prompt_metadata(folder / "metadata.jsonl")
        samples = folder / "samples"
        if not samples.is_dir():
            raise ConfigError("geneval.image_dir", "a samples/ folder in every prompt folder", str(samples))
        for path in samples.iterdir():
            match = _IMAGE.fullmatch(path.name)
            if match and path.is_file():
                items.append((int(folder.name), row, int(match.group(1)), path))
    if not items:
        raise ConfigError("geneval.image_dir", "<NNNNN>/samples/<k>.png images", str(root))
    return sorted(items, key=lambda t: (t[0], t[2]))


def score_image(path: Path, row: dict, detector: Detector, colour_classifier=None, config: RuleConfig = RuleConfig()):
    """(correct, reason, kept detections) for one image file."""
    return score_pil(ImageOps.exif_transpose(Image.open(path)).convert("RGB"), row, detector, colour_classifier, config)


def score_pil(image: Image.Image, row: dict, detector: Detector, colour_classifier=None,
              config: RuleConfig = RuleConfig()):
    """(correct, reason, kept detections) for one RGB image."""
    detections = detector.detect(image)
    colour_fn = None if colour_classifier is None else (lambda dets, cls: colour_classifier(image, dets, cls))
    correct, reason = evaluate(row, detections, colour_fn, config)
    return correct, reason, select_detections(detections, row["tag"], config)


def score_folder(
    image_dir: str | os.PathLike,
    detector: Detector,
    colour_classifier=None,
    config: RuleConfig = RuleConfig(),
    progress: bool = True,
    rank: int = 0,
    world_size: int = 1,
) -> pd.DataFrame:
    """One row per image: COLUMNS (details: the kept boxes per class as JSON, as GenEval writes); with
    ``world_size`` > 1 only images ``rank``, ``rank + world_size``, ... of the sorted list (one shard)."""
    items = list_images(image_dir)[rank::world_size]
    if colour_classifier is None and any("color" in c for _, row, _, _ in items for c in row["include"]):
        raise ConfigError("geneval.colour_classifier", "a CLIP colour classifier for colour prompts", None)
    records = []
    for prompt_index, row, image_index, path in tqdm(items, desc="GenEval", disable=not progress):
        correct, reason, kept = score_image(path, row, detector, colour_classifier, config)
        details = {cls: [list(d.box) + [d.score] for d in dets] for cls, dets in kept.items()}
        records.append([
            prompt_index, row["tag"], row["prompt"], image_index, bool(correct), reason, str(path),
            json.dumps(row), json.dumps(details),
        ])
    return pd.DataFrame(records, columns=COLUMNS)


def summarize(df: pd.DataFrame) -> dict:
    """Per-task accuracy (NaN for a task with no images), "overall" = unweighted mean over the tasks present
    (all six for the official set), plus image/prompt counts and GenEval's % correct images / prompts."""
    if df.empty:
        raise ValueError("no GenEval results to summarise")
    per_task = df.groupby("tag")["correct"].mean()
    summary = {tag: float(per_task[tag]) if tag in per_task else float("nan") for tag in TAGS}
    summary["overall"] = float(np.mean([per_task[t] for t in TAGS if t in per_task]))
    summary["images"] = int(len(df))
    summary["prompts"] = int(df["prompt_index"].nunique())
    summary["correct_images"] = float(df["correct"].mean())
    summary["correct_prompts"] = float(df.groupby("prompt_index")["correct"].any().mean())
    return summary


def write_results(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Per-image results as JSON lines (GenEval's results.jsonl), written atomically."""
    atomic_write_text(path, df.to_json(orient="records", lines=True))
