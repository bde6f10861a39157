"""The sample browser's data: the same prompt and seed across runs and checkpoints, with per-image scores.

Images of different sample folders line up by (prompt id, prompt text, image index k): ``leapbench sample``
draws image k of prompt p from the noise seeded by (seed, p, k), so with the same sampling seed every column
of a row starts from the same noise. A folder's scores are the rows of its `SampleSet.run` label.

Disagreement of a prompt on a metric is the range, over the columns, of the column's mean score on that
prompt's images (best minus worst); the browser can order prompts by it. With more prompts than
``max_prompts``, the browser holds the half with the largest disagreement on the first metric and an evenly
spaced selection of the rest, so both the extremes and typical prompts are there. Thumbnails (at most
``thumb`` pixels a side) are written once and reused while their source image is unchanged.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from evaluators.report.runs import SampleSet

KEY = ["prompt_id", "prompt"]


def read_samples(folder: Path) -> pd.DataFrame:
    """``<NNNNN>/metadata.jsonl`` + ``<NNNNN>/samples/<k>.png`` -> prompt_id, prompt, image, path (sorted)."""
    rows = []
    for prompt_dir in sorted(p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()):
        meta = prompt_dir / "metadata.jsonl"
        prompt = json.loads(meta.read_text(encoding="utf-8")).get("prompt", "") if meta.is_file() else ""
        rows += [{"prompt_id": int(prompt_dir.name), "prompt": prompt, "image": int(png.stem), "path": png}
                 for png in (prompt_dir / "samples").glob("*.png") if png.stem.isdigit()]
    return pd.DataFrame(rows, columns=[*KEY, "image", "path"]).sort_values(["prompt_id", "image"], ignore_index=True)


def set_scores(sets: list[SampleSet], scores: pd.DataFrame, images: pd.DataFrame) -> pd.DataFrame:
    """The scores of the browser's images: one row per (column, prompt, image, metric). A column's scores are
    the rows of its run label (of its sampling.json's prompt set, when the run has several), matched to its
    images by (prompt id, image); the prompt text is the image's (GenEval rows carry their task in `tag`)."""
    frames = [pd.DataFrame(columns=["column", "prompt_id", "image", "metric", "value"])]
    for i, s in enumerate(sets):
        mine = scores[scores["run"] == s.run]
        if s.settings.get("prompt_set") and mine["prompt_set"].nunique() > 1:
            mine = mine[mine["prompt_set"] == s.settings["prompt_set"]]
        frames.append(mine.assign(column=i)[["column", "prompt_id", "image", "metric", "value"]])
    per_image = pd.concat(frames, ignore_index=True).astype({"column": int, "prompt_id": int, "image": int})
    return per_image.merge(images[["column", "prompt_id", "image", "prompt"]], on=["column", "prompt_id", "image"])


def disagreement(per_image: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per prompt: the range over columns of each column's mean score (``spread``), and the best and worst
    column; only prompts scored in at least two columns."""
    means = per_image[per_image["metric"] == metric].groupby([*KEY, "column"])["value"].mean().unstack("column")
    means = means[means.notna().sum(axis=1) >= 2]
    return pd.DataFrame({"spread": means.max(axis=1) - means.min(axis=1), "best": means.idxmax(axis=1),
                         "worst": means.idxmin(axis=1)})


def choose(keys: list[tuple], spread: pd.Series | None, limit: int) -> list[tuple]:
    """At most ``limit`` prompt keys (0 = all): half by largest spread, the rest evenly spaced, in key order."""
    if not limit or len(keys) <= limit:
        return keys
    top = list(spread.sort_values(ascending=False, kind="stable").index[: limit // 2]) if spread is not None else []
    rest = [k for k in keys if k not in set(top)]
    picks = np.linspace(0, len(rest) - 1, limit - len(top)).round().astype(int)
    chosen = set(top) | {rest[i] for i in picks}
    return [k for k in keys if k in chosen]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "set"


def thumbnail(src: Path, out_dir: Path, name: str, size: int) -> Path:
    """A copy of ``src`` no larger than ``size`` pixels a side (the PNG itself if it is that small, else a JPEG);
    kept while it is newer than its source. Written to a temporary name and renamed, without fsync: a thumbnail
    is a cache the next report remakes, and thousands of fsyncs would dominate the report's time."""
    with Image.open(src) as image:
        small = max(image.size) <= size
        dst = out_dir / f"{name}.{'png' if small else 'jpg'}"
        if dst.is_file() and dst.stat().st_mtime >= src.stat().st_mtime:
            return dst
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = out_dir / f".{name}.{os.getpid()}.tmp"
        if small:
            shutil.copyfile(src, tmp)
        else:
            image = image.convert("RGB")
            image.thumbnail((size, size), Image.Resampling.LANCZOS)
            image.save(tmp, format="JPEG", quality=90)
    os.replace(tmp, dst)
    return dst


def browser_data(sets: list[SampleSet], scores: pd.DataFrame, out: Path, *, max_prompts: int = 120,
                 thumb: int = 256, progress: bool = True) -> dict[str, Any]:
    """Thumbnails under ``out/img/samples/<column>/`` and the browser's JSON (paths relative to ``out``)."""
    if not sets:
        return {"sets": [], "metrics": [], "images": 0, "prompts": [], "orders": {}, "total_prompts": 0}
    images = pd.concat([read_samples(s.folder).assign(column=i) for i, s in enumerate(sets)], ignore_index=True)
    per_image = set_scores(sets, scores, images)
    metrics = list(dict.fromkeys(per_image["metric"]))
    spreads = {m: disagreement(per_image, m) for m in metrics}
    every = sorted(set(map(tuple, images[KEY].itertuples(index=False))))
    keys = choose(every, spreads[metrics[0]]["spread"] if metrics else None, max_prompts)
    images = images[pd.MultiIndex.from_frame(images[KEY]).isin(keys)]
    n_images = int(images["image"].max()) + 1 if len(images) else 0
    paths: dict[tuple, str] = {}
    for row in tqdm(images.itertuples(index=False), total=len(images), desc="report thumbnails", disable=not progress):
        folder = out / "img" / "samples" / f"{row.column:02d}-{slug(sets[row.column].label)}"
        paths[(row.prompt_id, row.prompt, row.image, row.column)] = thumbnail(
            row.path, folder, f"{row.prompt_id:05d}-{row.image}", thumb).relative_to(out).as_posix()
    values = per_image.set_index([*KEY, "image", "column", "metric"])["value"].to_dict()

    columns, indices = range(len(sets)), range(n_images)
    prompts = []
    for key in keys:
        spread = {m: [round(float(s.loc[key, "spread"]), 6), int(s.loc[key, "best"]), int(s.loc[key, "worst"])]
                  for m, s in spreads.items() if key in s.index}
        prompts.append({"id": int(key[0]), "text": key[1],
                        "img": [[paths.get((*key, k, c)) for c in columns] for k in indices],
                        "scores": {m: [[_number(values.get((*key, k, c, m))) for c in columns] for k in indices]
                                   for m in metrics},
                        "spread": spread})
    orders = {m: sorted(range(len(prompts)), key=lambda i: -prompts[i]["spread"].get(m, [-np.inf])[0])
              for m in metrics}
    return {"sets": [{"label": s.label, "caption": s.caption} for s in sets], "metrics": metrics,
            "images": n_images, "prompts": prompts, "orders": orders, "total_prompts": len(every)}


def _number(value: Any) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 6)
