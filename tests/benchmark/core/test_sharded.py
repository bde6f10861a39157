"""Sharded (DCP) checkpoints in one process: the layout, the same atomicity, verification and pruning as the full
format, DCP's metadata checked, a damaged shard skipped for the previous checkpoint, and bitwise equality with
the full format written by the same run (model, EMA, AdamW state)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from benchmark.core import sharded
from benchmark.core.checkpoint import latest_valid, list_checkpoints, verify
from benchmark.core.testing import single_thread
from benchmark.training.testing import TinyReward, tiny_config
from benchmark.training.trainer import train

ARGS = ["schedule.iterations=3", "checkpoint.every=1", "checkpoint.keep=2", "optim.lr=1e-2"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same 3-step run written in both formats."""
    out = {}
    with single_thread():
        for fmt in ("full", "sharded"):
            tmp = tmp_path_factory.mktemp(fmt)
            train(tiny_config(tmp, "flux", "leapalign", ARGS + [f"checkpoint.format={fmt}"]), TinyReward())
            out[fmt] = tmp / "run" / "checkpoints"
    return out


def test_layout_verification_and_pruning(runs):
    root = runs["sharded"]
    assert [p.name for p in list_checkpoints(root)] == ["step_000003", "step_000002"]
    ckpt = root / "step_000003"
    assert sorted(p.name for p in ckpt.iterdir()) == ["complete", "config.yaml", "dcp", "manifest.json",
                                                      "model_config.json", "trainer.pt"]
    assert sorted(p.name for p in (ckpt / "dcp").iterdir()) == [".metadata", "__0_0.distcp"]
    manifest = json.loads((ckpt / "manifest.json").read_text())["files"]
    assert set(manifest) == {"config.yaml", "dcp/.metadata", "dcp/__0_0.distcp", "model_config.json", "trainer.pt"}
    assert verify(ckpt) is None and sharded.check_metadata(ckpt) is None
    assert json.loads((ckpt / "model_config.json").read_text())["_class_name"] == "FluxTransformer2DModel"
    assert "leapalign" in (ckpt / "config.yaml").read_text()


def test_same_state_as_the_full_format(runs):
    full, shards = runs["full"] / "step_000003", runs["sharded"] / "step_000003"
    model = load_file(str(full / "transformer" / "diffusion_pytorch_model.safetensors"))
    ema = load_file(str(full / "ema.safetensors"))
    assert set(sharded.tensor_specs(shards, "model")) == set(model)
    for part, expected in (("model", model), ("ema", ema)):
        got = sharded.read_part(shards, part, list(expected))
        assert all(torch.equal(got[k], expected[k]) for k in expected), part
    optim = torch.load(full / "optimizer.pt", weights_only=True)["state"]
    moments = {f"state.{k}.{m}": v[m] for k, v in optim.items() for m in ("exp_avg", "exp_avg_sq")}
    got = sharded.read_part(shards, "optim", list(moments))
    assert len(got) > 4 and all(torch.equal(got[k], moments[k]) for k in moments)
    assert torch.load(full / "trainer.pt", weights_only=False)["state"] == \
        torch.load(shards / "trainer.pt", weights_only=False)["state"]


def test_damaged_shards_are_caught(runs, tmp_path):
    import shutil

    root = tmp_path / "checkpoints"
    shutil.copytree(runs["sharded"], root)
    newest = root / "step_000003"
    shard = newest / "dcp" / "__0_0.distcp"
    shard.write_bytes(shard.read_bytes()[:-100])  # truncated: the manifest and DCP's metadata both see it
    assert verify(newest) == "checksum mismatch in dcp/__0_0.distcp"
    (newest / "manifest.json").unlink()  # without the manifest, DCP's own metadata still does
    (newest / "manifest.json").write_text(json.dumps({"step": 3, "files": {}}))
    assert "shorter than its metadata says" in verify(newest)
    (root / "step_000002" / "dcp" / ".metadata").write_bytes(b"garbage")
    assert verify(root / "step_000002") == "checksum mismatch in dcp/.metadata"
    assert "unreadable DCP metadata" in sharded.check_metadata(root / "step_000002")
    with pytest.warns(RuntimeWarning):
        assert latest_valid(root) is None


def test_a_damaged_newest_checkpoint_resumes_from_the_previous(tmp_path):
    cfg = tiny_config(tmp_path, "flux", "refl", ARGS + ["checkpoint.format=sharded"])
    train(cfg, TinyReward())
    shard = tmp_path / "run" / "checkpoints" / "step_000003" / "dcp" / "__0_0.distcp"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="checksum mismatch in dcp/__0_0.distcp"):
        result = train(cfg, TinyReward(), resume="auto")
    assert result.step == 3 and result.status == "finished"
    assert verify(result.checkpoint) is None
