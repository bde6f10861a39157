"""Spec expansion, stable ids, the paper's spec files (validated with dummy paths), dry runs; no Slurm."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from benchmark.core.errors import ConfigError
from sweeps.launcher import SlurmOptions, launch, minutes, stage_options, validate
from sweeps.records import read_records
from sweeps.spec import load_spec, spec_files
from tests.sweeps.helpers import make_dummy_paths, tiny_spec


def test_grid_times_list_and_stable_ids(tmp_path):
    tree = tiny_spec(tmp_path)
    tree["grid"] = {"seed": [0, 1], "optim.lr": [1e-3, 2e-3]}
    spec = load_spec(tree)
    trained = [r for r in spec.runs if r.train]
    assert len(trained) == 3 * 4
    # the pretrained run does not depend on training settings: one run for the whole grid
    assert [r.name for r in spec.runs if not r.train] == ["pretrained-seed0-lr0.001"]
    assert len({r.id for r in spec.runs}) == len(spec.runs)
    assert load_spec(tree).runs[5].id == spec.runs[5].id  # stable across loads
    la = spec.run("leapalign-seed1-lr0.002")
    assert la.config["seed"] == 1 and la.config["optim"]["lr"] == 2e-3 and la.config["method"]["alpha"] == 0.3
    tree["grid"]["method.lam"] = [1.0]  # a grid applies to every entry: refl has no lam
    with pytest.raises(ConfigError, match=r"refl.*method\.lam"):
        load_spec(tree)


def test_method_section_with_another_name_replaces_the_base(tmp_path):
    tree = tiny_spec(tmp_path, methods=("refl",))
    tree["base"]["method"] = {"name": "leapalign", "alpha": 0.1}
    spec = load_spec(tree)
    assert spec.run("refl").config["method"] == {"name": "refl", "m": 3}
    assert [s for s, _ in spec.run("pretrained").stages] == ["sample", "score"]
    assert [s for s, _ in spec.run("refl").stages] == ["train", "sample", "score"]


def test_id_changes_with_the_config_not_with_the_paths(tmp_path, monkeypatch):
    tree = {"name": "x", "paths": {"MODEL": None}, "base": {"backbone": {"name": "flux", "path": "${MODEL}"}},
            "runs": [{"name": "a"}], "eval": {"cache": "${MODEL}/cache"}}
    monkeypatch.setenv("MODEL", "/models/one")
    one = load_spec(tree).runs[0]
    monkeypatch.setenv("MODEL", "/models/two")
    two = load_spec(tree).runs[0]
    assert one.id == two.id and two.config["backbone"]["path"] == "/models/two"
    tree["runs"] = [{"name": "a", "optim.lr": 2e-5}]
    assert load_spec(tree).runs[0].id != one.id


def test_unset_path_variable_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("FLUX_DIR", raising=False)
    with pytest.raises(ConfigError, match="FLUX_DIR"):
        load_spec(spec_files()[0])
    assert load_spec(spec_files()[0], require_paths=False).unresolved


def test_invalid_value_names_run_and_field(tmp_path):
    tree = tiny_spec(tmp_path)
    tree["runs"][2]["method"]["alpha"] = 1.5
    with pytest.raises(ConfigError, match=r"drtune|leapalign|method\.") as err:
        load_spec(tree)
    tree = tiny_spec(tmp_path)
    tree["runs"][3]["method"]["alpha"] = 1.5  # leapalign
    with pytest.raises(ConfigError, match=r"leapalign.*method\.alpha.*\[0, 1\]"):
        load_spec(tree)
    assert err.value


@pytest.fixture(scope="module")
def dummy_paths(tmp_path_factory):
    return make_dummy_paths(tmp_path_factory.mktemp("paths"))


@pytest.mark.parametrize("path", spec_files(), ids=lambda p: p.stem)
def test_paper_spec_loads_and_validates(path, dummy_paths, tmp_path):
    spec = load_spec(path, variables=dummy_paths)
    assert spec.runs and not spec.unresolved
    validate(spec, tmp_path, "slurm", stage_options(spec, None))  # world size 16: global batch 64 divides
    train = [r for r in spec.runs if r.train]
    assert all(r.config["optim"]["weight_decay"] == 1e-4 for r in train)
    # the reward-gradient rows: 64 samples per step; the GRPO rows take their peers' batches (test_specs_grpo.py)
    assert all(r.config["schedule"]["global_batch"] == 64 for r in train if r.config["method"]["name"] != "grpo")
    assert all(r.config["eval"]["steps"] == 50 and r.config["eval"]["images"] == 4 for r in spec.runs)


def test_paper_settings(dummy_paths):
    runs = {r.name: r.config for r in load_spec(spec_files()[0].parent / "table3-rewards.yaml", variables=dummy_paths).runs}
    expected = {"hpsv2": (0.3, 0.55, 1e-5), "pickscore": (0.1, 0.4, 1e-5), "hpsv3": (0.1, 13.5, 8e-6)}
    for reward, (alpha, lam, lr) in expected.items():
        cfg = runs[f"leapalign-{reward}-seed0"]
        assert (cfg["method"]["alpha"], cfg["method"]["lam"], cfg["optim"]["lr"], cfg["reward"]["name"]) == (
            alpha, lam, lr, reward)
    flux = runs["leapalign-hpsv2-seed0"]
    assert flux["backbone"] | {} == flux["backbone"] and flux["backbone"]["height"] == 720
    assert (flux["schedule"]["num_steps"], flux["schedule"]["iterations"], flux["optim"]["ema_decay"]) == (25, 300, 0.995)
    sd3 = load_spec(spec_files()[0].parent / "appendix-sd35m.yaml", variables=dummy_paths).run("leapalign-seed0")
    assert (sd3.config["backbone"]["height"], sd3.config["schedule"]["iterations"]) == (512, 200)
    ablation = load_spec(spec_files()[0].parent / "ablation-alpha.yaml", variables=dummy_paths)
    assert [r.config["method"]["alpha"] for r in ablation.runs] == [0, 0.1, 0.3, 0.5, 1]


def test_world_size_is_checked_before_submission(dummy_paths, tmp_path):
    spec = load_spec(spec_files()[0].parent / "table2-hpdv2.yaml", variables=dummy_paths)
    with pytest.raises(ConfigError, match="global_batch"):
        launch(spec, "slurm", tmp_path, SlurmOptions(nodes=3, gpus_per_node=7), dry_run=True)


def test_dry_run_prints_jobs_and_sbatch_parameters(dummy_paths, tmp_path, capsys, monkeypatch):
    from benchmark.cli import main

    for k, v in dummy_paths.items():
        monkeypatch.setenv(k, v)
    spec_path = spec_files()[0].parent / "table2-hpdv2.yaml"
    rc = main(["sweep", "launch", str(spec_path), "--root", str(tmp_path), "--dry-run", "--partition", "gpu",
               "--account", "proj", "--qos", "high", "--time", "1-00:00:00", "--mem-per-task-gb", "100",
               "--sbatch=--exclusive", "--sbatch=--comment=leap", "--no-memory-check"])
    out = capsys.readouterr().out
    assert rc == 0 and "would submit 14 jobs" in out  # 4 x 3 trained stages + 2 for pretrained
    assert "#SBATCH --nodes=2" in out and "#SBATCH --ntasks-per-node=8" in out and "#SBATCH --gpus-per-node=8" in out
    assert "#SBATCH --partition=gpu" in out and "#SBATCH --account=proj" in out and "#SBATCH --qos=high" in out
    assert "#SBATCH --time=1440" in out and "#SBATCH --mem=819200MB" in out and "#SBATCH --exclusive" in out
    assert "#SBATCH --comment=leap" in out and "aftercorr:<train-" in out and "#SBATCH --kill-on-invalid-dep=yes" in out
    assert not (tmp_path / "jobs.json").exists() and read_records(tmp_path) == []


def test_slurm_time_parsing():
    assert minutes("24:00:00") == 1440 and minutes("1-02:00:00") == 1560 and minutes(90) == 90 and minutes("30") == 30
    assert minutes("1-02") == 1560 and minutes("1-02:30") == 1590 and minutes("10:30") == 11  # Slurm's forms
    with pytest.raises(ConfigError):
        minutes("0")


def test_debug_cluster_runs_the_whole_sweep_in_process(tmp_path):
    from sweeps.collect import collect
    from sweeps.status import sweep_status

    spec = load_spec(tiny_spec(tmp_path, methods=("leapalign",)))
    records = launch(spec, "debug", tmp_path / "root")
    assert [r.stages for r in records] == [["sample", "score"], ["train", "sample", "score"]]
    status = sweep_status(spec, tmp_path / "root")
    assert list(status["state"]) == ["DONE", "DONE"] and list(status["step"]) == [0, 4]
    paths = collect(spec, tmp_path / "root", tmp_path / "out")
    assert {p.name for p in paths} >= {"tiny.md", "tiny.csv", "tiny-curves.png", "index.html"}
    # the report's browser: both runs' real samples side by side, each image with its own score
    browser = json.loads((tmp_path / "out" / "report" / "report.json").read_text())
    scores = pd.read_parquet(tmp_path / "out" / "tiny-scores.parquet").set_index(["run", "prompt_id", "image"])
    assert [s["label"] for s in browser["sets"]] == ["pretrained", "leapalign"] and browser["images"] == 2
    assert len(browser["prompts"]) == 2
    for prompt in browser["prompts"]:
        for k in range(2):
            for column, run in enumerate(["pretrained", "leapalign"]):
                assert (tmp_path / "out" / "report" / prompt["img"][k][column]).is_file()
                expected = scores.loc[(run, prompt["id"], k), "value"]
                assert prompt["scores"]["hpsv2.1"][k][column] == round(float(expected), 6)
    assert launch(spec, "debug", tmp_path / "root") == []  # finished: nothing to do


def test_dry_run_prints_the_whole_plan_and_lists_every_missing_input(tmp_path, capsys, monkeypatch):
    from benchmark.cli import main

    names = ["FLUX_DIR", "HPS_CKPT", "PICKSCORE_DIR", "HPSV3_DIR", "IMAGEREWARD_DIR", "UNIFIED_REWARD_URL",
             "CACHE_DIR", "PROMPTS_DIR"]
    for name in names:
        monkeypatch.delenv(name, raising=False)
    spec_path = spec_files()[0].parent / "table2-hpdv2.yaml"
    assert main(["sweep", "launch", str(spec_path), "--root", str(tmp_path / "root"), "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert "would submit 14 jobs" in captured.out and captured.out.count("#SBATCH --nodes=") == 14
    assert all(f"paths.{name}: set {name}" in captured.err for name in names)
    assert "Traceback" not in captured.err and not (tmp_path / "root").exists()
