"""The predicted step: its split is exact where the answer is known (AdamW's moments, the EMA, the gradients are
each the trained parameters' bytes), FSDP2 shards them over the ranks, LoRA trains only the adapters, and a
config that cannot be planned is refused before anything is built. Tiny FLUX, float32, on CPU."""

import pytest

from benchmark.core.errors import ConfigError
from benchmark.training.plan import CATEGORIES, predict
from benchmark.training.testing import tiny_config

F32 = 4


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    return predict(tiny_config(tmp_path_factory.mktemp("plan"), overrides=["schedule.micro_batch=1"]))


def test_split_of_a_single_process_step_is_exact(single):
    n, tensors = single.trained_params, 66  # the tiny FLUX's trained tensors (AdamW keeps a step count for each)
    split = single.split
    assert set(split) <= set(CATEGORIES) and sum(split.values()) == single.peak_bytes
    assert split["EMA"] == F32 * n and split["gradients"] == F32 * n
    assert split["optimizer"] == 2 * F32 * n + F32 * tensors
    assert single.before_bytes == split["parameters"] + split["EMA"] + split["optimizer"]
    assert split["activations"] > 0 and split["trajectory"] > 0 and single.step_bytes > 0


def test_fsdp_shards_the_trained_state(tmp_path, single):
    fsdp = predict(tiny_config(tmp_path, overrides=["schedule.micro_batch=1"]), world_size=2)
    assert fsdp.setting["strategy"] == "fsdp" and fsdp.trained_params == single.trained_params
    assert fsdp.split["EMA"] == single.split["EMA"] // 2  # every tiny dimension is even: shards without padding
    assert fsdp.split["optimizer"] - F32 * 66 == (single.split["optimizer"] - F32 * 66) // 2
    assert fsdp.before_bytes < single.before_bytes
    # global batch 4 = 2 ranks x micro-batch 1 x 2 accumulated: the first micro-batch keeps FSDP2's unsharded
    # gradients in the reduce dtype (float32), the whole model's, on every rank until the last reduce-scatters
    assert fsdp.setting["accumulation"] == 2 and fsdp.split["gradients"] == F32 * fsdp.trained_params


def test_lora_trains_only_the_adapters(tmp_path, single):
    lora = predict(tiny_config(tmp_path, overrides=["schedule.micro_batch=1", "train.lora.rank=4"]))
    assert 0 < lora.trained_params < single.trained_params / 10
    assert lora.split["EMA"] == F32 * lora.trained_params and lora.split["optimizer"] < single.split["optimizer"] / 10
    assert lora.split["parameters"] > single.split["parameters"]  # the frozen base plus the adapters


@pytest.mark.parametrize("overrides, world, field", [
    (["backbone.name=toy"], 1, "backbone.name"),
    ([], 0, "--world-size"),
    (["schedule.global_batch=6"], 4, "schedule.global_batch"),
])
def test_unplannable_config_is_refused(tmp_path, overrides, world, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        predict(tiny_config(tmp_path, overrides=overrides), world_size=world)


def test_grpo_keeps_every_sampled_micro_batch(tmp_path):
    """A policy-gradient step (``benchmark.training.policy``) samples all of its rank's micro-batches before the
    first loss, so their trajectories are all live at the peak: twice the batch, exactly twice the trajectories;
    the losses re-evaluate the trained steps with gradient, one micro-batch at a time (activations the same but
    for each sampled micro-batch's kept rewards: a few bytes)."""
    grpo = ["method.name=grpo", "method.group_size=2", "method.train_fraction=0.5", "schedule.micro_batch=1"]
    runs = [predict(tiny_config(tmp_path, method="grpo", overrides=[*grpo, f"schedule.global_batch={n}"]))
            for n in (4, 8)]
    assert runs[0].split["trajectory"] > 0
    assert runs[1].split["trajectory"] == 2 * runs[0].split["trajectory"]
    assert 0 <= runs[1].split["activations"] - runs[0].split["activations"] <= 4 * 16
