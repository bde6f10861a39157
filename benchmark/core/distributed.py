"""torch.distributed setup and sharding, kept apart from the training algorithm.

Ranks come from torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) or, under
Slurm (submitit launches one task per GPU), from SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID with the
first host of SLURM_JOB_NODELIST as master: the same variables submitit's JobEnvironment reads, so
training code never imports submitit. nccl on GPU, gloo on CPU.

LoRA trains with DDP (the adapter is small, replicate it); full fine-tuning with FSDP2 ``fully_shard``
per transformer block and at the root, parameters gathered in bf16 and gradients reduced in fp32
(``MixedPrecisionPolicy``), as the peers train FLUX.1-dev's 12B parameters.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import distribute_tensor
from torch.nn.parallel import DistributedDataParallel

from benchmark.core.dtypes import DTYPES


@dataclass
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if torch.cuda.is_available() else torch.device("cpu")


def first_host(nodelist: str) -> str:
    """The first host of a Slurm nodelist: 'gpu[03-05,07],cpu1' -> 'gpu03'."""
    m = re.match(r"([^,\[]+)(\[([^\]]+)\])?", nodelist)
    if m is None:
        return nodelist
    prefix, ranges = m.group(1), m.group(3)
    return prefix if not ranges else prefix + ranges.split(",")[0].split("-")[0]


def env_from_environment(environ: dict | None = None) -> DistEnv:
    """This process's rank, world size and rendezvous address: torchrun's variables, else Slurm's."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" in env and "RANK" in env:
        return DistEnv(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)),
                       env.get("MASTER_ADDR", "127.0.0.1"), int(env.get("MASTER_PORT", 29500)))
    if "SLURM_NTASKS" in env and "SLURM_PROCID" in env and int(env["SLURM_NTASKS"]) > 1:
        port = int(env.get("MASTER_PORT", 20000 + int(env.get("SLURM_JOB_ID", "0")) % 20000))
        addr = env.get("MASTER_ADDR") or first_host(env.get("SLURM_JOB_NODELIST", "127.0.0.1"))
        return DistEnv(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0)), addr, port)
    return DistEnv()


def setup(backend: str = "auto", timeout_s: int = 1800) -> tuple[DistEnv, bool]:
    """Start the process group if this is a multi-process run; returns (env, whether we started it).

    ``backend``: nccl, gloo, or auto (nccl on GPU, gloo on CPU).
    """
    env = env_from_environment()
    if env.world_size == 1 or dist.is_initialized():
        return env, False
    os.environ.setdefault("MASTER_ADDR", env.master_addr)
    os.environ.setdefault("MASTER_PORT", str(env.master_port))
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(env.local_rank)
    dist.init_process_group(backend, rank=env.rank, world_size=env.world_size,
                            timeout=datetime.timedelta(seconds=timeout_s))
    return env, True


def teardown(started: bool) -> None:
    if started and dist.is_initialized():
        dist.destroy_process_group()


def strategy(choice: str, lora: bool, world_size: int) -> str:
    """What wraps the trained module: "none" in one process, else ``choice`` (auto: DDP for LoRA, FSDP2 else)."""
    if world_size == 1:
        return "none"
    if choice == "auto":
        return "ddp" if lora else "fsdp"
    return choice


class DDP(DistributedDataParallel):
    """DDP that forwards attribute reads (``.config``, ``.dtype``) to the wrapped diffusers model,
    so backbones keep calling ``self.transformer.config`` unchanged."""

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def block_lists(model: nn.Module) -> list[nn.ModuleList]:
    """The transformer's repeated blocks (FLUX: transformer_blocks + single_transformer_blocks)."""
    return [m for name, m in model.named_children() if isinstance(m, nn.ModuleList) and name.endswith("blocks")]


def parallelize(model: nn.Module, how: str, env: DistEnv, param_dtype: str = "bfloat16",
                reduce_dtype: str = "float32") -> nn.Module:
    """Wrap the trained module for ``how`` ("none", "ddp" or "fsdp"); FSDP2 shards in place, gathering parameters
    in ``param_dtype`` and reducing gradients in ``reduce_dtype`` (``MixedPrecisionPolicy``)."""
    if how == "none":
        return model
    if how == "ddp":
        device_ids = [env.local_rank] if env.device.type == "cuda" else None
        return DDP(model, device_ids=device_ids)
    mp = MixedPrecisionPolicy(param_dtype=DTYPES[param_dtype], reduce_dtype=DTYPES[reduce_dtype])
    for blocks in block_lists(model):
        for block in blocks:
            fully_shard(block, mp_policy=mp)
    fully_shard(model, mp_policy=mp)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def gradient_sync(model: nn.Module, sync: bool):
    """Skip the gradient all-reduce on all but the last micro-batch of an accumulation."""
    if isinstance(model, DistributedDataParallel) and not sync:
        return model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):  # an FSDP2 module
        model.set_requires_gradient_sync(sync)
    return contextlib.nullcontext()


def full_tensor(t: Tensor) -> Tensor:
    """The whole tensor of a DTensor shard (a collective), or the tensor itself."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def all_mean(values: Tensor) -> Tensor:
    """Mean over ranks (identity in one process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        values = values.clone()
        dist.all_reduce(values)
        values /= dist.get_world_size()
    return values


def all_gather(values: Tensor) -> Tensor:
    """Every rank's ``values`` (same shape on each) concatenated along dim 0 in rank order (itself in one process)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return values
    parts = [torch.empty_like(values) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, values.contiguous())
    return torch.cat(parts)


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is true on any rank (so every rank takes the same branch)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def broadcast_object(obj, src: int = 0):
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_object(obj, dst: int = 0) -> list | None:
    """Every rank's ``obj`` in rank order on ``dst`` (None on the other ranks); ``[obj]`` in one process."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return [obj]
    box = [None] * dist.get_world_size() if dist.get_rank() == dst else None
    dist.gather_object(obj, box, dst=dst)
    return box


def all_gather_object(obj) -> list:
    """Every rank's ``obj``, in rank order (``[obj]`` in one process)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def shard_like(full: Tensor, like: Tensor) -> Tensor:
    """``full`` placed as ``like`` is: this rank's shard when ``like`` is an FSDP2 DTensor, else on its device."""
    if hasattr(like, "device_mesh"):
        return distribute_tensor(full.to(like.to_local().device), like.device_mesh, like.placements)
    return full.to(like.device)
