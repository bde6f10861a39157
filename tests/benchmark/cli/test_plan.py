"""``leapbench plan``: the predicted peak per rank of a run config or a sweep spec's training runs, whether it fits
a GPU (exit 1 when not), and one clear error (exit 2, no traceback) for bad input."""

import argparse
import json

import pytest
import yaml

from benchmark.cli import main
from benchmark.cli.plan import planned_runs
from benchmark.training.plan import CATEGORIES, check_plannable
from benchmark.training.testing import tiny_tree
from sweeps.spec import spec_files
from tests.sweeps.helpers import tiny_spec


def write(path, tree):
    path.write_text(yaml.safe_dump(tree))
    return str(path)


@pytest.fixture()
def run_config(tmp_path):
    tree = tiny_tree(tmp_path)
    tree["schedule"]["micro_batch"] = 1
    return write(tmp_path / "run.yaml", tree)


def test_plan_of_a_run_config_as_json_and_its_fit(run_config, capsys):
    assert main(["plan", run_config, "schedule.num_steps=3", "--json", "--gpu-mem-gb", "1.001"]) == 1  # does not fit
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (row["run"], row["backbone"], row["T"], row["world_size"], row["fits"]) == ("run", "flux (tiny)", 3, 1, False)
    assert sum(row["split_bytes"].values()) == row["peak_bytes"] > 0 and set(row["split_bytes"]) <= set(CATEGORIES)
    assert row["peak_GiB"] == pytest.approx(sum(row[f"{k}_GiB"] for k in CATEGORIES))


def test_plan_of_a_sweep_spec_prints_a_table(tmp_path, capsys):
    spec = write(tmp_path / "spec.yaml", tiny_spec(tmp_path, methods=("leapalign",)))
    assert main(["plan", spec, "--gpu-mem-gb", "80"]) == 0
    out = capsys.readouterr().out
    assert "leapalign" in out and "pretrained" not in out  # only runs that train
    assert "peak_GiB" in out and "activations_GiB" in out and "fits: peak <= 75.0 GiB usable of 80 GB" in out


@pytest.mark.parametrize("args, message", [
    (["missing.yaml"], "FILE: expected a run config or a sweep spec"),
    (["{run}", "backbone.height=abc"], "backbone.height"),
    (["{run}", "backbone.name=toy"], "backbone.name: expected flux or sd3 to plan"),
    (["{run}", "--world-size", "0"], "--world-size"),
    (["{run}", "--world-size", "3"], "schedule.global_batch"),
    (["{run}", "--gpu-mem-gb", "-1"], "--gpu-mem-gb"),
    (["{spec}", "seed=1"], "overrides: expected none with a sweep spec"),
    (["{bad}"], "FILE"),
])
def test_bad_input_is_one_clear_error(tmp_path, run_config, capsys, args, message):
    spec = write(tmp_path / "spec.yaml", tiny_spec(tmp_path, methods=("leapalign",)))
    (tmp_path / "bad.yaml").write_text("backbone: [unclosed\n")
    files = {"run": run_config, "spec": spec, "bad": str(tmp_path / "bad.yaml")}
    assert main(["plan", *[a.format(**files) for a in args]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("leapbench plan: ") and message in err and "Traceback" not in err


@pytest.mark.parametrize("name, backbone, height", [("table2-hpdv2", "flux", 720), ("appendix-sd35m", "sd3", 512)])
def test_paper_specs_plan_without_their_paths(name, backbone, height):
    """The paper's specs are planned at their Slurm world size (16) with no model path set (nothing is read)."""
    args = argparse.Namespace(file=str(spec_files()[0].parent / f"{name}.yaml"), overrides=[], set=[], world_size=None)
    runs = planned_runs(args)
    assert [r[0] for r in runs] == ["refl-seed0", "draft_lv-seed0", "drtune-seed0", "leapalign-seed0"]
    for _, cfg, world in runs:
        check_plannable(cfg, world)
        assert (cfg.backbone.name, cfg.backbone.height, world, cfg.accumulation(world)) == (backbone, height, 16, 4)
