"""Synthetic training runs (metrics.jsonl and config.yaml) for the plot and table tests, and whole run directories
(samples in GenEval's layout, scores, summaries) for the report page tests."""

import json

import numpy as np
import pandas as pd
import yaml
from PIL import Image


def make_run(path, seed, geneval=True, nested=True):
    """A run directory with 40 steps of plausible telemetry (seeded) and a LeapAlign config."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    with open(path / "metrics.jsonl", "w") as f:
        for step in range(40):
            record = {"step": step, "reward_mean": 0.3 + 0.002 * step + rng.normal(0, 0.003),
                      "reward_std": 0.01, "loss": 0.2, "grad_norm": float(rng.lognormal(0, 0.5))}
            if nested:
                record |= {"grad_norm_single": record["grad_norm"] * 0.7,
                           "grad_norm_nested": record["grad_norm"] * 0.3}
            if geneval and step % 10 == 0:
                record["geneval"] = 0.65 + 0.002 * step
            f.write(json.dumps(record) + "\n")
    (path / "config.yaml").write_text("method:\n  name: leapalign\n  alpha: 0.3\n")
    return path


PROMPTS = ["a red cat", "two blue dogs", "a green car", "a yellow bird"]
# per-run score offsets by prompt: the runs disagree most on prompt 2, then 0, then 3, then 1 (hpsv2.1)
OFFSETS = {"pretrained": [0.00, 0.00, 0.00, 0.00], "refl": [0.03, 0.01, 0.10, 0.02],
           "leapalign": [0.05, 0.00, 0.02, 0.04]}


def write_sample_folder(folder, run, images=2, size=40, step=None):
    """``folder`` in GenEval's layout: len(PROMPTS) prompts x ``images`` PNGs of one colour per run, image k
    brighter with k; sampling.json as ``leapbench sample`` writes it."""
    shade = {"pretrained": (40, 40, 40), "refl": (200, 40, 40), "leapalign": (40, 40, 200)}[run]
    for i, prompt in enumerate(PROMPTS):
        (folder / f"{i:05d}" / "samples").mkdir(parents=True)
        (folder / f"{i:05d}" / "metadata.jsonl").write_text(json.dumps({"prompt": prompt}) + "\n")
        for k in range(images):
            pixels = np.zeros((size, size, 3), np.uint8) + np.array(shade, np.uint8) + 20 * k
            pixels[: size // 2, : size // 2] = 255  # not a flat image
            Image.fromarray(pixels).save(folder / f"{i:05d}" / "samples" / f"{k}.png")
    checkpoint = None if run == "pretrained" else f"/runs/{run}/checkpoints/step_{step or 40:06d}"
    (folder / "sampling.json").write_text(json.dumps({"format": 1, "checkpoint": checkpoint, "ema": run != "pretrained",
                                                       "steps": 50, "seed": 0, "images": images, "run": run}))


def scores_frame(run, images=2):
    """hpsv2.1 = 0.25 + OFFSETS[run][prompt] + 0.001 k, pickscore = 20 + 10 x that offset, per image."""
    rows = []
    for i, prompt in enumerate(PROMPTS):
        for k in range(images):
            base = OFFSETS[run][i]
            rows += [{"run": run, "method": run, "prompt_set": "hpdv2", "prompt_id": i, "prompt": prompt, "image": k,
                      "metric": "hpsv2.1", "tag": "", "value": 0.25 + base + 0.001 * k},
                     {"run": run, "method": run, "prompt_set": "hpdv2", "prompt_id": i, "prompt": prompt, "image": k,
                      "metric": "pickscore", "tag": "", "value": 20.0 + 10 * base}]
    return pd.DataFrame(rows)


def make_report_runs(root):
    """Three run directories as a sweep leaves them: pretrained (samples and scores only), refl and leapalign
    (telemetry from `make_run`, config, summary, samples, scores)."""
    from evaluators.report import write_scores

    dirs = {}
    for seed, run in enumerate(["pretrained", "refl", "leapalign"]):
        run_dir = root / run
        if run == "pretrained":
            run_dir.mkdir(parents=True)
        else:
            make_run(run_dir, seed, geneval=False, nested=run == "leapalign")
            rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
            with open(run_dir / "metrics.jsonl", "w") as f:
                for r in rows:  # the method's choices: LeapAlign's k > j, ReFL's t_min
                    step = r["step"]
                    r |= {"k": 20 + step % 3, "j": 5 + step % 2} if run == "leapalign" else {"t_min": 1 + step % 4}
                    f.write(json.dumps(r) + "\n")
            config = {"method": {"name": run, **({"alpha": 0.3} if run == "leapalign" else {"m": 11})},
                      "optim": {"lr": 1e-5}, "schedule": {"iterations": 40}, "run_dir": str(run_dir)}
            (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
            (run_dir / "summary.json").write_text(json.dumps({"status": "finished", "step": 40, "wall_time": 1800.0,
                                                              "wall_time_total": 3600.0, "world_size": 8,
                                                              "device": "cuda", "peak_mem": 70e9}))
        write_sample_folder(run_dir / "samples", run)
        write_scores(scores_frame(run), run_dir / "scores.parquet")
        dirs[run] = run_dir
    return dirs
