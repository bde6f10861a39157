"""``method.preset``: a peer's recipe expands where it is written; the resolved config shows every value it set,
and every value written beside it or later wins."""

import pytest
import yaml

from benchmark.cli import main
from benchmark.core.errors import ConfigError
from benchmark.training.config import config_from_dict, dump_config, load_config, merge_layers
from benchmark.training.testing import tiny_tree
from methods import method_config
from methods.grpo_presets import PRESETS

# each preset's settings, as its published script sets them (methods/grpo_presets.py cites the files)
EXPECTED = {
    "dancegrpo": dict(method=dict(group_size=12, eta=0.3, diffusion="constant", shared_noise=True,
                                  train_steps="per_sample", train_fraction=0.6, exclude_last=1, minibatches=3,
                                  schedule_shift=3.0, timestep_levels=1000, reward_on="prediction",
                                  advantage_std="group", clip_range=1e-4, adv_clip=5.0, kl_weight=0.0),
                      optim=dict(lr=1e-5, weight_decay=1e-4, grad_clip=1.0, ema_decay=0.0),
                      schedule=dict(num_steps=16, iterations=300, global_batch=192, micro_batch=1), lora=0, size=720),
    "mixgrpo": dict(method=dict(group_size=12, eta=0.7, diffusion="scaled", shared_noise=True, exclude_last=2,
                                train_fraction=1.0, minibatches=4, schedule_shift=3.0, timestep_levels=1000,
                                reward_on="sample", advantage="per_reward", clip_range=1e-4, kl_weight=0.0),
                    optim=dict(lr=1e-5, weight_decay=1e-4, grad_clip=1.0, ema_decay=0.0),
                    schedule=dict(num_steps=25, iterations=300, global_batch=384, micro_batch=1), lora=0, size=720),
    "flowgrpo": dict(method=dict(group_size=24, eta=0.9, diffusion="scaled", shared_noise=False, train_steps="first",
                                 train_fraction=0.99, exclude_last=0, minibatches=2, shuffle=True, schedule_shift=None,
                                 timestep_levels=0, advantage_std="global", kl_form="flow_grpo", clip_range=1e-4),
                     optim=dict(lr=3e-4, weight_decay=1e-4, grad_clip=1.0),
                     schedule=dict(num_steps=6, global_batch=1152, micro_batch=3), lora=64, size=512),
}


@pytest.mark.parametrize("preset", list(PRESETS))
def test_a_preset_sets_the_peers_recipe(tmp_path, preset):
    cfg = load_config(None, ["method.name=grpo", f"method.preset={preset}"])
    want = EXPECTED[preset]
    assert {k: getattr(cfg.method, k) for k in want["method"]} == want["method"]
    assert {k: getattr(cfg.optim, k) for k in want["optim"]} == want["optim"]
    assert {k: getattr(cfg.schedule, k) for k in want["schedule"]} == want["schedule"]
    assert cfg.train.lora.rank == want["lora"] and cfg.backbone.height == cfg.backbone.width == want["size"]
    if preset == "mixgrpo":
        assert (cfg.method.window.size, cfg.method.window.shift_every, cfg.method.window.stride) == (4, 25, 1)
    if preset == "flowgrpo":
        assert cfg.train.lora.alpha == 128 and "ff_context.net.2" in cfg.train.lora.targets
    # the resolved config shows every value; reading it back gives the same config
    dump_config(cfg, tmp_path / "config.yaml")
    written = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert written["method"]["preset"] == preset and written["optim"]["lr"] == want["optim"]["lr"]
    assert load_config(tmp_path / "config.yaml").to_dict() == cfg.to_dict()


def test_explicit_values_win_and_the_preset_expands_where_written(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("schedule: {num_steps: 25, iterations: 7}\noptim: {lr: 2.0e-5}\n"
                    "method: {name: leapalign, alpha: 0.2}\n")
    # on the command line the preset overrides the file, and the overrides beside it override the preset
    cfg = load_config(path, ["method.name=grpo", "method.preset=dancegrpo", "method.eta=0.5", "optim.lr=3e-5"])
    assert cfg.method.eta == 0.5 and cfg.method.diffusion == "constant" and cfg.optim.lr == 3e-5
    assert cfg.schedule.num_steps == 16 and cfg.schedule.iterations == 300  # the file's values lie under the preset
    # in one layer (a file, a dict) everything written wins over the preset
    tree = {"method": {"name": "grpo", "preset": "mixgrpo", "group_size": 4, "window": {"size": 2}},
            "schedule": {"num_steps": 10, "global_batch": 8}}
    cfg = config_from_dict(tree)
    assert cfg.method.group_size == 4 and cfg.method.window.size == 2 and cfg.method.window.shift_every == 25
    assert cfg.schedule.num_steps == 10 and cfg.schedule.global_batch == 8 and cfg.schedule.micro_batch == 1
    # a later layer naming another method starts its section afresh
    tree = merge_layers({"method": {"name": "leapalign", "alpha": 0.2}}, {"method": {"name": "grpo", "preset": "flowgrpo"}})
    assert "alpha" not in tree["method"] and tree["method"]["eta"] == 0.9
    assert method_config({"name": "grpo", "preset": "dancegrpo", "window": {"size": 3}}).window.size == 3


def test_leapbench_train_dry_run_prints_the_presets_values(tmp_path, capsys):
    tree = tiny_tree(tmp_path, "flux", "refl")
    tree.pop("method")
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(tree))
    assert main(["train", "--config", str(path), "--dry-run", "method.name=grpo", "method.preset=dancegrpo",
                 "schedule.global_batch=12", "method.eta=0.4"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["method"]["preset"] == "dancegrpo" and printed["method"]["eta"] == 0.4
    assert printed["method"]["timestep_levels"] == 1000 and printed["schedule"]["num_steps"] == 16
    assert printed["schedule"]["global_batch"] == 12 and printed["optim"]["ema_decay"] == 0.0


@pytest.mark.parametrize("values,field,expected", [
    ({"name": "grpo", "preset": "grpo"}, "method.preset", "one of dancegrpo, mixgrpo, flowgrpo"),
    ({"name": "leapalign", "preset": "dancegrpo"}, "method.preset", "null (leapalign has no presets)"),
])
def test_bad_preset(values, field, expected):
    with pytest.raises(ConfigError) as err:
        config_from_dict({"method": values})
    assert err.value.field == field and expected in str(err.value)
