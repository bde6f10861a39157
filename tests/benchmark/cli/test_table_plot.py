"""``leapbench table``, ``plot`` and ``geneval-prompts``: files are written from synthetic scores and runs."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmark.cli import main
from evaluators.geneval import load_metadata
from evaluators.report import GENEVAL_TASKS, write_scores
from tests.benchmark.cli.helpers import write_samples
from tests.evaluators.report.helpers import make_run

RUNS = {"pretrained": ("pretrained", 0.0), "leap-a0.1": ("leapalign", 0.1), "leap-a0.3": ("leapalign", 0.3)}


@pytest.fixture
def scores(tmp_path):
    """hpsv2.1 on 5 prompts x 2 images and GenEval on 2 prompts per task, per run; higher alpha scores higher."""
    rng = np.random.default_rng(0)
    rows = []
    for run, (method, alpha) in RUNS.items():
        for p in range(5):
            for k in range(2):
                value = 0.3 + alpha / 10 + rng.normal(0, 1e-3)
                rows.append((run, method, "hpdv2", p, f"prompt {p}", k, "hpsv2.1", "", value))
        for t, task in enumerate(GENEVAL_TASKS):
            for p in range(2):
                for k in range(2):
                    rows.append((run, method, "geneval", 2 * t + p, f"g {t} {p}", k, "geneval", task,
                                 float(rng.random() < 0.5 + alpha)))
    frame = pd.DataFrame(rows, columns=["run", "method", "prompt_set", "prompt_id", "prompt", "image", "metric",
                                        "tag", "value"])
    return write_scores(frame, tmp_path / "scores.parquet")


def test_table_writes_markdown_latex_csv_and_prints_markdown(scores, tmp_path, capsys):
    out = tmp_path / "tables"
    assert main(["table", str(scores), "--layout", "table2", "--out", str(out), "--name", "t2",
                 "--resamples", "50"]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["t2.csv", "t2.md", "t2.tex"]
    assert (out / "t2.md").read_text().strip() in printed
    assert "| leap-a0.3 |" in printed and "LeapAlign (paper)" in printed
    cells = pd.read_csv(out / "t2.csv")
    row = cells[(cells["row"] == "leap-a0.3") & (cells["key"] == "hpsv2.1")].iloc[0]
    assert row["delta"] == pytest.approx(0.03, abs=2e-3)  # against the pretrained run, found by default
    assert "\\midrule" in (out / "t2.tex").read_text()
    assert main(["table", str(scores), "--out", str(tmp_path / "ours"), "--no-paper", "--baseline", "none",
                 "--resamples", "50"]) == 0
    assert "(paper)" not in capsys.readouterr().out
    assert pd.read_csv(tmp_path / "ours" / "table2.csv")["delta"].isna().all()


def test_table_bad_input(scores, tmp_path, capsys):
    for args, expected in (([str(tmp_path / "none.parquet")], "SCORES"),
                           ([str(scores), "--baseline", "refl"], "baseline 'refl'"),
                           ([str(scores), "--prompt-set", "hpsv2.1"], "METRIC=SET")):
        assert main(["table", *args, "--out", str(tmp_path / "t")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("leapbench table: ") and expected in err[0], err
    assert not (tmp_path / "t").exists()


def png(path):
    with Image.open(path) as image:
        return image.format, image.size


@pytest.fixture
def run_dirs(tmp_path):
    dirs = [make_run(tmp_path / name, seed) for seed, name in enumerate(RUNS) if name != "pretrained"]
    for d, (_, alpha) in zip(dirs, list(RUNS.values())[1:]):
        (d / "config.yaml").write_text(f"method:\n  name: leapalign\n  alpha: {alpha}\n")
    return dirs


def test_curves_and_gradnorm(run_dirs, tmp_path):
    runs = [str(d) for d in run_dirs]
    assert main(["plot", "curves", *runs, "--out", str(tmp_path / "curves.png"), "--smooth", "3"]) == 0
    assert main(["plot", "gradnorm", *runs, "--out", str(tmp_path / "grad.png"), "--labels", "a", "b"]) == 0
    assert png(tmp_path / "curves.png") == ("PNG", (1000, 400))
    assert png(tmp_path / "grad.png") == ("PNG", (1000, 400))


def test_ablation_from_config_values_and_from_run_names(scores, run_dirs, tmp_path, monkeypatch):
    import evaluators.report

    seen = []
    original = evaluators.report.plot_ablation
    monkeypatch.setattr(evaluators.report, "plot_ablation",
                        lambda frame, out: seen.append(frame) or original(frame, out))
    assert main(["plot", "ablation", str(scores), "--ablation", "alpha", "--values-from", "config", "--key",
                 "method.alpha", "--run-dirs", *map(str, run_dirs), "--metric", "hpsv2.1", "--metric", "geneval",
                 "--resamples", "50", "--out", str(tmp_path / "alpha.png")]) == 0
    frame = seen[-1]
    assert png(tmp_path / "alpha.png") == ("PNG", (400, 600))  # 1 ablation x 2 metrics, 4 x 3 inch panels
    hps = frame[frame["metric"] == "hpsv2.1"].set_index("value")["mean"]
    assert sorted(hps.index) == [0.1, 0.3] and hps[0.3] > hps[0.1]
    assert main(["plot", "ablation", str(scores), "--values-from", "name", "--pattern", r"a([0-9.]+)$",
                 "--paper", "ablation_lambda", "--out", str(tmp_path / "name.png")]) == 0
    assert set(seen[-1]["ablation"]) == {"value", "lambda (paper)"}
    assert sorted(seen[-1].loc[seen[-1]["ablation"] == "value", "value"]) == ["0.1", "0.3"]


def test_radar_from_scores_and_paper(scores, tmp_path):
    assert main(["plot", "radar", str(scores), "--paper", "--paper-methods", "Flux", "LeapAlign",
                 "--out", str(tmp_path / "radar.png")]) == 0
    assert png(tmp_path / "radar.png") == ("PNG", (600, 600))


def test_grid_from_sample_dirs(tmp_path):
    dirs = [write_samples(tmp_path / name, [{"prompt": f"prompt {i}"} for i in range(3)]) for name in ("a", "b")]
    out = tmp_path / "grid.png"
    assert main(["plot", "grid", *map(str, dirs), "--prompts", "2", "--cell", "64", "--labels", "base", "tuned",
                 "--out", str(out)]) == 0
    assert png(out) == ("PNG", (2 * 64, 2 * 64))


def test_plot_bad_input(scores, tmp_path, capsys):
    cases = [
        (["curves", str(tmp_path / "missing-run")], "metrics.jsonl"),
        (["ablation", str(scores), "--key", "method.alpha", "--run-dirs", str(tmp_path / "unknown")], "--run-dirs"),
        (["ablation", str(scores), "--values-from", "name", "--pattern", "zzz(1)"], "--pattern"),
        (["radar"], "scores files and/or --paper"),
        (["radar", "--paper", "--paper-methods", "Nobody"], "--paper-methods"),
    ]
    for args, expected in cases:
        assert main(["plot", *args, "--out", str(tmp_path / "x.png")]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("leapbench plot: ") and expected in err[0], (args, err)
    assert not (tmp_path / "x.png").exists()


def test_geneval_prompts_counts_follow_the_ratios(tmp_path, capsys):
    out = tmp_path / "train.jsonl"
    assert main(["geneval-prompts", "--n", "34", "--ratios", "7:5:3:1:1:0", "--seed", "3", "--out", str(out)]) == 0
    rows = load_metadata(out)
    counts = {tag: sum(r["tag"] == tag for r in rows) for tag in GENEVAL_TASKS}
    assert counts == {"position": 14, "counting": 10, "color_attr": 6, "colors": 2, "two_object": 2,
                      "single_object": 0}
    assert len({r["prompt"] for r in rows}) == 34
    assert "position 14" in capsys.readouterr().out
    again = tmp_path / "again.jsonl"
    assert main(["geneval-prompts", "--n", "34", "--seed", "3", "--out", str(again)]) == 0
    assert again.read_text() == out.read_text()  # the paper's ratios are the default; same seed, same prompts
    for ratios in ("7:5:3:1:1", "a:b:c:d:e:f", "0:0:0:0:0:0"):
        assert main(["geneval-prompts", "--n", "5", "--ratios", ratios, "--out", str(tmp_path / "bad.jsonl")]) == 2
    assert "--ratios" in capsys.readouterr().err and not (tmp_path / "bad.jsonl").exists()
    json.loads(out.read_text().splitlines()[0])
