"""Checkpoints: the trained model in diffusers format plus everything an exact resume needs, written atomically.

One checkpoint is a directory ``<run_dir>/checkpoints/step_000050/``::

    transformer/            full fine-tuning: config.json + diffusion_pytorch_model*.safetensors
                            (FluxTransformer2DModel.from_pretrained(dir) loads it; the toy flow: model.safetensors)
    lora/                   LoRA: pytorch_lora_weights.safetensors (FluxPipeline.load_lora_weights(dir) loads it)
    ema.safetensors         fp32 EMA shadow of the trained parameters, keyed by parameter name
    optimizer.pt            AdamW state (full, keyed by parameter name: torch.distributed.checkpoint.state_dict)
    trainer.pt              step, fault counters and RNG states (torch, CUDA, numpy, python)
    manifest.json           size and sha256 of every file above
    complete                written last: a checkpoint without it was interrupted

    config.yaml             the run's resolved config

It is written to a temporary sibling directory, every file fsynced, then renamed into place (atomic on
POSIX), so a crash leaves either the whole checkpoint or none. On resume the newest checkpoint whose
marker, files and checksums verify is used; a damaged one is skipped with a warning.

Under FSDP2 the model, AdamW state and EMA are instead written by every rank as its own shards
(``benchmark.core.sharded``: a ``dcp/`` directory instead of transformer/, ema.safetensors and optimizer.pt),
with the same marker, manifest, atomic rename and pruning; either format resumes on any world size.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import diffusers
import torch
from huggingface_hub import split_torch_state_dict_into_shards
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from benchmark.core import sharded
from benchmark.core.distributed import all_gather_object, barrier, broadcast_object, unwrap
from benchmark.core.io import fsync_dir, sha256_file

STEP_PREFIX = "step_"


# -- durable file writes --------------------------------------------------------------------------


def fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    for path in sorted([p for p in root.rglob("*") if p.is_dir()] + [root]):
        fsync_dir(path)


# -- the model in diffusers format ----------------------------------------------------------------


def diffusers_class_name(module: nn.Module) -> str | None:
    """The diffusers class of ``module`` (FSDP2 swaps the class for a generated subclass)."""
    for cls in type(module).__mro__:
        if cls.__module__.startswith("diffusers.") and hasattr(cls, "from_pretrained"):
            return cls.__name__
    return None


def write_transformer(module: nn.Module, state: dict[str, Tensor], out: Path, max_shard_size: str = "10GB") -> None:
    """Write ``state`` as a diffusers model directory (config.json + safetensors shards + index).

    Done by hand rather than ``save_pretrained`` because under FSDP2 the module holds shards; the full
    ``state`` is gathered on rank 0 and the config written with the real diffusers class name.
    """
    out.mkdir(parents=True, exist_ok=True)
    name = diffusers_class_name(module)
    if name is None:  # the toy flow: plain weights
        save_file({k: v.contiguous() for k, v in state.items()}, str(out / "model.safetensors"))
        return
    config = {k: v for k, v in dict(module.config).items() if not k.startswith("_")}
    config = {"_class_name": name, "_diffusers_version": diffusers.__version__, **config}
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    split = split_torch_state_dict_into_shards(
        state, filename_pattern="diffusion_pytorch_model{suffix}.safetensors", max_shard_size=max_shard_size
    )
    for filename, keys in split.filename_to_tensors.items():
        save_file({k: state[k].contiguous() for k in keys}, str(out / filename), metadata={"format": "pt"})
    if split.is_sharded:
        index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in state.values())},
                 "weight_map": split.tensor_to_filename}
        (out / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def read_transformer(out: Path) -> dict[str, Tensor]:
    state: dict[str, Tensor] = {}
    for file in sorted(out.glob("*.safetensors")):
        state.update(load_file(str(file)))
    return state


LORA_PIPELINES = {"flux": "FluxPipeline", "sd3": "StableDiffusion3Pipeline"}


def write_lora(transformer: nn.Module, out: Path, backbone: str) -> None:
    """Save the peft adapter as diffusers expects it (``<Pipeline>.save_lora_weights``), with its rank/alpha."""
    from peft.utils import get_peft_model_state_dict  # heavy (peft pulls in accelerate); LoRA runs only

    state = {k: v.detach().cpu() for k, v in get_peft_model_state_dict(transformer).items()}
    metadata = transformer.peft_config["default"].to_dict()
    metadata = json.loads(json.dumps(metadata, default=lambda v: sorted(v) if isinstance(v, set) else str(v)))
    pipeline = getattr(diffusers, LORA_PIPELINES[backbone])
    pipeline.save_lora_weights(out, transformer_lora_layers=state, transformer_lora_adapter_metadata=metadata)


def read_lora(transformer: nn.Module, out: Path) -> None:
    """Load a saved adapter back into the (already adapted) transformer, exactly."""
    from peft.utils import set_peft_model_state_dict  # heavy (peft pulls in accelerate); LoRA runs only

    state = load_file(str(out / "pytorch_lora_weights.safetensors"))
    state = {k.removeprefix("transformer."): v for k, v in state.items()}
    result = set_peft_model_state_dict(transformer, state)
    if getattr(result, "unexpected_keys", None):
        raise RuntimeError(f"LoRA checkpoint {out} has unexpected keys: {result.unexpected_keys[:3]}")


# -- checkpoint directories -------------------------------------------------------------------------


def step_dir(root: Path, step: int) -> Path:
    return root / f"{STEP_PREFIX}{step:06d}"


def finalize(tmp: Path, final: Path, step: int, hashed: dict[str, dict] | None = None) -> None:
    """Checksum every file (those in ``hashed`` were by the ranks that wrote them), write the manifest and the
    marker, fsync, and rename into place."""
    hashed = hashed or {}
    files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
    manifest = {"step": step, "files": {rel: hashed.get(rel) or {"size": (tmp / rel).stat().st_size,
                                                                  "sha256": sha256_file(tmp / rel)} for rel in files}}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    (tmp / "complete").write_text(f"step {step}\n")
    fsync_tree(tmp)
    if final.exists():  # a re-save of the same step (e.g. a signal right after a periodic save)
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(final.parent)


def verify(ckpt: Path) -> str | None:
    """None if ``ckpt`` is complete and intact, else what is wrong with it."""
    if not (ckpt / "complete").is_file():
        return "no 'complete' marker (interrupted while writing)"
    try:
        manifest = json.loads((ckpt / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        return f"unreadable manifest.json ({err})"
    for rel, meta in manifest["files"].items():
        path = ckpt / rel
        if not path.is_file():
            return f"missing {rel}"
        if path.stat().st_size != meta["size"] or sha256_file(path) != meta["sha256"]:
            return f"checksum mismatch in {rel}"
    return sharded.check_metadata(ckpt) if sharded.is_sharded(ckpt) else None


def list_checkpoints(root: Path) -> list[Path]:
    """Checkpoint directories under ``root``, newest first (temporary directories excluded)."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(STEP_PREFIX)]
    return sorted(found, key=lambda p: int(p.name[len(STEP_PREFIX):]), reverse=True)


def latest_valid(root: Path) -> Path | None:
    """The newest checkpoint that verifies; damaged newer ones are skipped with a warning."""
    for ckpt in list_checkpoints(root):
        problem = verify(ckpt)
        if problem is None:
            return ckpt
        warnings.warn(f"skipping damaged checkpoint {ckpt}: {problem}; trying the previous one", RuntimeWarning,
                      stacklevel=2)
    return None


def prune(root: Path, keep: int) -> None:
    """Keep the newest ``keep`` complete checkpoints; remove older ones and stale temporary directories."""
    complete = [p for p in list_checkpoints(root) if (p / "complete").is_file()]
    for old in complete[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    for tmp in root.glob(".tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)


def new_tmp_dir(root: Path, step: int) -> Path:
    tmp = root / f".tmp-{STEP_PREFIX}{step:06d}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def save_trainer_state(path: Path, state: dict[str, Any]) -> None:
    torch.save(state, path)


def load_trainer_state(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)  # our own file: holds numpy RNG state


# -- whole checkpoints -----------------------------------------------------------------------------


def save_checkpoint(root: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, ema: Any,
                    trainer_state: dict[str, Any], *, lora: bool, backbone: str, rank: int, keep: int,
                    config_yaml: str = "", shards: bool = False) -> Path:
    """Write one checkpoint (a collective: every rank calls it); returns its directory.

    ``shards``: every rank writes its own shards with DCP; else the full state is gathered and rank 0 writes it.
    """
    if shards:
        return save_sharded(root, step, model, optimizer, ema, trainer_state, rank=rank, keep=keep,
                            config_yaml=config_yaml)
    full = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state = None if lora else get_model_state_dict(model, options=full)
    optim_state = get_optimizer_state_dict(model, optimizer, options=full)
    ema_state = ema.full_state()
    final = step_dir(root, step)
    if rank == 0:
        tmp = new_tmp_dir(root, step)
        if lora:
            write_lora(unwrap(model), tmp / "lora", backbone)
        else:
            write_transformer(unwrap(model), model_state, tmp / "transformer")
        save_file(ema_state, str(tmp / "ema.safetensors"))
        torch.save(optim_state, tmp / "optimizer.pt")
        write_run_files(tmp, trainer_state, config_yaml)
        finalize(tmp, final, step)
        prune(root, keep)
    barrier()
    return final


def save_sharded(root: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, ema: Any,
                 trainer_state: dict[str, Any], *, rank: int, keep: int, config_yaml: str) -> Path:
    """Every rank writes its shards of model, AdamW state and EMA into one temporary directory and hashes
    them; rank 0 adds the run files, the manifest and the marker and renames the directory into place."""
    tmp = broadcast_object(new_tmp_dir(root, step) if rank == 0 else None)
    hashed = sharded.save_shards(sharded.training_state(model, optimizer, ema), tmp, rank)
    hashed = {k: v for part in all_gather_object(hashed) for k, v in part.items()}
    final = step_dir(root, step)
    if rank == 0:
        module = unwrap(model)
        sharded.write_model_config(module, tmp / sharded.MODEL_CONFIG, diffusers_class_name(module))
        write_run_files(tmp, trainer_state, config_yaml)
        finalize(tmp, final, step, hashed)
        prune(root, keep)
    barrier()
    return final


def write_run_files(tmp: Path, trainer_state: dict[str, Any], config_yaml: str) -> None:
    save_trainer_state(tmp / "trainer.pt", trainer_state)
    if config_yaml:
        (tmp / "config.yaml").write_text(config_yaml)


def load_checkpoint(ckpt: Path, model: nn.Module, optimizer: torch.optim.Optimizer, ema: Any, *, lora: bool,
                    is_main: bool, world_size: int) -> dict[str, Any]:
    """Restore model, optimiser and EMA from ``ckpt`` (every rank calls this); returns the trainer state."""
    if sharded.is_sharded(ckpt):
        sharded.load_shards(ckpt, model, optimizer, ema)
        return load_trainer_state(ckpt / "trainer.pt")
    # under FSDP2 rank 0 reads the full state and broadcasts it, instead of every rank holding a copy
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=world_size > 1)
    reads = is_main or world_size == 1
    if lora:
        read_lora(unwrap(model), ckpt / "lora")
    else:
        set_model_state_dict(model, read_transformer(ckpt / "transformer") if reads else {}, options=options)
    optim_state = torch.load(ckpt / "optimizer.pt", map_location="cpu", weights_only=True) if reads else {}
    set_optimizer_state_dict(model, optimizer, optim_state, options=options)
    ema.load_full_state(load_file(str(ckpt / "ema.safetensors")))
    return load_trainer_state(ckpt / "trainer.pt")


def apply_ema(transformer: nn.Module, ckpt: Path) -> None:
    """Load a checkpoint's EMA shadow into ``transformer`` for sampling (paper evaluation uses the EMA).

    The shadow is keyed by the trained parameters' names (full fine-tuning: all; LoRA: the adapter's, so
    the adapter must be added first). Every key must land on a parameter.
    """
    ema = load_file(str(Path(ckpt) / "ema.safetensors"))
    result = transformer.load_state_dict(ema, strict=False)
    if result.unexpected_keys:
        raise RuntimeError(f"{ckpt}: EMA weights for unknown parameters {result.unexpected_keys[:3]}")
