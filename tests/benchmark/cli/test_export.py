"""``leapbench export``: every checkpoint format becomes files plain diffusers loads (``from_pretrained``,
``load_lora_weights``) holding exactly the trained (or EMA) weights; sampling reads a sharded checkpoint
directly, to the same images as the full format's; bad input is one error with exit status 2."""

import re

import numpy as np
import pytest
import torch
from diffusers import FluxPipeline, FluxTransformer2DModel
from PIL import Image
from safetensors.torch import load_file

from benchmark.cli import main
from benchmark.core import sharded
from benchmark.core.backbones.tiny import tiny_flux
from benchmark.core.testing import single_thread
from benchmark.training.testing import TinyReward, tiny_config
from benchmark.training.trainer import train

ARGS = ["schedule.iterations=2", "checkpoint.every=1", "optim.lr=1e-2", "optim.ema_decay=0.5"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One tiny run per checkpoint format (the full and the sharded one are the same run, bitwise)."""
    out = {}
    with single_thread():
        for name, extra in (("full", ["checkpoint.format=full"]), ("sharded", ["checkpoint.format=sharded"]),
                            ("lora", ["train.lora.rank=4", "train.lora.alpha=8"])):
            tmp = tmp_path_factory.mktemp(name)
            train(tiny_config(tmp, "flux", "leapalign", ARGS + extra), TinyReward())
            out[name] = tmp / "run"
    return out


def export(*args):
    return main(["export", *map(str, args)])


def trained(run, step=2):
    """{"model": ..., "ema": ...} of the full-format checkpoint of ``run``."""
    ckpt = run / "checkpoints" / f"step_{step:06d}"
    return {"model": load_file(str(ckpt / "transformer" / "diffusion_pytorch_model.safetensors")),
            "ema": load_file(str(ckpt / "ema.safetensors"))}


@pytest.mark.parametrize("fmt", ["sharded", "full"])
@pytest.mark.parametrize("ema", [False, True])
def test_full_fine_tuning_loads_with_from_pretrained(runs, tmp_path, fmt, ema):
    expected = trained(runs["full"])
    assert export(runs[fmt], "--out", tmp_path / "out", *(["--ema"] if ema else [])) == 0
    loaded = FluxTransformer2DModel.from_pretrained(tmp_path / "out").state_dict()
    assert loaded.keys() == expected["model"].keys()
    for k, v in loaded.items():
        assert torch.equal(v, expected["ema" if ema else "model"][k]), k
    assert not all(torch.equal(expected["ema"][k], expected["model"][k]) for k in expected["model"])


def test_sharded_export_in_several_files_and_bf16(runs, tmp_path):
    assert export(runs["sharded"], "--step", 1, "--out", tmp_path / "out", "--dtype", "bfloat16",
                  "--max-shard-size", "40KB") == 0
    files = sorted(p.name for p in (tmp_path / "out").glob("*.safetensors"))
    assert len(files) > 2 and (tmp_path / "out" / "diffusion_pytorch_model.safetensors.index.json").is_file()
    loaded = FluxTransformer2DModel.from_pretrained(tmp_path / "out", torch_dtype=torch.bfloat16).state_dict()
    expected = trained(runs["full"], step=1)["model"]
    assert all(v.dtype == torch.bfloat16 and torch.equal(v, expected[k].bfloat16()) for k, v in loaded.items())


@pytest.mark.parametrize("ema", [False, True])
def test_lora_adapter_loads_with_load_lora_weights(runs, tmp_path, ema):
    ckpt = runs["lora"] / "checkpoints" / "step_000002"
    assert export(runs["lora"], "--out", tmp_path / "out", *(["--ema"] if ema else [])) == 0
    backbone = tiny_flux(height=32, width=32)  # the base weights the run started from
    pipe = FluxPipeline(scheduler=backbone.scheduler, vae=backbone.vae, text_encoder=None, tokenizer=None,
                        text_encoder_2=None, tokenizer_2=None, transformer=backbone.transformer)
    pipe.load_lora_weights(tmp_path / "out")
    loaded = {no_adapter_name(n): p.detach() for n, p in backbone.transformer.named_parameters() if "lora_" in n}
    if ema:  # keyed by the trained parameters' names (adapter "default")
        expected = {no_adapter_name(k): v for k, v in load_file(str(ckpt / "ema.safetensors")).items()}
    else:  # diffusers' adapter file
        expected = {k.removeprefix("transformer."): v
                    for k, v in load_file(str(ckpt / "lora" / "pytorch_lora_weights.safetensors")).items()}
    assert loaded.keys() == expected.keys() and len(loaded) > 4
    assert all(torch.equal(loaded[k], expected[k]) for k in loaded)
    if ema:  # the EMA differs from the last step's adapter
        assert not all(torch.equal(loaded[k], v) for k, v in trained_adapter(ckpt).items())


def no_adapter_name(name):
    """``...to_q.lora_A.<adapter>.weight`` -> ``...to_q.lora_A.weight`` (peft names the adapter; loading renames it)."""
    return re.sub(r"\.(lora_[AB])\.[^.]+\.", r".\1.", name)


def trained_adapter(ckpt):
    return {k.removeprefix("transformer."): v for k, v in load_file(str(ckpt / "lora" / "pytorch_lora_weights.safetensors")).items()}


def sample(cache, out, ckpt, *extra):
    return main(["sample", "--cache", str(cache), "--out", str(out), "--checkpoint", str(ckpt), "--dtype", "float32",
                 "--steps", "3", "--images", "2", "--no-progress", *extra])


def pngs(out):
    return {str(p.relative_to(out)): np.asarray(Image.open(p)) for p in sorted(out.rglob("*.png"))}


@pytest.mark.parametrize("ema", [False, True])
def test_sampling_reads_shards_directly(runs, tmp_path, ema):
    cache = runs["full"].parent / "cache-flux"
    flags = ["--ema"] if ema else []
    for fmt in ("full", "sharded"):
        assert sample(cache, tmp_path / fmt, runs[fmt] / "checkpoints" / "step_000002", *flags) == 0
    a, b = pngs(tmp_path / "full"), pngs(tmp_path / "sharded")
    assert len(a) == 16 and a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_bad_input_is_one_error(runs, tmp_path, capsys):
    assert export(tmp_path / "nothing", "--out", tmp_path / "o") == 2
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("kept")
    assert export(runs["sharded"], "--out", tmp_path / "full") == 2
    assert (tmp_path / "full" / "x").read_text() == "kept"
    assert export(runs["sharded"], "--step", 7, "--out", tmp_path / "o") == 2
    assert export(runs["sharded"], "--max-shard-size", "big", "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert "RUN: expected a training run directory" in err and "--out: expected a new" in err
    assert "--step: expected a step with a checkpoint" in err and "--max-shard-size" in err
    assert not (tmp_path / "o").exists() and sharded.is_sharded(runs["sharded"] / "checkpoints" / "step_000002")
