"""Bad input gets one clear error naming the field and what was expected, before anything is loaded."""

import json

import pytest

from benchmark.core.backbones import BackboneConfig, build_backbone
from benchmark.core.backbones.toy import ToyBackbone, ToyConfig
from benchmark.core.errors import ConfigError
from methods import build_method, method_config

METHOD_CASES = [
    ({"name": "leapalign", "alpha": 1.5}, "method.alpha", "[0, 1]"),
    ({"name": "leapalign", "alpha": -0.1}, "method.alpha", "[0, 1]"),
    ({"name": "leapalign", "alpha": "high"}, "method.alpha", "a number, got 'high'"),
    ({"name": "leapalign", "alpha": 1.5}, "method.alpha", "a number in [0, 1], got 1.5"),
    ({"name": "leapalign", "leaps": 0}, "method.leaps", ">= 1"),
    ({"name": "leapalign", "timestep_range": [10, 5]}, "method.timestep_range", "lo <= hi"),
    ({"name": "leapalign", "timestep_range": [4, 4]}, "method.timestep_range", "at least 2 timesteps"),
    ({"name": "leapalign", "timestep_range": [0, 5]}, "method.timestep_range", "1 <= lo"),
    ({"name": "leapalign", "weighting": "dk"}, "method.weighting", "both, dj, d0, none"),
    ({"name": "leapalign", "reward_on": "x1"}, "method.reward_on", "x0, x0_hat"),
    ({"name": "leapalign", "tau": 0}, "method.tau", "> 0"),
    ({"name": "leapalign", "leaps": 1, "distance": 3}, "method.distance", "null when method.leaps is 1"),
    ({"name": "leapalign", "beta": 1}, "method.beta", "a known field (name, alpha, lam, tau, leaps"),
    ({"name": "drtune", "K": 0}, "method.K", ">= 1"),
    ({"name": "refl", "m": 0}, "method.m", ">= 1"),
    ({"name": "draft_lv", "n": -1}, "method.n", ">= 0"),
    ({"name": "full_backprop", "last_k": 0}, "method.last_k", ">= 1"),
    ({"name": "grpo2"}, "method.name", "one of refl, draft_lv, drtune, leapalign, full_backprop, grpo, got 'grpo2'"),
    ({}, "method.name", "one of"),
]


@pytest.mark.parametrize("values,field,expected", METHOD_CASES, ids=lambda v: str(v) if isinstance(v, dict) else None)
def test_method_config_errors(values, field, expected):
    with pytest.raises(ConfigError) as err:
        method_config(values)
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}: expected") and expected in str(err.value)


@pytest.mark.parametrize(
    "values,T,field",
    [
        ({"name": "leapalign", "timestep_range": [20, 30]}, 25, "method.timestep_range"),
        ({"name": "leapalign", "leaps": 3, "distance": 13}, 25, "method.timestep_range"),  # 12 fits: 25, 13, 1
        ({"name": "refl", "m": 11}, 10, "method.m"),
        ({"name": "drtune", "K": 30}, 25, "method.K"),
    ],
)
def test_method_checked_against_the_schedule(values, T, field):
    with pytest.raises(ConfigError) as err:
        build_method(values).start(T)
    assert err.value.field == field


def test_fewer_than_two_steps():
    with pytest.raises(ConfigError, match="schedule.num_steps: expected an integer >= 2, got 1"):
        ToyBackbone(ToyConfig()).schedule(1)
    from benchmark.core.backbones.tiny import tiny_flux, tiny_sd3

    for backbone in (tiny_flux(), tiny_sd3()):
        with pytest.raises(ConfigError, match="schedule.num_steps"):
            backbone.schedule(1)


def test_pinned_choices_are_checked():
    with pytest.raises(ConfigError, match="ts: expected strictly decreasing"):
        build_method({"name": "leapalign"}).start(25, k=3, j=9)
    with pytest.raises(ConfigError, match=r"ts: expected 2 timesteps in \[1, 25\]"):
        build_method({"name": "leapalign"}).start(25, k=30, j=9)
    with pytest.raises(ConfigError, match="t_min"):
        build_method({"name": "refl"}).start(25, t_min=0)


def test_unknown_backbone_and_dtype():
    with pytest.raises(ConfigError, match="backbone.name: expected one of flux, sd3, toy, got 'flux2'"):
        BackboneConfig(name="flux2")
    with pytest.raises(ConfigError, match="backbone.dtype"):
        BackboneConfig(name="flux", tiny=True, dtype="fp8")
    with pytest.raises(ConfigError, match="backbone.path: expected a local diffusers flux directory"):
        BackboneConfig(name="flux").check_paths()  # checked with the paths, before anything is loaded


def test_missing_model_directory(tmp_path):
    cfg = BackboneConfig(name="flux", path=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="backbone.path: expected an existing local diffusers model directory"):
        build_backbone(cfg)


@pytest.mark.parametrize("missing", ["transformer", "vae", "scheduler"])
def test_not_a_diffusers_layout(tmp_path, missing):
    for part, name in (("transformer", "config.json"), ("vae", "config.json"), ("scheduler", "scheduler_config.json")):
        if part != missing:
            (tmp_path / part).mkdir()
            (tmp_path / part / name).write_text(json.dumps({}))
    with pytest.raises(ConfigError, match=f"backbone.path: expected a diffusers layout with {missing}/"):
        build_backbone(BackboneConfig(name="sd3", path=str(tmp_path)))


def test_bad_resolution():
    from benchmark.core.backbones.tiny import tiny_flux

    with pytest.raises(ConfigError, match="backbone.height: expected a positive multiple of 4"):
        tiny_flux(height=30)
