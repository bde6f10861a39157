"""``leapbench report`` on a folder of runs and on a sweep spec (its runs' files written here, no training), and
its bad inputs: one line naming the argument, exit status 2, nothing written."""

import json

import yaml

from benchmark.cli import main
from sweeps.jobs import mark_done
from sweeps.spec import load_spec
from tests.evaluators.report.helpers import make_report_runs, make_run, scores_frame, write_sample_folder
from tests.sweeps.helpers import tiny_spec


def browser_data(index):
    html = index.read_text()
    start = html.index('<script type="application/json" id="browser-data">') + len(
        '<script type="application/json" id="browser-data">')
    return json.loads(html[start:html.index("</script>", start)])


def test_report_of_a_folder_of_runs(tmp_path, capsys):
    make_report_runs(tmp_path / "runs")
    assert main(["report", str(tmp_path / "runs"), "--layout", "rewards", "--max-prompts", "3"]) == 0
    index = tmp_path / "runs" / "report" / "index.html"
    assert f"wrote {index}" in capsys.readouterr().out
    html = index.read_text()
    assert "Flux (paper)" in html and "LeapAlign (paper)" in html  # the paper's rows of the rewards layout
    assert len(browser_data(index)["prompts"]) == 3
    table = (index.parent / "table.csv").read_text()
    assert "pretrained" in table and "leapalign" in table
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "auto")]) == 0  # layout auto
    assert "(paper)" not in (tmp_path / "auto" / "index.html").read_text()


def test_report_of_a_sweep_spec(tmp_path, capsys):
    tree = tiny_spec(tmp_path, methods=("refl", "leapalign"))
    tree["collect"]["ablation"] = "method.name"  # the ablation plot joins the page
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(tree))
    spec = load_spec(tmp_path / "spec.yaml")
    root = tmp_path / "root"
    for seed, run in enumerate(spec.runs):  # what the stages leave behind; leapalign is not scored yet
        run_dir = run.run_dir(root)
        if run.train:
            make_run(run_dir, seed, geneval=False)
        write_sample_folder(run_dir / "samples", run.name)
        done = ["train", "sample", "score"] if run.name != "leapalign" else ["train", "sample"]
        for stage in done:
            mark_done(run_dir, stage, None)
        if run.name != "leapalign":
            scores_frame(run.name).to_parquet(run_dir / "scores.parquet")
    assert main(["report", str(tmp_path / "spec.yaml"), "--root", str(root), "--out", str(tmp_path / "page")]) == 0
    html = (tmp_path / "page" / "index.html").read_text()
    assert "Sweep tiny" in html and "NOT_SUBMITTED (score)" in html and html.count(">DONE<") == 2
    assert '<td class="text">method.name</td>' in html  # the configs come from the spec
    assert 'src="img/ablation.png"' in html and (tmp_path / "page" / "img" / "ablation.png").is_file()
    data = browser_data(tmp_path / "page" / "index.html")
    assert [s["label"] for s in data["sets"]] == [r.name for r in spec.runs]
    scored = data["prompts"][0]["scores"]["hpsv2.1"][0]
    assert scored[0] is not None and scored[1] is not None and scored[2] is None  # leapalign has no scores


def test_bad_input_is_one_line_and_status_2(tmp_path, capsys):
    make_report_runs(tmp_path / "runs")
    (tmp_path / "file").write_text("")
    (tmp_path / "empty").mkdir()
    cases = [
        (["report", str(tmp_path / "missing")], "SPEC_OR_ROOT: expected a sweep spec file or a directory of runs"),
        (["report", str(tmp_path / "empty")], "SPEC_OR_ROOT: expected a run directory, a sweep root or a folder"),
        (["report", str(tmp_path / "runs"), "--thumb", "0"], "--thumb: expected an integer >= 16"),
        (["report", str(tmp_path / "runs"), "--out", str(tmp_path / "file")], "--out: expected a directory"),
        (["report", str(tmp_path / "runs"), "--baseline", "nobody"], "--layout/--baseline: expected settings"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs" / "report").exists()
