"""The demo's HTML report (``<out>/report/index.html``, ``evaluators.report.page``): the table of its metrics
with deltas to Pretrained, the training curves, the runs' configs, and a sample browser over the held-out
samples, which are written into each run directory in GenEval's folder layout for it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch
from PIL import Image, ImageDraw

from benchmark.cli.demo.report import LABELS, ORDER
from benchmark.cli.demo.stages import SAMPLES, SCORES
from benchmark.core.toy_data import CENTERS, PREFERRED_RADIUS, RARE
from evaluators.report import build_table, read_scores
from evaluators.report.page import write_report as write_page
from evaluators.report.runs import read_run_dir


def toy_picture(point: torch.Tensor, before: torch.Tensor, size: int = 128) -> Image.Image:
    """One toy sample as a picture of the plane [-4, 4]^2: the four blobs (grey; the preferred one ringed in
    green), where the pretrained flow sends the same noise (hollow grey) and where this run sends it (red)."""
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)

    def xy(p) -> tuple[float, float]:
        return (float(p[0]) + 4) / 8 * size, (4 - float(p[1])) / 8 * size

    for i, centre in enumerate(CENTERS):
        x, y = xy(centre)
        r = 0.7 / 8 * size
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(226, 229, 235))
        if i == RARE:
            r = PREFERRED_RADIUS / 8 * size
            draw.ellipse((x - r, y - r, x + r, y + r), outline=(19, 115, 51), width=2)
    for p, style in ((before, {"outline": (110, 110, 110), "width": 2}), (point, {"fill": (200, 30, 30)})):
        x, y = xy(p)
        draw.ellipse((x - 5, y - 5, x + 5, y + 5), **style)
    return image


def write_sample_folders(run_dirs: dict[str, Path], limit: int = 60) -> None:
    """Each run's held-out samples as ``<run_dir>/samples/<NNNNN>/samples/<k>.png`` with metadata.jsonl, the
    layout the report's browser reads: tiny FLUX's images per prompt, or the first `limit` toy samples drawn
    by `toy_picture` (sample i is "prompt" i, as in the scores)."""
    loaded = {m: torch.load(d / SAMPLES, weights_only=False) for m, d in run_dirs.items()}
    base = loaded.get("pretrained", next(iter(loaded.values())))
    for method, saved in loaded.items():
        folder = run_dirs[method] / "samples"
        if saved["prompts"] is None:  # the toy: no prompts, sample i from held-out noise i
            items = [(i, 0, f"held-out noise {i}", toy_picture(saved["x0"][i], base["x0"][i]))
                     for i in range(min(limit, len(saved["x0"])))]
        else:
            ids = {p: k for k, p in enumerate(dict.fromkeys(saved["prompts"]))}
            images = (saved["images"].clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
            items = [(ids[p], saved["prompts"][:i].count(p), p, Image.fromarray(images[i]))
                     for i, p in enumerate(saved["prompts"])]
        for prompt_id, k, prompt, image in items:
            target = folder / f"{prompt_id:05d}"
            (target / "samples").mkdir(parents=True, exist_ok=True)
            (target / "metadata.jsonl").write_text(json.dumps({"prompt": prompt}) + "\n")
            image.save(target / "samples" / f"{k}.png")


def write_report(run_dirs: dict[str, Path], out: Path, backbone: str, budget: str) -> Path:
    """report/index.html: the paper-layout table of the demo's metrics (deltas to Pretrained), the training
    curves, the sample browser (the same held-out noise or prompt across methods) and the runs' configs."""
    write_sample_folders(run_dirs)
    order = sorted(run_dirs, key=lambda m: ORDER.index(m) if m in ORDER else len(ORDER))
    runs = [read_run_dir(run_dirs[m], name=LABELS.get(m, m)) for m in order]
    scores = pd.concat([read_scores(run_dirs[m] / SCORES).assign(run=LABELS.get(m, m)) for m in order])
    baseline = LABELS["pretrained"] if "pretrained" in run_dirs else None
    table = build_table(scores, "auto", reference=None, baseline=baseline)
    figures = [(out / "samples.png", "Held-out samples of each method (toy: before in grey, after in red).")]
    return write_page(out / "report", title=f"LeapBench demo ({backbone})", table=table, scores=scores, runs=runs,
                      baseline=baseline, figures=figures, meta=budget, progress=False,
                      table_note="Held-out evaluation: mean over samples, ± half the 95% bootstrap interval over "
                      "samples (prompts for tiny FLUX), (Δ) against Pretrained; bold best, underlined second.")
