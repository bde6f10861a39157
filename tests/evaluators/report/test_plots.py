"""Figures from synthetic telemetry and results: the PNGs exist, open, and have the designed pixel size."""


import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from evaluators.report import (
    choice_counts,
    paper_ablation,
    paper_table,
    plot_ablation,
    plot_choice_histograms,
    plot_geneval_radar,
    plot_grad_norms,
    plot_sample_grid,
    plot_training_curves,
    read_run,
)
from tests.evaluators.report.helpers import make_run


@pytest.fixture
def runs(tmp_path):
    return [make_run(tmp_path / "leapalign", 0), make_run(tmp_path / "refl", 1, geneval=False, nested=False)]


def png_size(path):
    with Image.open(path) as image:
        image.load()
        return image.format, image.size


def test_read_run(runs):
    metrics, config = read_run(runs[0])
    assert len(metrics) == 40 and metrics["step"].is_monotonic_increasing
    assert metrics["geneval"].notna().sum() == 4 and config["method"]["alpha"] == 0.3


def test_training_curves(runs, tmp_path):
    out = plot_training_curves(runs, tmp_path / "fig" / "curves.png", smooth=3, figsize=(8, 3), dpi=50)
    assert png_size(out) == ("PNG", (400, 150))
    # mapping input with DataFrames; a run without any requested metric is an error, not an empty figure
    frame = read_run(runs[1])[0]
    assert png_size(plot_training_curves({"refl": frame}, tmp_path / "one.png")) == ("PNG", (1000, 400))
    with pytest.raises(ValueError):
        plot_training_curves({"refl": frame}, tmp_path / "none.png", metrics=("geneval",))


def test_grad_norms(runs, tmp_path):
    out = plot_grad_norms(runs, tmp_path / "grad.png", window=5, figsize=(12, 4), dpi=80)
    assert png_size(out) == ("PNG", (960, 320))


def test_choice_histograms_count_the_draws(tmp_path):
    leap = pd.DataFrame({"step": range(6), "k": [20, 21, 20, 22, 20, 21], "j": [5, 5, 6, 5, 5, 6]})
    refl = pd.DataFrame({"step": range(4), "t_min": [1, 3, 3, np.nan]})
    counts = choice_counts({"leapalign": leap, "refl": refl}, "k")
    assert counts.to_dict() == {"leapalign": {20: 3, 21: 2, 22: 1}}
    assert choice_counts({"leapalign": leap, "refl": refl}, "t_min").to_dict() == {"refl": {1: 1, 3: 2}}
    out = plot_choice_histograms({"leapalign": leap, "refl": refl}, tmp_path / "choices.png", figsize=(9, 3), dpi=50)
    assert png_size(out) == ("PNG", (450, 150))
    with pytest.raises(ValueError, match="none of"):
        plot_choice_histograms({"refl": refl}, tmp_path / "none.png", keys=("k",))


def test_ablation_grid_size(tmp_path):
    ours = pd.DataFrame({"ablation": ["alpha"] * 3 + ["timestep_range"] * 2,
                         "value": [0, 0.3, 1, "[0,0.5]", "[0,1]"],
                         "metric": "hpsv2.1", "mean": [0.39, 0.41, 0.38, 0.39, 0.40],
                         "ci_low": [0.38, 0.40, 0.37, 0.38, np.nan], "ci_high": [0.40, 0.42, 0.39, 0.40, np.nan]})
    both = pd.concat([ours, ours.assign(metric="pickscore")])
    out = plot_ablation(both, tmp_path / "abl.png", panel_size=(3, 2), dpi=60)
    assert png_size(out) == ("PNG", (2 * 3 * 60, 2 * 2 * 60))
    lam = plot_ablation(paper_ablation("ablation_lambda"), tmp_path / "lambda.png", dpi=50)
    assert png_size(lam) == ("PNG", (200, 4 * 150))


def test_geneval_radar(tmp_path):
    paper = paper_table("table2_geneval").set_index("method")
    out = plot_geneval_radar(paper, tmp_path / "radar.png", figsize=(5, 5), dpi=60)
    assert png_size(out) == ("PNG", (300, 300))
    with pytest.raises(ValueError, match="counting"):
        plot_geneval_radar(paper.drop(columns="geneval/counting"), tmp_path / "bad.png")


def test_sample_grid_size_and_content(tmp_path):
    red = tmp_path / "red.png"
    Image.new("RGB", (64, 48), (255, 0, 0)).save(red)
    rows = [[red, torch.zeros(3, 32, 32), np.full((16, 16, 3), 255, np.uint8)],  # path, CHW tensor, HWC uint8
            [torch.ones(32, 32, 3) * torch.tensor([0.0, 0.0, 1.0]), None, Image.new("RGB", (8, 8), (0, 255, 0))]]
    cell = 64
    out = plot_sample_grid(rows, tmp_path / "grid.png", row_labels=["pretrained", "leapalign"],
                           col_labels=["a photo of a cat", "two dogs", "a red car"], cell=cell)
    _, size = png_size(out)
    assert size == (3 * cell, 2 * cell)
    pixels = np.asarray(Image.open(out).convert("RGB")).astype(int)
    centre = lambda r, c: pixels[r * cell + cell // 2 + 8, c * cell + cell // 2]  # below the column label
    assert tuple(centre(0, 0)) == (255, 0, 0) and tuple(centre(0, 1)) == (0, 0, 0)
    assert tuple(centre(0, 2)) == (255, 255, 255) and tuple(centre(1, 0)) == (0, 0, 255)
    assert tuple(centre(1, 1)) == (255, 255, 255) and tuple(centre(1, 2)) == (0, 255, 0)
