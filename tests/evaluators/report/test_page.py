"""The report page from synthetic run directories: what it shows equals what the inputs say, it refers only to
files beside it, and a rerun reuses its thumbnails. (The browser test is tests/benchmark/cli/test_demo.py.)"""

import json
import os
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from evaluators.report import build_table, read_scores
from evaluators.report.browser import browser_data, choose, disagreement
from evaluators.report.page import protocols, write_report
from evaluators.report.runs import ONLY_SOME, RunInfo, config_diff, discover_runs, run_facts
from evaluators.report.tables import metric_columns
from tests.evaluators.report.helpers import OFFSETS, PROMPTS, make_report_runs, write_sample_folder


class Page(HTMLParser):
    """Every src/href, every table's cells (text and data-sort) by table id, and the embedded JSON."""

    def __init__(self, html):
        super().__init__()
        self.links, self.tables, self.table, self.cell, self.script = [], {}, None, None, None
        self.meta = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.links += [attrs[k] for k in ("src", "href") if k in attrs]
        if tag == "meta":
            self.meta.append(attrs)
        if tag == "table":
            self.table = self.tables.setdefault(attrs.get("id"), [])
        if tag == "tr" and self.table is not None:
            self.table.append([])
        if tag in ("td", "th") and self.table is not None:
            self.cell = {"text": "", "sort": attrs.get("data-sort"), "class": attrs.get("class", "")}
            self.table[-1].append(self.cell)
        if tag == "script":
            self.script = attrs.get("id")

    def handle_endtag(self, tag):
        if tag == "table":
            self.table = None
        if tag in ("td", "th"):
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell["text"] += data
        if self.script == "browser-data":
            self.data = json.loads(data)
            self.script = None


@pytest.fixture
def runs(tmp_path):
    return make_report_runs(tmp_path / "runs")


def report(tmp_path, runs, **options):
    infos = discover_runs(tmp_path / "runs")
    scores = read_scores([d / "scores.parquet" for d in runs.values()])
    table = build_table(scores, "rewards", "paper", "pretrained", resamples=200)
    index = write_report(tmp_path / "out", title="t", table=table, scores=scores, runs=infos, baseline="pretrained",
                         progress=False, **options)
    return index, table, Page(index.read_text())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One page for the tests that only read it (drawing the figures takes seconds)."""
    tmp = tmp_path_factory.mktemp("built")
    runs = make_report_runs(tmp / "runs")
    return (tmp, runs, *report(tmp, runs))


def test_the_page_refers_only_to_files_beside_it(built):
    _, _, index, _, page = built
    out = index.parent
    assert all(not re.match(r"^[a-z]+:|^/", link) or link.startswith("data:") for link in page.links), page.links
    missing = [link for link in page.links if not link.startswith(("data:", "#")) and not (out / link).is_file()]
    assert not missing
    policy = next(m["content"] for m in page.meta if m.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in policy and "img-src 'self' data:" in policy
    html = index.read_text()
    assert "http://" not in html and "https://" not in html and html.count("</script>") == 2
    assert {p.name for p in out.iterdir()} >= {"index.html", "img", "report.json", "table.csv", "table.md", "table.tex"}
    figures = {"curves.png", "grad_norms.png", "grad_parts.png", "choices.png"}
    assert {p.name for p in (out / "img").iterdir()} >= figures


def test_the_results_table_shows_the_table_cells(built):
    _, _, _, table, page = built
    header, *rows = page.tables["results-table"]
    labels = [c["text"] for c in header]
    filled = [c for c in table.columns if table.cells.loc[table.cells["key"] == c.key, "mean"].notna().any()]
    assert labels == ["Method", "Source", "Protocol", *(f"{c.label} ↑" for c in filled)]
    assert [r[0]["text"] for r in rows] == table.rows  # ours, then the paper's rows
    assert [r[1]["text"] for r in rows] == ["ours"] * 3 + ["paper"] * (len(table.rows) - 3)
    assert {r[2]["text"] for r in rows[:3]} == {"LeapBench"} and rows[3][2]["text"] == "as reported in the paper"
    for row in rows:
        for column, cell in zip(filled, row[3:]):
            mean = table.cells.set_index(["row", "key"]).loc[(row[0]["text"], column.key), "mean"]
            assert (cell["sort"] == "" and np.isnan(mean)) or float(cell["sort"]) == mean * column.scale
    refl = dict(zip(labels, rows[1]))["HPSv2.1 ↑"]
    # refl's hpsv2.1 mean is the pretrained one + the mean offset (0.04): printed delta (+0.0400)
    assert refl["text"].endswith("(+0.0400)") and "rank1" in refl["class"]


def test_protocols_come_from_the_cells_or_the_scores_when_they_have_them(tmp_path, runs):
    scores = read_scores([d / "scores.parquet" for d in runs.values()])
    table = build_table(scores, "rewards", None, "pretrained", resamples=10)
    assert set(protocols(table, scores).values()) == {"LeapBench"}
    tagged = scores.assign(protocol=np.where(scores["metric"] == "hpsv2.1", "official parity", "torch path"))
    found = protocols(table, tagged)
    assert found[("refl", "hpsv2.1")] == "official parity" and found[("refl", "pickscore")] == "torch path"
    table.cells["protocol"] = "from the cells"
    assert set(protocols(table, scores).values()) == {"from the cells"}


def test_the_browser_lines_up_prompts_and_orders_them_by_disagreement(built):
    _, runs, index, _, page = built
    data = page.data
    assert json.loads((index.parent / "report.json").read_text()) == data
    assert [s["label"] for s in data["sets"]] == ["leapalign", "pretrained", "refl"]  # directory order
    trained = "step 40 · EMA · 50 steps · seed 0"
    assert [s["caption"] for s in data["sets"]] == [trained, "base model · 50 steps · seed 0", trained]
    assert [p["text"] for p in data["prompts"]] == PROMPTS and data["images"] == 2
    # range over runs of each run's mean hpsv2.1 on the prompt: the largest offset minus the smallest
    ranges = [max(o[i] for o in OFFSETS.values()) - min(o[i] for o in OFFSETS.values()) for i in range(4)]
    assert [p["spread"]["hpsv2.1"][0] for p in data["prompts"]] == pytest.approx(ranges, abs=1e-6)
    assert data["orders"]["hpsv2.1"] == list(np.argsort(ranges)[::-1]) == [2, 0, 3, 1]
    assert data["prompts"][2]["spread"]["hpsv2.1"][1:] == [2, 1]  # best refl, worst pretrained (column indices)
    cat = data["prompts"][0]
    assert cat["scores"]["hpsv2.1"] == [[0.30, 0.25, 0.28], [0.301, 0.251, 0.281]]  # image k, columns
    for k in range(2):
        for column, label in enumerate(["leapalign", "pretrained", "refl"]):
            path = index.parent / cat["img"][k][column]
            source = runs[label] / "samples" / "00000" / "samples" / f"{k}.png"
            with Image.open(path) as thumb, Image.open(source) as src:
                assert thumb.format == "PNG" and np.array_equal(np.asarray(thumb), np.asarray(src))  # small: as is


def browse(tmp_path, **options):
    """The browser's data alone (no figures), for the tests of thumbnails and prompt selection."""
    infos = discover_runs(tmp_path / "runs")
    scores = read_scores([r.run_dir / "scores.parquet" for r in infos])
    return browser_data([s for r in infos for s in r.samples], scores, tmp_path / "out", progress=False, **options)


def test_thumbnails_shrink_large_images_and_are_reused(tmp_path, runs):
    for run_dir in runs.values():  # larger images than the thumbnail size
        for png in (run_dir / "samples").rglob("*.png"):
            Image.open(png).resize((100, 60)).save(png)
    first = tmp_path / "out" / browse(tmp_path, thumb=50)["prompts"][0]["img"][0][0]
    with Image.open(first) as thumb:
        assert thumb.format == "JPEG" and thumb.size == (50, 30)
    stamp = first.stat().st_mtime_ns
    source = runs["leapalign"] / "samples" / "00000" / "samples" / "0.png"
    os.utime(source, ns=(stamp - 10**11, stamp - 10**11))
    os.utime(first, ns=(stamp - 10**9, stamp - 10**9))  # still newer than its source: kept
    browse(tmp_path, thumb=50)
    assert first.stat().st_mtime_ns == stamp - 10**9
    os.utime(source, ns=(stamp, stamp))  # the source changed: remade
    browse(tmp_path, thumb=50)
    assert first.stat().st_mtime_ns > stamp - 10**9


def test_prompt_selection_keeps_the_extremes_and_a_spread_of_the_rest(tmp_path, runs):
    data = browse(tmp_path, max_prompts=2)
    assert data["total_prompts"] == 4
    # the largest disagreement (prompt 2) and one evenly spaced from the rest (0, 1, 3 -> the first)
    assert [p["id"] for p in data["prompts"]] == [0, 2]
    keys = [(i, str(i)) for i in range(10)]
    spread = pd.Series(np.arange(10.0), index=pd.MultiIndex.from_tuples(keys))
    # the two largest (8, 9), then 2 of the other 8 at positions linspace(0, 7, 2) = 0, 7
    assert choose(keys, spread, 4) == [keys[0], keys[7], keys[8], keys[9]]
    assert choose(keys, None, 0) == keys and choose(keys, spread, 20) == keys


def test_disagreement_needs_two_scored_columns():
    frame = pd.DataFrame({"prompt_id": [0, 0, 1], "prompt": ["a", "a", "b"], "column": [0, 1, 0],
                          "metric": "m", "value": [1.0, 3.0, 5.0]})
    found = disagreement(frame, "m")
    assert list(found.index) == [(0, "a")] and found.iloc[0].tolist() == [2.0, 1, 0]


def test_run_facts_and_config_diff(built):
    tmp_path = built[0]
    infos = {r.name: r for r in discover_runs(tmp_path / "runs")}
    facts = run_facts(infos["refl"])
    assert facts["status"] == "finished" and facts["steps"] == "40 / 40" and facts["wall time"] == "1:00:00"
    assert facts["GPU-hours"] == 8.0 and facts["peak memory (GB)"] == 70.0  # 1 h (both processes) x 8 GPUs
    assert run_facts(infos["pretrained"])["status"] == "scored" and run_facts(infos["pretrained"])["GPU-hours"] == ""
    diff = config_diff(list(infos.values()), "pretrained").set_index("key")
    assert list(diff.columns) == ["reference", "leapalign", "refl"]  # the pretrained run has no config.yaml
    assert diff.loc["method.name"].tolist() == ['"leapalign"', '"leapalign"', '"refl"']
    assert diff.loc[ONLY_SOME].tolist() == ["", "alpha=0.3", "m=11"] and len(diff) == 2  # run_dir is ignored
    cpu = RunInfo("x", config={"optim": {"lr": 1e-5}, "method": {"name": "refl"}})
    sections = config_diff([cpu, RunInfo("base", config={"backbone": {"name": "flux"}})], "base").set_index("key")
    assert list(sections.index) == []  # no key is held by two runs that disagree, no section shared in part


def test_metric_columns_put_the_papers_first():
    scores = pd.DataFrame({"metric": ["reward", "pickscore", "hpsv2.1"] + ["geneval"] * 6,
                           "tag": ["", "", "", "single_object", "two_object", "counting", "colors", "position",
                                   "color_attr"]})
    keys = [c.key for c in metric_columns(scores)]
    assert keys[:3] == ["hpsv2.1", "pickscore", "geneval"] and keys[-1] == "reward" and len(keys) == 10


def test_prompt_text_cannot_break_out_of_the_page(tmp_path, runs):
    evil = "</script><script>alert(1)</script> {{js}}"
    for run_dir in runs.values():
        (run_dir / "samples" / "00001" / "metadata.jsonl").write_text(json.dumps({"prompt": evil}) + "\n")
    index, _, page = report(tmp_path, runs)
    html = index.read_text()
    assert html.count("</script>") == 2 and html.count('"use strict"') == 1  # the data was not substituted into
    assert html.count("{{js}}") == 1
    assert page.data["prompts"][1]["text"] == evil


def test_a_run_folder_is_found_and_sample_sets_of_checkpoints_are_columns(tmp_path, runs):
    from evaluators.report import write_scores

    write_sample_folder(runs["refl"] / "samples-step20", "refl", step=20)
    earlier = pd.concat([read_scores(runs["refl"] / "scores.parquet"),
                         read_scores(runs["refl"] / "scores.parquet").assign(run="refl/samples-step20", value=0.0)])
    write_scores(earlier, runs["refl"] / "scores.parquet")
    found = discover_runs(runs["refl"])
    assert [r.name for r in found] == ["refl"]
    assert [(s.label, s.run, s.caption) for s in found[0].samples] == [
        ("refl", "refl", "step 40 · EMA · 50 steps · seed 0"),
        ("refl · step20", "refl/samples-step20", "step 20 · EMA · 50 steps · seed 0")]
    index = write_report(tmp_path / "one", title="t", table=None, scores=earlier, runs=found, progress=False)
    data = Page(index.read_text()).data
    assert data["prompts"][0]["scores"]["hpsv2.1"][0] == [0.28, 0.0]  # each column its own scores


def test_geneval_tables_get_the_radar_chart(tmp_path):
    from evaluators.report import GENEVAL_TASKS

    rows = [{"run": run, "method": run, "prompt_set": "geneval", "prompt_id": i, "prompt": f"p{i}", "image": 0,
             "metric": "geneval", "tag": task, "value": float((i + r) % 2)}
            for r, run in enumerate(["pretrained", "leapalign"]) for i, task in enumerate(GENEVAL_TASKS * 2)]
    scores = pd.DataFrame(rows)
    table = build_table(scores, "geneval", "paper", "pretrained", resamples=10)
    index = write_report(tmp_path / "out", title="g", table=table, scores=scores, runs=[], progress=False)
    assert 'src="img/geneval_radar.png"' in index.read_text()
    with Image.open(tmp_path / "out" / "img" / "geneval_radar.png") as radar:
        assert radar.size == (600, 600)
