"""Shared by the training tests: two ranks under torchrun, and what a checkpoint of either format holds, as full
tensors."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from benchmark.core import sharded


def two_ranks(script: Path, *args: str, timeout: int = 300) -> str:
    """Run ``script args`` as two ranks (torchrun, gloo on CPU, one thread each); their stdout. A failure shows
    each rank's own stderr (torchrun's summary names no cause, and the other rank only sees its peer gone)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join(sys.path))
    with tempfile.TemporaryDirectory() as logs:
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                               "--log-dir", logs, "--tee", "2", str(script), *map(str, args)], env=env,
                              capture_output=True, text=True, timeout=timeout)
        ranks = {f.parent.name: f.read_text()[-3000:] for f in sorted(Path(logs).rglob("stderr.log"))}
    assert proc.returncode == 0, "".join(f"--- rank {r} stderr:\n{text}\n" for r, text in ranks.items()) + \
        f"--- stdout:\n{proc.stdout[-1500:]}"
    return proc.stdout


def checkpoint_weights(ckpt: Path) -> dict:
    """Model (transformer or LoRA adapter) and EMA tensors of a checkpoint of either format, the EMA's prefixed
    with "ema."."""
    if sharded.is_sharded(ckpt):
        parts = {part: sharded.read_part(ckpt, part, list(sharded.tensor_specs(ckpt, part))) for part in ("model", "ema")}
        return {**parts["model"], **{f"ema.{k}": v for k, v in parts["ema"].items()}}
    out = {}
    for f in sorted((ckpt / "transformer").glob("*.safetensors")) + sorted((ckpt / "lora").glob("*.safetensors")):
        out.update(load_file(str(f)))
    out.update({f"ema.{k}": v for k, v in load_file(str(ckpt / "ema.safetensors")).items()})
    return out


def checkpoint_state(ckpt: Path) -> dict:
    """Everything a checkpoint holds that a resume must restore: model, EMA, AdamW state and trainer state."""
    if sharded.is_sharded(ckpt):
        with tempfile.TemporaryDirectory() as tmp:
            dcp_to_torch_save(ckpt / sharded.DCP_DIR, Path(tmp) / "all.pt")
            state = torch.load(Path(tmp) / "all.pt", weights_only=False)
        model, ema, optim = state["model"], state["ema"], state["optim"]
    else:
        model = {}
        for f in sorted((ckpt / "transformer").glob("*.safetensors")):
            model.update(load_file(str(f)))
        ema, optim = load_file(str(ckpt / "ema.safetensors")), torch.load(ckpt / "optimizer.pt", weights_only=True)
    return {"model": model, "ema": ema, "optim": optim,
            "state": torch.load(ckpt / "trainer.pt", weights_only=False)["state"]}
