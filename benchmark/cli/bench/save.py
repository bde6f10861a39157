"""``bench save``: rank 0's peak memory while saving a checkpoint, sharded (DCP) against gathered, by world size.

Each case is ``torchrun --nproc_per_node=W`` on gloo (CPU). Every rank builds the same FLUX-shaped transformer
of about N parameters (FSDP2 ``fully_shard`` per block and at the root when W > 1, as the trainer wraps it),
gives AdamW its moments and the EMA its shadow (steady state: 16 bytes per parameter in all, split over the
ranks), then calls the trainer's ``save_checkpoint``. Rank 0 reports its RSS before the model was built
(the libraries), just before the save, and its high-water mark during the save (VmHWM reset just before).
``held`` = peak - libraries is what rank 0 needs for its share of the training state and the save;
``save_own`` = peak - before is the save's own cost. Then the sharded checkpoint is exported in one process
(``leapbench export``'s code) and that process's own peak is reported against the model's size.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from benchmark.cli.bench.memory import MALLOC_ENV, proc_status, reset_peak_rss
from benchmark.core import distributed
from benchmark.core.backbones.tiny import TINY_FLUX
from benchmark.core.checkpoint import save_checkpoint
from benchmark.core.export import export_checkpoint
from benchmark.core.sharded import tensor_specs
from benchmark.training.ema import EMA

# FLUX-shaped, width 1536 (12 heads of 128), 1 double + 2 single blocks
SAVE_MODEL = dict(patch_size=1, in_channels=64, num_layers=1, num_single_layers=2, attention_head_dim=128,
                  num_attention_heads=12, joint_attention_dim=1024, pooled_projection_dim=256, guidance_embeds=True,
                  axes_dims_rope=(16, 56, 56))


def trim() -> None:
    ctypes.CDLL("libc.so.6").malloc_trim(0)


def worker(out: Path, shards: bool, tiny: bool = False) -> dict | None:
    """One rank of a save case (run under torchrun); rank 0 returns its figures."""
    from diffusers import FluxTransformer2DModel  # heavy; only in the worker

    env, started = distributed.setup("gloo")
    baseline = proc_status("VmRSS")
    torch.manual_seed(0)
    model = FluxTransformer2DModel(**(TINY_FLUX if tiny else SAVE_MODEL))
    how = "fsdp" if env.world_size > 1 else "none"
    model = distributed.parallelize(model, how, env, "float32", "float32")
    named = list(model.named_parameters())
    optimizer = torch.optim.AdamW([p for _, p in named], lr=1e-5)
    for _, p in named:  # one step of zero gradients: AdamW's moments exist, as in a running job
        p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    ema = EMA(named, 0.995)
    params = sum(p.numel() for _, p in named)  # a DTensor's numel is the whole tensor's
    distributed.barrier()
    trim()
    reset_peak_rss()
    before = proc_status("VmRSS")
    save_checkpoint(out, 1, model, optimizer, ema, {"state": {}, "rng": None}, lora=False, backbone="flux",
                    rank=env.rank, keep=1, shards=shards)
    peak = proc_status("VmHWM")
    distributed.teardown(started)
    if env.rank != 0:
        return None
    return {"world_size": env.world_size, "format": "sharded" if shards else "full", "params": params,
            "libraries_bytes": baseline, "before_bytes": before, "peak_bytes": peak, "held_bytes": peak - baseline,
            "save_own_bytes": peak - before}


def export_case(ckpt: Path, out: Path, max_bytes: int) -> dict:
    """Peak of exporting a sharded checkpoint in this (fresh) process, against the model's size."""
    model_bytes = sum(s.size.numel() * s.properties.dtype.itemsize for s in tensor_specs(ckpt, "model").values())
    largest = max(s.size.numel() * s.properties.dtype.itemsize for s in tensor_specs(ckpt, "model").values())
    trim()
    reset_peak_rss()
    before = proc_status("VmRSS")
    export_checkpoint(ckpt, out, max_bytes=max_bytes)
    own = proc_status("VmHWM") - before
    return {"model_bytes": model_bytes, "max_shard_bytes": max_bytes, "largest_tensor_bytes": largest,
            "export_own_bytes": own, "own_over_model": own / model_bytes}


def run_case(world_size: int, shards: bool, root: Path, tiny: bool) -> dict:
    out = root / f"w{world_size}-{'sharded' if shards else 'full'}"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world_size}", "-m",
           "benchmark.cli.bench.save", "worker", str(out), "sharded" if shards else "full", *(["--tiny"] if tiny else [])]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    done = subprocess.run(cmd, capture_output=True, text=True, env={**env, **MALLOC_ENV, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"save case W={world_size} failed:\n{done.stderr[-3000:]}")
    row = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))
    return {**row, "checkpoint": str(out / "step_000001")}


def bench_save(tiny: bool = False, progress=None) -> tuple[list[dict], dict]:
    """Save cases (W=1 sharded, W=2 sharded, W=2 gathered), then an export of the W=2 sharded checkpoint.
    ``tiny``: bench real's tiny transformer instead (a check that the benchmark runs)."""
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for world_size, shards in ((1, True), (2, True), (2, False)):
            rows.append(run_case(world_size, shards, Path(tmp), tiny))
            if progress:
                progress(rows[-1])
        ckpt = rows[1]["checkpoint"]
        done = subprocess.run([sys.executable, "-m", "benchmark.cli.bench.save", "export", ckpt, str(Path(tmp) / "x")],
                              capture_output=True, text=True, env={**os.environ, **MALLOC_ENV})
        if done.returncode != 0:
            raise RuntimeError(f"export case failed:\n{done.stderr[-3000:]}")
        exported = json.loads(done.stdout.strip().splitlines()[-1])
    one = rows[0]["held_bytes"]
    for row in rows:
        row.pop("checkpoint")
        row["held_vs_w1_sharded"] = row["held_bytes"] / one
    return rows, exported


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["worker", "export"])
    p.add_argument("path")
    p.add_argument("arg")
    p.add_argument("--tiny", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(1)
    if a.what == "worker":
        result = worker(Path(a.path), a.arg == "sharded", a.tiny)
        if result is not None:
            print(json.dumps(result), flush=True)
    else:
        print(json.dumps(export_case(Path(a.path), Path(a.arg), max_bytes=100 * 2**20)))
