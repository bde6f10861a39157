"""Run configs: defaults -> YAML -> dotted overrides; every bad value fails with one message naming its field,
before any model is loaded and before the run directory exists."""

from pathlib import Path

import pytest
import yaml

from benchmark.cli import main
from benchmark.core.testing import tiny_cache
from benchmark.training.config import config_from_dict, dump_config, load_config
from benchmark.training.testing import tiny_tree

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def base(tmp_path):
    """A valid tiny FLUX run config on disk (reward: HPSv2 pointing at a placeholder checkpoint file)."""
    tree = tiny_tree(tmp_path, "flux", "leapalign")
    (tmp_path / "HPS_v2.1_compressed.pt").write_bytes(b"")
    tree["reward"] = {"name": "hpsv2", "path": str(tmp_path / "HPS_v2.1_compressed.pt")}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(tree))
    return tmp_path, path, Path(tree["run_dir"])


def test_valid_config_passes_dry_run(base, capsys):
    tmp, path, run_dir = base
    assert main(["train", "--config", str(path), "--dry-run", "method.alpha=0.1"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["method"]["alpha"] == 0.1 and printed["optim"]["lr"] == 1e-3
    assert not run_dir.exists()  # a dry run creates nothing


def test_precedence_defaults_yaml_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("optim:\n  lr: 1e-4\nmethod:\n  name: leapalign\n  alpha: 0.2\nschedule:\n  iterations: 7\n")
    cfg = load_config(path, ["method.alpha=0.1", "schedule.num_steps=10", "backbone.path=/models/flux"])
    assert cfg.optim.lr == 1e-4  # YAML over default ("1e-4" is a string in YAML 1.1 and is read as a number)
    assert cfg.method.alpha == 0.1  # override over YAML
    assert cfg.schedule.iterations == 7 and cfg.schedule.num_steps == 10
    assert cfg.optim.weight_decay == 1e-4 and cfg.optim.ema_decay == 0.995  # the paper's defaults (A5)
    assert cfg.schedule.global_batch == 64 and cfg.optim.grad_clip == 1.0 and cfg.backbone.height == 720
    assert type(cfg.method).__name__ == "LeapAlignConfig"


def test_resolved_config_round_trips(tmp_path):
    tree = tiny_tree(tmp_path, "sd3", "drtune")
    cfg = config_from_dict(tree)
    dump_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again.to_dict() == cfg.to_dict()
    assert again.method.K == 2 and again.backbone.name == "sd3"


def _make_layout_dir(tmp):
    (tmp / "not-diffusers").mkdir()
    return [f"backbone.path={tmp / 'not-diffusers'}", "backbone.tiny=false"]


BAD = [
    # (id, overrides or a callable(tmp) -> overrides, the field the message must name)
    ("negative_lr", ["optim.lr=-1"], "optim.lr"),
    ("zero_grad_clip", ["optim.grad_clip=0"], "optim.grad_clip"),
    ("ema_decay_one", ["optim.ema_decay=1.0"], "optim.ema_decay"),
    ("batch_not_divisible_by_micro", ["schedule.global_batch=3"], "schedule.global_batch"),
    ("missing_cache", ["prompts.cache=/nonexistent/cache"], "prompts.cache"),
    ("unknown_reward", ["reward.name=aesthetic9000"], "reward.name"),
    ("missing_reward_checkpoint", ["reward.path=/nonexistent/hps.pt"], "reward.path"),
    ("unknown_reward_key", ["reward.scale=2"], "reward.scale"),
    ("unknown_method", ["method.name=dpo"], "method.name"),
    ("alpha_1.5", ["method.alpha=1.5"], "method.alpha"),
    ("unknown_method_key", ["method.beta=1"], "method.beta"),
    ("num_steps_1", ["schedule.num_steps=1"], "schedule.num_steps"),
    ("empty_timestep_range", ["method.timestep_range=[3, 2]"], "method.timestep_range"),
    ("timestep_range_beyond_T", ["method.timestep_range=[1, 30]"], "method.timestep_range"),
    ("refl_m_beyond_T", lambda tmp: _with_method(tmp, {"name": "refl", "m": 30}), "method.m"),
    ("drtune_K_beyond_T", lambda tmp: _with_method(tmp, {"name": "drtune", "K": 5, "m": 2}), "method.K"),
    ("missing_model_dir", ["backbone.tiny=false", "backbone.path=/nonexistent/flux"], "backbone.path"),
    ("not_a_diffusers_layout", _make_layout_dir, "backbone.path"),
    ("unknown_backbone", ["backbone.name=sdxl"], "backbone.name"),
    ("unknown_key", ["optim.learning_rate=1e-5"], "optim.learning_rate"),
    ("unknown_section", ["optimizer.lr=1e-5"], "optimizer"),
    ("wrong_type_int", ["schedule.iterations=ten"], "schedule.iterations"),
    ("wrong_type_bool", ["train.gradient_checkpointing=maybe"], "train.gradient_checkpointing"),
    ("wrong_type_section", ["optim=3"], "optim"),
    ("lora_with_fsdp", ["train.lora.rank=4", "distributed.strategy=fsdp"], "distributed.strategy"),
    ("negative_lora_rank", ["train.lora.rank=-2"], "train.lora.rank"),
    ("bad_override_syntax", ["optim.lr"], "override"),
    ("cache_of_other_backbone", lambda tmp: [f"prompts.cache={tiny_cache(tmp / 'sd3-cache', 'sd3')}"], "prompts.cache"),
    ("uncached_prompt_file", lambda tmp: [f"prompts.file={_write(tmp / 'p.txt', 'a prompt never embedded')}"],
     "prompts.cache"),
    ("missing_prompt_file", ["prompts.file=/nonexistent/prompts.txt"], "prompts.file"),
    ("bad_resume", ["--resume", "/nonexistent/ckpt"], "--resume"),
]


def _with_method(tmp, method):
    """A second YAML with another method section (argparse keeps the last --config)."""
    tree = yaml.safe_load((tmp / "run.yaml").read_text())
    tree["method"] = method
    (tmp / "other.yaml").write_text(yaml.safe_dump(tree))
    return ["--config", str(tmp / "other.yaml")]


def _write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize("overrides, field", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_config_fails_before_anything(base, overrides, field, capsys, monkeypatch):
    tmp, path, run_dir = base
    monkeypatch.setattr("benchmark.core.backbones.build_backbone", _never)  # nothing may be loaded
    args = overrides(tmp) if callable(overrides) else overrides
    assert main(["train", "--config", str(path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("leapbench train: ") and f"{field}:" in err and "expected" in err, err
    assert len(err.splitlines()) == 1  # one clear message, no traceback
    assert not run_dir.exists()


def _never(*args, **kwargs):
    raise AssertionError("a model was loaded for a bad config")


def test_batch_not_divisible_by_world_size(base, capsys, monkeypatch):
    tmp, path, run_dir = base
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "schedule.global_batch" in err and "world size x micro batch (3 x 2)" in err
    assert not run_dir.exists()


@pytest.mark.parametrize("text, what", [("optim: [1, 2\n", "valid YAML"), ("- 1\n- 2\n", "a YAML mapping")])
def test_bad_yaml(tmp_path, capsys, text, what):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["train", "--config", str(path), f"run_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert "--config" in err and what in err
    assert not (tmp_path / "run").exists()


def test_existing_run_needs_resume(base, capsys):
    tmp, path, run_dir = base
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text("")
    assert main(["train", "--config", str(path)]) == 2
    assert "run_dir: expected a new directory, or --resume auto" in capsys.readouterr().err
    assert sorted(p.name for p in run_dir.iterdir()) == ["metrics.jsonl"]  # untouched
