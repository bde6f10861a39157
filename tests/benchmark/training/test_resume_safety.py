"""Nothing trained is lost or silently changed: a resume with a config that changes what was trained is refused
(and, when allowed, the old config is kept), a run whose checkpoints are all damaged is refused instead of
restarted, a truncated last telemetry line is dropped on resume, and non-finite weights are never checkpointed."""

import math
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from benchmark.core.checkpoint import list_checkpoints
from benchmark.core.errors import ConfigError
from benchmark.training.config import dump_config
from benchmark.training.testing import TinyReward, tiny_config
from benchmark.training.trainer import NonFiniteStop, train

ARGS = ["schedule.iterations=2", "checkpoint.every=1", "checkpoint.keep=5", "logging.grad_parts_every=0"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def finished(tmp_path):
    cfg = tiny_config(tmp_path, "flux", "leapalign", ARGS)
    train(cfg, TinyReward())
    return cfg


def files(run_dir):
    return {p.relative_to(run_dir): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("method, change", [
    ("refl", []), ("leapalign", ["method.alpha=0.5"]), ("leapalign", ["backbone.height=64"]),
    ("leapalign", ["reward.name=weighted", "reward.parts=[{name: tiny_conv}]"]),
    ("leapalign", ["schedule.num_steps=6"]), ("leapalign", ["schedule.global_batch=8"]),
    ("leapalign", ["train.lora.rank=2"])], ids=["method", "alpha", "height", "reward", "num-steps", "batch", "lora"])
def test_a_resume_that_changes_what_was_trained_is_refused_and_changes_nothing(finished, tmp_path, method, change):
    before = files(tmp_path / "run")
    cfg = tiny_config(tmp_path, "flux", method, ARGS + ["schedule.iterations=3"] + change)
    with pytest.raises(ConfigError, match="allow-config-change"):
        train(cfg, TinyReward(), resume="auto")
    assert files(tmp_path / "run") == before


def test_extending_a_run_is_no_change(finished, tmp_path):
    cfg = tiny_config(tmp_path, "flux", "leapalign", ARGS + ["schedule.iterations=3", "schedule.micro_batch=1"])
    assert train(cfg, TinyReward(), resume="auto").step == 3  # accepted; the config it replaced is kept
    assert [p.name for p in (tmp_path / "run" / "config.history").iterdir()] == ["until-step-000002.yaml"]


def test_an_allowed_change_keeps_the_old_config(finished, tmp_path):
    old = (tmp_path / "run" / "config.yaml").read_text()
    cfg = tiny_config(tmp_path, "flux", "refl", ARGS + ["schedule.iterations=3"])
    result = train(cfg, TinyReward(), resume="auto", allow_config_change=True)
    assert result.step == 3
    assert (tmp_path / "run" / "config.history" / "until-step-000002.yaml").read_text() == old
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["method"]["name"] == "refl"


def test_a_run_whose_checkpoints_are_all_damaged_is_refused(finished, tmp_path):
    for ckpt in list_checkpoints(tmp_path / "run" / "checkpoints"):
        (ckpt / "ema.safetensors").write_bytes(b"damaged")
    before = files(tmp_path / "run")
    with pytest.warns(RuntimeWarning, match="damaged"), pytest.raises(ConfigError, match="every checkpoint"):
        train(finished, TinyReward(), resume="auto")
    before.pop(Path("config.yaml"))  # the run's config: rewritten with the same content
    after = files(tmp_path / "run")
    assert {k: v for k, v in after.items() if k != Path("config.yaml")} == before  # metrics.jsonl kept whole


def test_a_cut_short_telemetry_line_is_dropped_on_resume(finished, tmp_path):
    metrics = tmp_path / "run" / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    metrics.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # killed while writing step 2 ...
    import shutil
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "step_000002")  # ... before its checkpoint
    cfg = tiny_config(tmp_path, "flux", "leapalign", ARGS + ["schedule.iterations=3"])
    train(cfg, TinyReward(), resume="auto")
    assert [yaml.safe_load(line)["step"] for line in metrics.read_text().splitlines()] == [1, 2, 3]


def test_non_finite_weights_are_never_checkpointed(tmp_path):
    cfg = tiny_config(tmp_path, "flux", "refl", ARGS + ["schedule.iterations=4"])

    def poison(step, metrics):  # after step 1 a weight overflows: every later step is non-finite
        if step == 1:
            with torch.no_grad():
                next(p for p in trainer_params() if p.requires_grad).fill_(math.inf)

    from benchmark.training.trainer import Trainer
    trainer = Trainer(cfg, TinyReward())
    trainer_params = trainer.model.parameters
    with pytest.raises(NonFiniteStop, match="non-finite weights are never checkpointed"):
        trainer.fit(poison)
    saved = list_checkpoints(tmp_path / "run" / "checkpoints")
    assert [c.name for c in saved] == ["step_000001"]
    state = load_file(str(next((saved[0] / "transformer").glob("*.safetensors"))))
    assert all(torch.isfinite(t).all() for t in state.values())


def test_dump_config_keeps_what_it_replaces(tmp_path):
    cfg = tiny_config(tmp_path, "flux", "leapalign")
    dump_config(cfg, tmp_path / "config.yaml")
    dump_config(cfg, tmp_path / "config.yaml")  # the same config: no history
    assert not (tmp_path / "config.history").exists()
    dump_config(tiny_config(tmp_path, "flux", "refl"), tmp_path / "config.yaml")
    assert len(list((tmp_path / "config.history").iterdir())) == 1
