"""Tables from synthetic per-image scores: means, bootstrap CIs, deltas, marks, paper rows, writers."""

import re

import numpy as np
import pandas as pd
import pytest

from evaluators.report import (
    GENEVAL_TASKS,
    build_table,
    read_scores,
    to_csv,
    to_latex,
    to_markdown,
    validate_scores,
    write_scores,
    write_table,
    write_tables,
)

# run -> (method, shift of the reward means, GenEval pass rate); ordered so the ranks are certain.
RUNS = {"flux-base": ("pretrained", 0.00, 0.40), "flux-refl": ("refl", 0.02, 0.50),
        "flux-drtune": ("drtune", 0.04, 0.60), "flux-leap": ("leapalign", 0.06, 0.80)}


def synthetic_scores(n_prompts=12, n_images=4, seed=0, runs=RUNS):
    """hpsv2.1 and pickscore on hpdv2 prompts (prompt effect + image noise), GenEval pass/fail per task."""
    rng = np.random.default_rng(seed)
    prompt_effect = rng.normal(0, 0.01, n_prompts)
    rows = []
    for run, (method, shift, rate) in runs.items():
        for pid in range(n_prompts):
            for image in range(n_images):
                base = dict(run=run, method=method, prompt_set="hpdv2", prompt_id=pid, prompt=f"prompt {pid}",
                            image=image, tag="", protocol="official")
                noise = rng.normal(0, 0.005, 2)
                rows.append({**base, "metric": "hpsv2.1", "value": 0.30 + shift + prompt_effect[pid] + noise[0]})
                rows.append({**base, "metric": "pickscore", "value": 22.8 + 10 * shift + noise[1]})
                for t, task in enumerate(GENEVAL_TASKS):
                    rows.append({**base, "prompt_set": "geneval", "prompt_id": 1000 * t + pid,
                                 "metric": "geneval", "tag": task, "value": float(rng.random() < rate)})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def scores():
    return synthetic_scores()


@pytest.fixture(scope="module")
def table(scores):
    return build_table(scores, layout="table2", resamples=300)


def cell(table, row, key):
    cells = table.cells.set_index(["row", "key"])
    return cells.loc[(row, key)]


def test_csv_means_equal_independent_means(table, scores, tmp_path):
    path = write_table(table, tmp_path / "t.csv")
    csv = pd.read_csv(path).set_index(["row", "key"])
    expected = scores.groupby(["run", "metric", "tag"])["value"].mean()
    for run in RUNS:
        assert csv.loc[(run, "hpsv2.1"), "mean"] == pytest.approx(expected[(run, "hpsv2.1", "")], rel=1e-12)
        assert csv.loc[(run, "pickscore"), "mean"] == pytest.approx(expected[(run, "pickscore", "")], rel=1e-12)
        tasks = [expected[(run, "geneval", task)] for task in GENEVAL_TASKS]
        for task, mean in zip(GENEVAL_TASKS, tasks):
            assert csv.loc[(run, f"geneval/{task}"), "mean"] == pytest.approx(mean)
        assert csv.loc[(run, "geneval"), "mean"] == pytest.approx(np.mean(tasks))
        assert csv.loc[(run, "geneval"), "n_prompts"] == 6 * 12
        assert np.isnan(csv.loc[(run, "hpsv3"), "mean"])  # not scored: empty in the CSV


def test_ci_contains_mean_and_narrows_with_more_prompts(table):
    for run in RUNS:
        for key in ["hpsv2.1", "pickscore", "geneval", "geneval/counting"]:
            c = cell(table, run, key)
            assert c["ci_low"] <= c["mean"] <= c["ci_high"] and c["ci_low"] < c["ci_high"]
    wide = build_table(synthetic_scores(n_prompts=200), reference=None, resamples=300)
    for key in ["hpsv2.1", "geneval"]:
        narrow = cell(wide, "flux-leap", key)
        broad = cell(table, "flux-leap", key)
        assert narrow["ci_high"] - narrow["ci_low"] < 0.6 * (broad["ci_high"] - broad["ci_low"])


def test_bootstrap_is_seeded(scores):
    a = build_table(scores, reference=None, resamples=200, seed=3).cells
    b = build_table(scores, reference=None, resamples=200, seed=3).cells
    c = build_table(scores, reference=None, resamples=200, seed=4).cells
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["ci_low"].dropna(), c["ci_low"].dropna())


def test_deltas_against_pretrained(table):
    base = cell(table, "flux-base", "hpsv2.1")["mean"]
    leap = cell(table, "flux-leap", "hpsv2.1")
    assert leap["delta"] == pytest.approx(leap["mean"] - base)
    assert cell(table, "flux-base", "geneval")["delta"] == 0
    assert cell(table, "LeapAlign (paper)", "hpsv2.1")["delta"] == pytest.approx(0.4092 - 0.3078)
    assert cell(table, "LeapAlign (paper)", "geneval")["delta"] == pytest.approx(0.7420 - 0.6535)


def test_paper_rows_carry_transcribed_values(table):
    assert table.rows[:4] == list(RUNS) and table.rows[4] == "Flux (paper)"
    assert cell(table, "LeapAlign (paper)", "hpsv2.1")["mean"] == 0.4092
    assert cell(table, "LeapAlign (paper)", "geneval")["mean"] == 0.7420
    assert cell(table, "DRTune (paper)", "geneval/position")["mean"] == 0.2750
    sd35m = build_table(synthetic_scores(n_prompts=4), layout="sd35m", resamples=50)
    assert cell(sd35m, "LeapAlign (paper)", "pickscore")["mean"] == 23.6180
    assert "SD3.5-M (paper)" in sd35m.rows


def test_ranks_are_per_source(table):
    assert cell(table, "flux-leap", "hpsv2.1")["rank"] == 1
    assert cell(table, "flux-drtune", "hpsv2.1")["rank"] == 2
    assert cell(table, "LeapAlign (paper)", "hpsv2.1")["rank"] == 1
    assert cell(table, "DRTune (paper)", "hpsv2.1")["rank"] == 2
    assert cell(table, "MixGRPO (paper)", "imagereward")["rank"] == 1
    assert cell(table, "LeapAlign (paper)", "imagereward")["rank"] == 2


def markdown_rows(text):
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return header, {cells[0]: dict(zip(header, cells)) for cells in
                    ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])}


def test_markdown_marks_and_dashes(table, tmp_path):
    header, rows = markdown_rows(write_table(table, tmp_path / "t.md").read_text())
    assert header[:3] == ["Method", "HPSv2.1 ↑", "HPSv3 ↑"] and "Attr. Binding ↑" in header
    assert list(rows) == table.rows
    leap, drtune, base = rows["flux-leap"], rows["flux-drtune"], rows["flux-base"]
    assert re.fullmatch(r"\*\*0\.\d{4}\*\* ±0\.\d{4} \(\+0\.\d{4}\)", leap["HPSv2.1 ↑"])
    assert re.fullmatch(r"<u>0\.\d{4}</u> ±0\.\d{4} \(\+0\.\d{4}\)", drtune["HPSv2.1 ↑"])
    assert "**" not in base["HPSv2.1 ↑"] and "<u>" not in base["HPSv2.1 ↑"] and "(" not in base["HPSv2.1 ↑"]
    assert leap["HPSv3 ↑"] == "–"
    mean = cell(table, "flux-leap", "hpsv2.1")["mean"]
    assert leap["HPSv2.1 ↑"].startswith(f"**{mean:.4f}**")
    assert rows["LeapAlign (paper)"]["HPSv2.1 ↑"] == "**0.4092** (+0.1014)"
    assert rows["LeapAlign (paper)"]["Two Obj. ↑"] == "**96.46** (+9.84)"  # tasks printed in percent
    assert rows["MixGRPO (paper)"]["ImageReward ↑"].startswith("**1.6155**")
    assert rows["LeapAlign (paper)"]["ImageReward ↑"].startswith("<u>1.5104</u>")


def test_latex_booktabs_and_bold(table):
    tex = to_latex(table)
    assert r"\toprule" in tex and r"\bottomrule" in tex and tex.count(r"\midrule") == 2
    mean = cell(table, "flux-leap", "hpsv2.1")["mean"]
    assert rf"\textbf{{{mean:.4f}}}" in tex
    assert r"\textbf{0.4092}" in tex and r"\underline{0.3882}" in tex
    leap_line = next(line for line in tex.splitlines() if line.startswith("flux-leap &"))
    assert leap_line.split(" & ")[2] == "--"  # HPSv3 missing


def test_latex_escapes_labels():
    runs = {"base_run": ("pretrained", 0.0, 0.5), "leap_50%": ("leapalign", 0.05, 0.6)}
    tex = to_latex(build_table(synthetic_scores(n_prompts=3, runs=runs), layout="rewards", reference=None,
                               resamples=20))
    assert r"base\_run &" in tex and r"leap\_50\% &" in tex


def test_write_tables_atomic(table, tmp_path):
    paths = write_tables(table, tmp_path / "out", "table2")
    assert sorted(p.name for p in paths) == ["table2.csv", "table2.md", "table2.tex"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["table2.csv", "table2.md", "table2.tex"]
    with pytest.raises(ValueError):
        write_table(table, tmp_path / "t.html")


def test_scores_roundtrip_and_validation(scores, tmp_path):
    write_scores(scores.iloc[: len(scores) // 2], tmp_path / "a" / "part1.parquet")
    write_scores(scores.iloc[len(scores) // 2:], tmp_path / "a" / "part2.parquet")
    back = read_scores(tmp_path / "a")
    assert len(back) == len(scores) and back["value"].sum() == pytest.approx(scores["value"].sum())
    assert str(back["prompt_id"].dtype) == "int64"
    bad = scores.assign(tag="")
    with pytest.raises(ValueError, match="task tag"):
        build_table(bad)
    with pytest.raises(ValueError, match="lack columns"):
        build_table(scores.drop(columns="prompt_id"))


def test_baseline_must_exist(scores):
    with pytest.raises(ValueError, match="baseline"):
        build_table(scores, baseline="nonexistent", resamples=10)
    no_delta = build_table(scores, baseline=None, reference=None, resamples=10)
    assert no_delta.cells["delta"].isna().all()


def test_prompt_sets_filter(scores):
    extra = scores[scores["metric"] == "hpsv2.1"].assign(prompt_set="mjhq", value=10.0)
    mixed = pd.concat([scores, extra])
    filtered = build_table(mixed, layout="rewards", reference=None, resamples=10,
                           prompt_sets={"hpsv2.1": "hpdv2"})
    plain = build_table(scores, layout="rewards", reference=None, resamples=10)
    assert cell(filtered, "flux-leap", "hpsv2.1")["mean"] == pytest.approx(
        cell(plain, "flux-leap", "hpsv2.1")["mean"])
    assert to_markdown(filtered) == to_markdown(plain)


def test_every_number_of_another_protocol_is_marked_and_explained(scores, tmp_path):
    """GenEval with transformers' detector and an old file without protocols: marked per protocol, noted below."""
    mixed = scores.assign(protocol=np.where(scores["metric"] == "geneval", "hf-mask2former", "official"))
    old = scores[scores["run"] == "flux-base"].drop(columns="protocol")
    table = build_table(pd.concat([mixed[mixed["run"] != "flux-base"], old]), layout="table2", resamples=50)
    assert cell(table, "flux-leap", "geneval")["protocol"] == "hf-mask2former"
    assert cell(table, "flux-leap", "hpsv2.1")["protocol"] == "official"
    assert cell(table, "flux-base", "hpsv2.1")["protocol"] == "unrecorded"
    assert cell(table, "LeapAlign (paper)", "geneval")["protocol"] == "paper"
    text = write_table(table, tmp_path / "t.md").read_text()
    header, rows = markdown_rows(text)
    assert rows["flux-leap"]["GenEval ↑"].endswith("†") and not rows["flux-leap"]["HPSv2.1 ↑"].endswith("†")
    assert rows["flux-base"]["HPSv2.1 ↑"].endswith("‡")
    assert not any(v.endswith(("†", "‡")) for v in rows["LeapAlign (paper)"].values())
    assert "† hf-mask2former: GenEval's rules with transformers' Mask2Former" in text
    assert "‡ unrecorded: not recorded" in text
    assert "\\textsuperscript{\\dag}" in to_latex(table) and "% \\dag hf-mask2former" in to_latex(table)
    assert "protocol" in to_csv(table).splitlines()[0]


def test_only_known_protocols_are_accepted(scores):
    with pytest.raises(ValueError, match="unknown protocols"):
        validate_scores(scores.assign(protocol="my-own-detector"))
