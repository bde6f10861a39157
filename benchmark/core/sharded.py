"""Sharded checkpoints: every rank writes its own shards with ``torch.distributed.checkpoint`` (DCP).

The full-state format (``benchmark.core.checkpoint``) gathers the whole model, AdamW state and EMA onto
rank 0, about 190 GB for FLUX.1-dev's 12B parameters in fp32. Under FSDP2 a checkpoint is instead::

    step_000050/
        dcp/                .metadata + __<rank>_0.distcp: {"model": ..., "optim": ..., "ema": ...}, each
                            rank's shards written by that rank (DCP's FileSystemWriter)
        model_config.json   the transformer's diffusers config (``_class_name`` included): what export and
                            sampling rebuild the model from
        config.yaml         the run's resolved config
        trainer.pt          step, fault counters and RNG states
        manifest.json       size and sha256 of every file (each rank hashes the shard files it wrote)
        complete            written last, as in the full format

written to a temporary sibling directory and renamed into place when every rank is done. DCP records the
global shape of every tensor and the chunks each file holds, so a checkpoint loads on any world size: DCP
reshards on load (2 ranks -> 1 process, 1 -> 2). Before a resume the manifest's checksums and DCP's metadata
(every chunk in a file that exists and is long enough, the chunks covering each tensor) are checked.

Reading without training (export, sampling) goes one tensor at a time: DCP's FileSystemReader reads each
requested item from its file and copies it into the destination, so nothing but the destination and one
item is ever held.
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from safetensors.torch import save_file
from torch import Tensor, nn
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.metadata import Metadata, TensorStorageMetadata
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from benchmark.core.io import sha256_file

DCP_DIR = "dcp"
MODEL_CONFIG = "model_config.json"


def single_process() -> bool:
    return not (dist.is_available() and dist.is_initialized())


@contextlib.contextmanager
def dcp_call():
    """DCP warns on every call without a process group that it assumes one process: that is what we mean."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        yield


def is_sharded(ckpt: Path) -> bool:
    return (Path(ckpt) / DCP_DIR).is_dir()


def training_state(model: nn.Module, optimizer: torch.optim.Optimizer, ema: Any) -> dict[str, Any]:
    """What DCP saves and loads in place: the model's and AdamW's state dicts (sharded DTensors under FSDP2,
    keyed by parameter name) and the EMA shadow (sharded like the parameters)."""
    model_state, optim_state = get_state_dict(model, optimizer)
    return {"model": model_state, "optim": optim_state, "ema": ema.state()}


def save_shards(state: dict[str, Any], tmp: Path, rank: int) -> dict[str, dict]:
    """Write this rank's shards of ``state`` under ``tmp/dcp`` (a collective); returns the size and sha256 of
    the files this rank wrote, for the manifest."""
    with dcp_call():
        dcp.save(state, checkpoint_id=tmp / DCP_DIR, no_dist=single_process())
    mine = sorted((tmp / DCP_DIR).glob(f"__{rank}_*.distcp"))
    return {str(p.relative_to(tmp)): {"size": p.stat().st_size, "sha256": sha256_file(p)} for p in mine}


def load_shards(ckpt: Path, model: nn.Module, optimizer: torch.optim.Optimizer, ema: Any) -> None:
    """Restore model, AdamW and EMA from ``ckpt`` on any world size (a collective; DCP reshards)."""
    state = training_state(model, optimizer, ema)
    with dcp_call():
        dcp.load(state, checkpoint_id=Path(ckpt) / DCP_DIR, no_dist=single_process())
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    ema.load_state(state["ema"])


def write_model_config(module: nn.Module, path: Path, class_name: str | None) -> None:
    """The diffusers config of the trained transformer (none for a plain module such as the toy flow)."""
    config = {} if class_name is None else {"_class_name": class_name,
                                            **{k: v for k, v in dict(module.config).items() if not k.startswith("_")}}
    path.write_text(json.dumps(config, indent=2, sort_keys=True))


# -- checks ---------------------------------------------------------------------------------------------------


def metadata(ckpt: Path) -> Metadata:
    return FileSystemReader(Path(ckpt) / DCP_DIR).read_metadata()


def check_metadata(ckpt: Path) -> str | None:
    """None if DCP's metadata is consistent with the files, else what is wrong: every chunk lies in a file that
    exists and is long enough, and the chunks of each tensor add up to its size."""
    root = Path(ckpt) / DCP_DIR
    try:
        md = metadata(ckpt)
    except Exception as err:  # a missing or truncated .metadata: pickle and OS errors alike
        return f"unreadable DCP metadata ({type(err).__name__}: {err})"
    sizes = {p.name: p.stat().st_size for p in root.glob("*.distcp")}
    for index, info in md.storage_data.items():
        if info.relative_path not in sizes:
            return f"missing {DCP_DIR}/{info.relative_path}"
        if info.offset + info.length > sizes[info.relative_path]:
            return f"{DCP_DIR}/{info.relative_path} is shorter than its metadata says ({index.fqn})"
    for fqn, item in md.state_dict_metadata.items():
        if isinstance(item, TensorStorageMetadata):
            if sum(math.prod(c.sizes) for c in item.chunks) != math.prod(item.size):
                return f"the chunks of {fqn} do not cover its shape {tuple(item.size)}"
    return None


# -- reading one part without training -------------------------------------------------------------------------


def tensor_specs(ckpt: Path, part: str) -> dict[str, TensorStorageMetadata]:
    """Name -> global shape and dtype of every tensor saved under ``part`` ("model" or "ema"), in saved order."""
    prefix = part + "."
    return {fqn[len(prefix):]: item for fqn, item in metadata(ckpt).state_dict_metadata.items()
            if fqn.startswith(prefix) and isinstance(item, TensorStorageMetadata)}


def read_into(ckpt: Path, part: str, tensors: dict[str, Tensor]) -> None:
    """Fill ``tensors`` (name -> destination of the saved global shape, any dtype) from ``part`` of ``ckpt``.

    DCP reads the items one at a time and copies each into its destination (casting to its dtype), in this
    process, whatever world size wrote the checkpoint; a name the checkpoint lacks is an error."""
    with dcp_call():
        dcp.load({part: tensors}, checkpoint_id=Path(ckpt) / DCP_DIR, no_dist=True)


def read_part(ckpt: Path, part: str, names: list[str], dtype: torch.dtype | None = None) -> dict[str, Tensor]:
    """``names`` of ``part`` as full CPU tensors (in ``dtype``, default: as saved)."""
    specs = tensor_specs(ckpt, part)
    missing = [n for n in names if n not in specs]
    if missing:
        raise KeyError(f"{ckpt}: no {part} tensors {missing[:3]}")
    out = {n: torch.empty(specs[n].size, dtype=dtype or specs[n].properties.dtype) for n in names}
    read_into(ckpt, part, out)
    return out


def shard_groups(specs: dict[str, TensorStorageMetadata], dtype: torch.dtype | None, max_bytes: int) -> list[list[str]]:
    """Names in saved order cut into consecutive groups of at most ``max_bytes`` (one tensor may exceed it)."""
    groups, size = [[]], 0
    for name, item in specs.items():
        nbytes = math.prod(item.size) * (dtype or item.properties.dtype).itemsize
        if groups[-1] and size + nbytes > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += nbytes
    return [g for g in groups if g]


def export_weights(ckpt: Path, out: Path, *, ema: bool, dtype: torch.dtype | None, max_bytes: int) -> None:
    """Write the model (``ema``: its EMA weights for the parameters, the model's for the rest) as a diffusers
    model directory: config.json + diffusion_pytorch_model-0000k-of-0000n.safetensors + index, one output shard
    at a time (holding that shard and one checkpoint item, never the whole model)."""
    out.mkdir(parents=True, exist_ok=True)
    config = json.loads((Path(ckpt) / MODEL_CONFIG).read_text())
    specs = tensor_specs(ckpt, "model")
    averaged = set(tensor_specs(ckpt, "ema")) if ema else set()
    if not config:  # a plain module (the toy flow): one file of plain weights
        groups, names = [list(specs)], ["model.safetensors"]
    else:
        import diffusers  # heavy; only for diffusers models

        config = {"_class_name": config["_class_name"], "_diffusers_version": diffusers.__version__,
                  **{k: v for k, v in config.items() if k != "_class_name"}}
        (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        groups = shard_groups(specs, dtype, max_bytes)
        n = len(groups)
        names = (["diffusion_pytorch_model.safetensors"] if n == 1 else
                 [f"diffusion_pytorch_model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)])
    weight_map, total = {}, 0
    for group, filename in zip(groups, names):
        tensors = read_part(ckpt, "model", [k for k in group if k not in averaged], dtype)
        if ema:
            tensors.update(read_part(ckpt, "ema", [k for k in group if k in averaged], dtype))
        save_file({k: tensors[k].contiguous() for k in group}, str(out / filename), metadata={"format": "pt"})
        total += sum(t.numel() * t.element_size() for t in tensors.values())
        weight_map.update(dict.fromkeys(group, filename))
        del tensors
    if len(groups) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (out / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def load_module(ckpt: Path, module: nn.Module, ema: bool) -> None:
    """Load a sharded checkpoint's weights (``ema``: the EMA's for the parameters) into ``module`` in place,
    casting to its dtypes, one checkpoint item at a time."""
    with torch.no_grad():
        state = module.state_dict()
        averaged = set(tensor_specs(ckpt, "ema")) & set(state) if ema else set()
        read_into(ckpt, "model", {k: v for k, v in state.items() if k not in averaged})
        if averaged:
            read_into(ckpt, "ema", {k: state[k] for k in averaged})


def load_transformer(ckpt: Path, dtype: torch.dtype, ema: bool) -> nn.Module:
    """The trained diffusers transformer of a sharded checkpoint in ``dtype`` (``ema``: with its EMA weights),
    built on the meta device and filled from the shards: the model is allocated once, in ``dtype``."""
    import diffusers  # heavy; only for diffusers models

    config = json.loads((Path(ckpt) / MODEL_CONFIG).read_text())
    cls = getattr(diffusers, config.pop("_class_name"))
    with torch.device("meta"):
        module = cls.from_config(config).to(dtype)
    module.to_empty(device="cpu")
    load_module(ckpt, module, ema)
    return module
