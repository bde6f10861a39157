"""A checkpoint's model as plain diffusers files: what ``leapbench export`` writes and users load.

* full fine-tuning: a diffusers model directory (config.json + diffusion_pytorch_model*.safetensors [+ index]),
  loaded by ``FluxTransformer2DModel.from_pretrained(dir)`` (``SD3Transformer2DModel`` for SD3); from FSDP2's
  shards (``benchmark.core.sharded.export_weights``) or from the full format's transformer/;
* LoRA: ``pytorch_lora_weights.safetensors`` with its adapter metadata, loaded by
  ``FluxPipeline.load_lora_weights(dir)``.

``ema``: the EMA weights of the trained parameters instead of the last step's. ``dtype`` casts (default: as
trained). Every format is read one file (sharded: one tensor) at a time and written one output file at a time.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from benchmark.core import sharded

LORA_FILE = "pytorch_lora_weights.safetensors"
INDEX = "diffusion_pytorch_model.safetensors.index.json"


def export_checkpoint(ckpt: Path, out: Path, *, ema: bool = False, dtype: torch.dtype | None = None,
                      max_bytes: int = 10 * 2**30) -> str:
    """Write ``ckpt``'s model into ``out`` (a new directory); returns what was written: "transformer" or "lora"."""
    ckpt = Path(ckpt)
    if sharded.is_sharded(ckpt):
        sharded.export_weights(ckpt, out, ema=ema, dtype=dtype, max_bytes=max_bytes)
        return "transformer"
    if (ckpt / "lora").is_dir():
        export_lora(ckpt, out, ema=ema, dtype=dtype)
        return "lora"
    export_full(ckpt, out, ema=ema, dtype=dtype)
    return "transformer"


def ema_reader(ckpt: Path):
    """An open safetensors file of the EMA shadow (tensors read one at a time)."""
    return safe_open(str(ckpt / "ema.safetensors"), framework="pt")


def cast(t: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    return (t if dtype is None else t.to(dtype)).contiguous()


def export_full(ckpt: Path, out: Path, *, ema: bool, dtype: torch.dtype | None) -> None:
    """The full format's transformer/ file by file, each parameter replaced by its EMA when ``ema``."""
    out.mkdir(parents=True, exist_ok=True)
    source = ckpt / "transformer"
    with ema_reader(ckpt) as shadow:
        averaged = set(shadow.keys()) if ema else set()
        total = 0
        for file in sorted(source.glob("*.safetensors")):
            state = load_file(str(file))
            state = {k: cast(shadow.get_tensor(k) if k in averaged else v, dtype) for k, v in state.items()}
            save_file(state, str(out / file.name), metadata={"format": "pt"})
            total += sum(t.numel() * t.element_size() for t in state.values())
            del state
    for name in ("config.json", INDEX):
        if (source / name).is_file():
            shutil.copyfile(source / name, out / name)
    if (out / INDEX).is_file():  # the sizes change with the dtype
        index = json.loads((out / INDEX).read_text())
        index["metadata"]["total_size"] = total
        (out / INDEX).write_text(json.dumps(index, indent=2))


def lora_ema_name(key: str) -> str:
    """The adapter file's key (``transformer.<module>.lora_A.weight``) -> the trained parameter's name, under
    which the EMA is kept (``<module>.lora_A.default.weight``: peft's adapter name "default")."""
    module, _, leaf = key.removeprefix("transformer.").rpartition(".")
    return f"{module}.default.{leaf}"


def export_lora(ckpt: Path, out: Path, *, ema: bool, dtype: torch.dtype | None) -> None:
    """The adapter file with its metadata (rank, alpha, targets), its weights replaced by the EMA when ``ema``."""
    out.mkdir(parents=True, exist_ok=True)
    file = ckpt / "lora" / LORA_FILE
    with safe_open(str(file), framework="pt") as f:
        metadata = f.metadata()
    state = load_file(str(file))
    if ema:
        with ema_reader(ckpt) as shadow:
            missing = [k for k in state if lora_ema_name(k) not in shadow.keys()]
            if missing:
                raise KeyError(f"{ckpt}: no EMA weights for the adapter's {missing[:3]}")
            state = {k: shadow.get_tensor(lora_ema_name(k)) for k in state}
    save_file({k: cast(v, dtype) for k, v in state.items()}, str(out / LORA_FILE), metadata=metadata)
