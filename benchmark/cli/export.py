"""``leapbench export RUN [--step N] [--ema] --out DIR [--dtype bfloat16]``: a run's model as plain diffusers files.

RUN is a training run directory (its newest valid checkpoint, or step N's) or a checkpoint directory. Full
fine-tuning writes a diffusers model directory (``FluxTransformer2DModel.from_pretrained(DIR)``), from FSDP2's
shards or the full format; LoRA writes the adapter (``FluxPipeline.load_lora_weights(DIR)``). ``--ema`` takes
the EMA weights (what the paper evaluates). Sharded checkpoints are read one tensor at a time and the output
is written one file at a time, so the whole model is never in memory. DIR must be new; it appears complete
or not at all (written beside it and renamed).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
from pathlib import Path

from benchmark.core.checkpoint import latest_valid, step_dir, verify
from benchmark.core.dtypes import DTYPES
from benchmark.core.errors import ConfigError
from benchmark.core.export import export_checkpoint


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="training run directory, or one checkpoint directory (<run>/checkpoints/step_N)")
    parser.add_argument("--step", type=int, help="the checkpoint of this step (default: the newest valid one)")
    parser.add_argument("--ema", action="store_true", help="the EMA weights instead of the last step's")
    parser.add_argument("--out", required=True, help="new output directory")
    parser.add_argument("--dtype", choices=list(DTYPES), help="cast the weights (default: as trained, float32)")
    parser.add_argument("--max-shard-size", default="10GB", help="largest output file (full fine-tuning)")


def size_in_bytes(text: str) -> int:
    """"10GB", "500MB", "2.5GB" -> bytes (decimal units, as diffusers' ``max_shard_size``)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(KB|MB|GB|TB)\s*", text.upper())
    if m is None:
        raise ConfigError("--max-shard-size", "a size such as 5GB or 500MB", text)
    return int(float(m.group(1)) * 1000 ** ("KMGT".index(m.group(2)[0]) + 1))


def find_checkpoint(run: Path, step: int | None) -> Path:
    """The checkpoint to export: ``run`` itself, step ``step``'s, or the newest valid one; ConfigError if none."""
    if not run.is_dir():
        raise ConfigError("RUN", "a training run directory or a checkpoint directory", str(run))
    if (run / "manifest.json").is_file():  # a checkpoint directory
        if step is not None:
            raise ConfigError("--step", "no --step with a checkpoint directory", step)
        ckpt = run
    elif step is not None:
        ckpt = step_dir(run / "checkpoints", step)
        if not ckpt.is_dir():
            raise ConfigError("--step", f"a step with a checkpoint in {run / 'checkpoints'}", step)
    else:
        ckpt = latest_valid(run / "checkpoints")
        if ckpt is None:
            raise ConfigError("RUN", "a run directory with a complete checkpoint in checkpoints/", str(run))
        return ckpt
    problem = verify(ckpt)
    if problem is not None:
        raise ConfigError("RUN", f"a complete, intact checkpoint ({problem})", str(ckpt))
    return ckpt


def run(args: argparse.Namespace) -> int:
    ckpt = find_checkpoint(Path(args.run), args.step)
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError("--out", "a new (or empty) directory", str(out))
    max_bytes = size_in_bytes(args.max_shard_size)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        kind = export_checkpoint(ckpt, tmp, ema=args.ema, dtype=DTYPES[args.dtype] if args.dtype else None,
                                 max_bytes=max_bytes)
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    weights = "EMA weights" if args.ema else "weights"
    print(f"wrote the {'LoRA adapter' if kind == 'lora' else 'diffusers transformer'} ({weights}) of {ckpt} to {out}")
    return 0
