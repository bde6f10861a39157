"""Shared by the training tests: what a checkpoint of either format holds, as full tensors."""

import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from benchmark.core import sharded


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
