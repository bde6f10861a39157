"""The two policy-gradient rows of Table 2 load and validate like every paper spec, trained with the peers'
presets (methods/grpo_presets.py): the preset's recipe overrides the FLUX base's schedule and optimiser."""

from methods import method_config
from sweeps.launcher import stage_options, validate
from sweeps.spec import load_spec, spec_files
from tests.sweeps.helpers import make_dummy_paths

SPECS = spec_files()[0].parent


def load(name, tmp_path):
    paths = make_dummy_paths(tmp_path / "paths")
    spec = load_spec(SPECS / f"{name}.yaml", variables=paths)
    validate(spec, tmp_path / "root", "slurm", stage_options(spec, None))  # every path checked, at the spec's GPUs
    return {r.name: r for r in spec.runs}


def test_dancegrpo_spec(tmp_path):
    runs = load("table2-dancegrpo", tmp_path)
    assert set(runs) == {"pretrained-seed0", "dancegrpo-seed0"}
    cfg = runs["dancegrpo-seed0"].config
    method = method_config(dict(cfg["method"]))
    assert (method.preset, method.eta, method.diffusion, method.train_fraction, method.clip_range, method.window) == (
        "dancegrpo", 0.3, "constant", 0.6, 1e-4, None)
    assert (method.group_size, method.minibatches, method.exclude_last, method.reward_on) == (12, 3, 1, "prediction")
    assert (cfg["schedule"]["num_steps"], cfg["schedule"]["global_batch"], cfg["schedule"]["micro_batch"]) == (16, 192, 1)
    assert (cfg["backbone"]["height"], cfg["optim"]["lr"], cfg["optim"]["ema_decay"]) == (720, 1e-5, 0.0)
    assert cfg["reward"]["name"] == "hpsv2" and cfg["schedule"]["global_batch"] // 16 == method.group_size


def test_mixgrpo_spec(tmp_path):
    runs = load("table2-mixgrpo", tmp_path)
    cfg = runs["mixgrpo-seed0"].config
    method = method_config(dict(cfg["method"]))
    assert (method.preset, method.eta, method.advantage, method.train_fraction, method.exclude_last) == (
        "mixgrpo", 0.7, "per_reward", 1.0, 2)
    assert (method.window.size, method.window.shift_every, method.window.stride) == (4, 25, 1)
    assert [(p["name"], round(p["weight"], 6)) for p in cfg["reward"]["parts"]] == [
        ("hpsv2", 0.333333), ("pickscore", 0.333333), ("imagereward", 0.333333)]
    assert cfg["schedule"]["num_steps"] == 25 and cfg["schedule"]["global_batch"] == 384 and cfg["eval"]["steps"] == 50
