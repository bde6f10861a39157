"""The two policy-gradient rows of Table 2 load and validate like every paper spec, with the peers' settings."""

from methods import method_config
from sweeps.launcher import stage_options, validate
from sweeps.spec import load_spec, spec_files
from tests.sweeps.helpers import make_dummy_paths

SPECS = spec_files()[0].parent


def load(name, tmp_path):
    paths = make_dummy_paths(tmp_path / "paths")
    spec = load_spec(SPECS / f"{name}.yaml", variables=paths)
    validate(spec, tmp_path / "root", "slurm", stage_options(spec, None))  # 16 GPUs, every path checked
    return {r.name: r for r in spec.runs}


def test_dancegrpo_spec(tmp_path):
    runs = load("table2-dancegrpo", tmp_path)
    assert set(runs) == {"pretrained-seed0", "dancegrpo-seed0"}
    cfg = runs["dancegrpo-seed0"].config
    method = method_config(dict(cfg["method"]))
    assert (method.name, method.eta, method.train_fraction, method.clip_range, method.window) == (
        "grpo", 0.3, 0.6, 1e-4, None)
    assert (cfg["schedule"]["num_steps"], cfg["backbone"]["height"], cfg["optim"]["lr"]) == (16, 720, 1e-5)
    assert cfg["reward"]["name"] == "hpsv2" and cfg["schedule"]["micro_batch"] % method.group_size == 0


def test_mixgrpo_spec(tmp_path):
    runs = load("table2-mixgrpo", tmp_path)
    cfg = runs["mixgrpo-seed0"].config
    method = method_config(dict(cfg["method"]))
    assert (method.eta, method.advantage, method.train_fraction) == (0.7, "per_reward", 1.0)
    assert (method.window.size, method.window.shift_every, method.window.stride) == (4, 25, 1)
    assert [(p["name"], p["weight"]) for p in cfg["reward"]["parts"]] == [
        ("hpsv2", 1.0), ("pickscore", 1.0), ("imagereward", 1.0)]
    assert cfg["schedule"]["num_steps"] == 25 and cfg["eval"]["steps"] == 50
