"""Checkpoints load back through diffusers with the same velocity, are written atomically, pruned to the last K,
and a damaged newest checkpoint is skipped (with a warning) for the previous one."""

import json

import pytest
import torch
from diffusers import FluxPipeline, FluxTransformer2DModel

from benchmark.core.backbones.flux import FluxCond
from benchmark.core.backbones.tiny import POOLED_DIM, TEXT_DIM, tiny_flux
from benchmark.core.checkpoint import latest_valid, list_checkpoints, verify
from benchmark.training.testing import TinyReward, tiny_config
from benchmark.training.trainer import train

pytestmark = pytest.mark.usefixtures("one_thread")


def velocity_inputs(backbone):
    g = torch.Generator().manual_seed(7)
    cond = FluxCond(torch.randn(2, 8, TEXT_DIM, generator=g), torch.randn(2, POOLED_DIM, generator=g))
    return backbone.noise(2, g), torch.tensor(0.6), cond


def test_full_transformer_loads_with_from_pretrained(tmp_path):
    cfg = tiny_config(tmp_path, "flux", "refl", ["schedule.iterations=2", "optim.lr=1e-2"])
    backbone = tiny_flux(height=32, width=32)
    result = train(cfg, TinyReward(), backbone=backbone)
    x, sigma, cond = velocity_inputs(backbone)
    with torch.no_grad():
        trained = backbone.velocity(x, sigma, cond)
        loaded = FluxTransformer2DModel.from_pretrained(result.checkpoint / "transformer")
        backbone.transformer = loaded
        again = backbone.velocity(x, sigma, cond)
        backbone.transformer = tiny_flux(height=32, width=32).transformer  # the untrained model differs
        untrained = backbone.velocity(x, sigma, cond)
    assert torch.equal(trained, again)
    assert (trained - untrained).abs().max() > 1e-3
    assert json.loads((result.checkpoint / "transformer" / "config.json").read_text())["_class_name"] == \
        "FluxTransformer2DModel"


def test_lora_adapter_loads_with_load_lora_weights(tmp_path):
    cfg = tiny_config(tmp_path, "flux", "refl", ["schedule.iterations=2", "optim.lr=1e-2", "train.lora.rank=4",
                                                 "train.lora.alpha=8"])
    backbone = tiny_flux(height=32, width=32)
    result = train(cfg, TinyReward(), backbone=backbone)
    x, sigma, cond = velocity_inputs(backbone)
    fresh = tiny_flux(height=32, width=32)  # same seed: the same base weights
    with torch.no_grad():
        trained = backbone.velocity(x, sigma, cond)
        base = fresh.velocity(x, sigma, cond)
        pipe = FluxPipeline(scheduler=fresh.scheduler, vae=fresh.vae, text_encoder=None, tokenizer=None,
                            text_encoder_2=None, tokenizer_2=None, transformer=fresh.transformer)
        pipe.load_lora_weights(result.checkpoint / "lora")
        loaded = fresh.velocity(x, sigma, cond)
        other = tiny_flux(height=32, width=32)
        other.transformer.load_lora_adapter(result.checkpoint / "lora", prefix="transformer",
                                           weight_name="pytorch_lora_weights.safetensors")
        loaded_2 = other.velocity(x, sigma, cond)
    assert (trained - base).abs().max() > 1e-4  # the adapter matters
    torch.testing.assert_close(loaded, trained, rtol=1e-5, atol=1e-6)  # float32; LoRA scale alpha / r restored
    torch.testing.assert_close(loaded_2, trained, rtol=1e-5, atol=1e-6)


def test_damaged_checkpoints_are_skipped_and_old_ones_pruned(tmp_path):
    cfg = tiny_config(tmp_path, "flux", "refl", ["schedule.iterations=4", "checkpoint.every=1",
                                                 "checkpoint.keep=3"])
    train(cfg, TinyReward())
    root = tmp_path / "run" / "checkpoints"
    assert [p.name for p in list_checkpoints(root)] == ["step_000004", "step_000003", "step_000002"]
    assert not list(root.glob(".tmp-*"))
    assert all(verify(p) is None for p in list_checkpoints(root))
    ema = root / "step_000004" / "ema.safetensors"  # flip one byte in the newest
    data = bytearray(ema.read_bytes())
    data[-1] ^= 0xFF
    ema.write_bytes(bytes(data))
    (root / "step_000003" / "complete").unlink()  # and the next one was interrupted while writing
    with pytest.warns(RuntimeWarning) as caught:
        assert latest_valid(root) == root / "step_000002"
    messages = [str(w.message) for w in caught]
    assert any("step_000004" in m and "checksum mismatch in ema.safetensors" in m for m in messages)
    assert any("step_000003" in m and "complete" in m for m in messages)
    # resume auto continues from step 2 and finishes the run
    with pytest.warns(RuntimeWarning):
        result = train(cfg, TinyReward(), resume="auto")
    assert result.step == 4 and result.status == "finished"
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # steps after the checkpoint were re-run, not duplicated
