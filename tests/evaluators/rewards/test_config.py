"""RewardConfig / build_reward: one clear ConfigError, naming the field, before any model is loaded."""

import pytest
import torch

from benchmark.core.errors import ConfigError
from evaluators.rewards import RewardConfig, WeightedReward, build_reward, tiny_reward
from evaluators.rewards import config as config_module


@pytest.fixture
def no_loading(monkeypatch):
    """Any attempt to load a model fails the test: validation must come first."""
    def refuse(cfg, device):
        raise AssertionError(f"tried to load {cfg.name} before validating")
    monkeypatch.setattr(config_module, "load", refuse)


@pytest.mark.parametrize("name", ["hpsv2", "pickscore", "imagereward", "hpsv3"])
def test_missing_checkpoint_path_is_one_config_error(no_loading, tmp_path, name):
    for path in (None, str(tmp_path / "absent")):
        with pytest.raises(ConfigError) as error:
            build_reward(RewardConfig(name=name, path=path))
        assert error.value.field == "reward.path"


@pytest.mark.parametrize("name,files,missing", [
    ("pickscore", ["config.json"], "model.safetensors"),
    ("imagereward", ["ImageReward.pt"], "bert-base-uncased"),
    ("hpsv3", ["HPSv3.safetensors"], "Qwen2-VL-7B-Instruct"),
])
def test_wrong_layout_is_a_config_error_naming_what_is_missing(no_loading, tmp_path, name, files, missing):
    for file in files:
        (tmp_path / file).write_text("{}")
    with pytest.raises(ConfigError, match=missing) as error:
        build_reward(RewardConfig(name=name, path=str(tmp_path)))
    assert error.value.field == "reward.path"


def test_bad_values_fail_at_construction():
    with pytest.raises(ConfigError, match="reward.name"):
        RewardConfig(name="clipscore")
    with pytest.raises(ConfigError, match="reward.weight"):
        RewardConfig(weight=float("nan"))
    with pytest.raises(ConfigError, match="reward.dtype"):
        RewardConfig(dtype="int8")
    with pytest.raises(ConfigError, match="reward.dimension"):
        RewardConfig(name="unifiedreward", path="http://127.0.0.1:1", dimension="beauty")
    with pytest.raises(ConfigError, match="reward.parts"):
        RewardConfig(name="weighted")
    with pytest.raises(ConfigError, match="reward.parts"):
        RewardConfig(name="weighted", parts=[{"name": "hpsv2"}, {"name": "hpsv2"}])
    with pytest.raises(ConfigError, match="reward.parts"):
        RewardConfig(name="hpsv2", parts=[{"name": "pickscore"}])


def test_weighted_parts_are_all_checked_before_loading(no_loading, tmp_path):
    (tmp_path / "HPS_v2.1_compressed.pt").write_bytes(b"")
    cfg = RewardConfig(name="weighted", parts=[{"name": "hpsv2", "path": str(tmp_path)},
                                               {"name": "pickscore", "path": str(tmp_path / "none"), "weight": 0.5}])
    with pytest.raises(ConfigError) as error:
        build_reward(cfg)
    assert error.value.field == "reward.parts[1].path"


def test_unifiedreward_needs_an_http_url(no_loading):
    with pytest.raises(ConfigError, match="reward.path"):
        build_reward(RewardConfig(name="unifiedreward", path="localhost:8080"))


def test_weighted_reward_sums_parts_and_is_differentiable():
    a, b = tiny_reward("hpsv2"), tiny_reward("imagereward")
    weighted = WeightedReward({"hpsv2": (a, 2.0), "imagereward": (b, -0.5)})
    x = torch.rand(2, 3, 224, 224, requires_grad=True)
    prompts = ["a cat", "a dog"]
    total, parts = weighted.score(x, prompts)  # the total and its parts from one call
    with torch.no_grad():
        expected = 2.0 * a(x, prompts) - 0.5 * b(x, prompts)
    torch.testing.assert_close(total.detach(), expected)
    torch.testing.assert_close(weighted(x, prompts).detach(), expected)
    assert {k: w for k, (_, w) in parts.items()} == {"hpsv2": 2.0, "imagereward": -0.5}
    torch.testing.assert_close(parts["hpsv2"][0], a(x, prompts).detach())
    torch.testing.assert_close(parts["imagereward"][0], b(x, prompts).detach())
    assert weighted.differentiable and weighted.name == "2*hpsv2+-0.5*imagereward"
    total.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_weighted_reward_with_a_judge_is_not_differentiable():
    from evaluators.rewards import UnifiedReward
    weighted = WeightedReward({"hpsv2": (tiny_reward("hpsv2"), 1.0),
                               "ur": (UnifiedReward("http://127.0.0.1:9"), 1.0)})
    assert not weighted.differentiable
