"""The CPU demo end to end at a smaller size: the real sweep path (submitit's local executor), table, plots, and
its HTML report opened in a real browser (headless Chromium)."""

import contextlib
import io
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from benchmark.cli import main

ROWS = ["Pretrained", "ReFL", "DRaFT-LV", "DRTune", "LeapAlign", "Full backprop", "GRPO", "DanceGRPO", "MixGRPO",
        "Flow-GRPO"]


@pytest.fixture(scope="module")
def toy_demo(tmp_path_factory):
    """One toy demo (15 iterations, 300 held-out samples) for the tests below: its folder and what it printed.
    LEAPBENCH_DEMO=DIR takes a finished demo's folder instead, for README's screenshots of a default demo:
    ``leapbench demo`` then ``LEAPBENCH_DEMO=results/demo LEAPBENCH_SCREENSHOTS=docs/images pytest
    tests/benchmark/cli/test_demo.py -k browser``."""
    if os.environ.get("LEAPBENCH_DEMO"):
        return Path(os.environ["LEAPBENCH_DEMO"]), ""
    out = tmp_path_factory.mktemp("toy") / "demo"
    threads = os.environ.get("OMP_NUM_THREADS")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(["demo", "--out", str(out), "--iterations", "15", "--samples", "300"])
    assert status == 0
    assert os.environ.get("OMP_NUM_THREADS") == threads  # the jobs' one-thread setting does not leak to the caller
    return out, printed.getvalue()


def test_toy_demo_through_the_local_executor(toy_demo):
    out, printed = toy_demo
    table = pd.read_csv(out / "table.csv")
    assert list(table["method"]) == ROWS
    assert (table["samples"] == 300).all()
    # the pretrained flow rarely makes the preferred blob (about 5% of the data)
    assert table.loc[table["method"] == "Pretrained", "preferred"].item() < 0.12
    for metric in ("reward", "preferred"):
        assert (table[f"{metric}_ci_low"] <= table[metric]).all() and (table[metric] <= table[f"{metric}_ci_high"]).all()
    md = (out / "table.md").read_text()
    assert md.count("\n| ") == len(ROWS) + 1 and "LeapAlign" in md.split("\n- ")[-1]  # the verdict names LeapAlign
    assert "15 iterations x batch 64" in md and "own T: DanceGRPO 16, MixGRPO 25, Flow-GRPO 6" in md
    assert (table["train_s_per_1k"].isna() == (table["method"] == "Pretrained")).all()  # cost of every trained run
    for name, size in (("reward_curves.png", (1000, 400)), ("grad_norms.png", (1000, 400)), ("samples.png", (2700, 320))):
        with Image.open(out / name) as image:
            assert image.size == size
    assert "table.md" in printed and "report/index.html" in printed and str(out) in printed
    # every trained run drew the same samples in the same optimiser steps: 15 x 64 (the presets in rollout batches
    # of 64 x their steps per rollout: DanceGRPO 3, MixGRPO 4, Flow-GRPO 2)
    for run_dir in (out / "sweep" / "runs").iterdir():
        if run_dir.name.startswith("pretrained"):
            continue
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        updates = {"dancegrpo": 3, "mixgrpo": 4, "flowgrpo": 2}.get(run_dir.name.split("-")[0], 1)
        assert len(rows) == 15 // updates and all(r.get("updates", 1) == updates for r in rows)
        batch = yaml.safe_load((run_dir / "config.yaml").read_text())["schedule"]["global_batch"]
        assert batch == 64 * updates


def test_the_demo_report_in_a_real_browser(toy_demo, chromium, tmp_path):
    """Headless Chromium opens report/index.html from the file system: the table (sortable), the figures and
    the sample browser (paging, ordering by disagreement) work, nothing is fetched from anywhere but the
    report's folder, the console stays free of errors, and the screenshots are not blank."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from tests.benchmark.cli.browser import (
        console_errors,
        images_loaded,
        ink,
        open_browser,
        requested_urls,
        screenshot,
        scroll_to,
        texts,
        wait_for_images,
    )

    out, _ = toy_demo
    index = out / "report" / "index.html"
    data = json.loads((out / "report" / "report.json").read_text())
    with open_browser(chromium) as chrome:
        chrome.get(index.as_uri())
        assert texts(chrome, "#results-table tbody td:first-child") == ROWS
        assert chrome.find_element(By.CSS_SELECTOR, "#results-table tbody tr.baseline td").text == "Pretrained"
        figures = images_loaded(chrome, "#curves img")  # curves, grad norm, t_min / k / j draws, the demo's samples
        assert len(figures) == 4 and all(figures)
        top = screenshot(chrome)

        # sorting: the reward column, descending then ascending, by the numbers behind the cells
        headers = chrome.find_elements(By.CSS_SELECTOR, "#results-table th")
        column = [h.text for h in headers].index("reward ↑")
        cells = f"#results-table tbody td:nth-child({column + 1})"
        for order in ("descending", "ascending"):
            headers[column].click()
            values = [float(e.get_attribute("data-sort")) for e in chrome.find_elements(By.CSS_SELECTOR, cells)]
            assert values == sorted(values, reverse=order == "descending")
            assert headers[column].get_attribute("aria-sort") == order

        # the sample browser: 5 prompts a page, a column per run; next page; order by disagreement; jump to one
        scroll_to(chrome, "#samples")
        first = texts(chrome, "#browser .prompt .text")
        assert len(first) == 5
        assert len(chrome.find_elements(By.CSS_SELECTOR, "#browser .prompt:first-child figure")) == len(ROWS)
        wait_for_images(chrome, "#browser .prompt img")
        chrome.find_element(By.CSS_SELECTOR, "#browser button.next").click()
        assert texts(chrome, "#browser .prompt .text") != first
        assert "page 2 /" in chrome.find_element(By.CSS_SELECTOR, "#browser .page").text
        Select(chrome.find_element(By.CSS_SELECTOR, "#browser select.order")).select_by_value("reward")
        most = data["orders"]["reward"][0]
        prompt = data["prompts"][most]
        assert texts(chrome, "#browser .prompt .text")[0] == f"#{prompt['id']} {prompt['text']}"
        chrome.find_element(By.CSS_SELECTOR, "ol.disagree a").click()
        assert "flash" in chrome.find_element(By.ID, f"prompt-{most}").get_attribute("class")
        wait_for_images(chrome, "#browser .prompt img")
        scroll_to(chrome, "#browser .controls")
        samples = screenshot(chrome)

        assert console_errors(chrome) == []
        urls = requested_urls(chrome, index.as_uri())
        assert len(urls) > 10 and all(u.startswith(("file://", "data:")) for u in urls), urls

    for image in (top, samples):  # not blank: varied pixels in the page and in its upper half (table, figures)
        assert image.size == (1400, 1000)
        std, colours = ink(image)
        assert std > 20 and colours > 500, (std, colours)
        assert ink(image, (0, 0, 1400, 500))[0] > 20
    top.save(tmp_path / "report.png")
    samples.save(tmp_path / "report-samples.png")
    if os.environ.get("LEAPBENCH_SCREENSHOTS"):  # README's screenshots (see toy_demo)
        for name in ("report.png", "report-samples.png"):
            shutil.copyfile(tmp_path / name, Path(os.environ["LEAPBENCH_SCREENSHOTS"]) / name)


def test_tiny_flux_demo_runs_the_flux_path(tmp_path):
    out = tmp_path / "flux"
    assert main(["demo", "--backbone", "tiny-flux", "--out", str(out), "--iterations", "3", "--samples", "2",
                 "--cluster", "debug", "--methods", "refl", "leapalign", "grpo", "flowgrpo"]) == 0
    table = pd.read_csv(out / "table.csv")
    assert list(table["method"]) == ["Pretrained", "ReFL", "LeapAlign", "GRPO", "Flow-GRPO"]
    assert "preferred" not in table  # the toy's structure metric only exists on the toy
    with Image.open(out / "samples.png") as grid:  # 5 rows (runs) x the first 6 images of each, 96 px cells
        assert grid.size == (6 * 96, 5 * 96)
    browser = json.loads((out / "report" / "report.json").read_text())  # tiny FLUX's images, 2 per prompt
    assert [s["label"] for s in browser["sets"]] == ["Pretrained", "ReFL", "LeapAlign", "GRPO", "Flow-GRPO"]
    assert browser["images"] == 2 and all(all(p["img"][k]) for p in browser["prompts"] for k in range(2))
