"""``bench memory``: peak memory of one training step per method and number of steps T, and its prediction.

Each case runs in a fresh process (``python -m benchmark.cli.bench.memory METHOD T ...``) so that no
allocator state carries over, and measures a step in steady state: after one step (AdamW's moments exist,
the libraries' one-time buffers are made), the next one. On CPU the peak is the process's RSS high-water mark
(VmHWM, reset just before the step), and the step's own share is that minus the RSS just before the step; on
GPU it is max_memory_allocated. LeapAlign keeps two velocity evaluations whatever T is, so its peak must stay
flat (T=50 over T=10 at most 1.05); full backprop keeps T of them and grows linearly. A GRPO preset's step is a
group of samples at the same micro-batch (``harness.policy_step``): its peak is one micro-batch's loss, which
keeps the evaluations of the steps it trains (DanceGRPO: 60% of T) plus the group's stored trajectories.

``--predict`` traces the same step without data (``benchmark.training.plan``: the run config ``bench_run_config``
says what the bench does) and reports the predicted step share beside the measured one.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys

import torch

from benchmark.cli.bench.harness import BenchSetup, bench_config, train_step
from benchmark.training.config import RunConfig, config_from_dict
from benchmark.training.plan import predict

BENCH_TEXT_TOKENS = 16  # BenchSetup's prompt embedding length


def proc_status(key: str) -> int:
    """VmRSS / VmHWM of this process in bytes (Linux reports kB)."""
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith(key + ":")).split()[1]) * 1024


def reset_peak_rss() -> None:
    """Reset the RSS high-water mark (VmHWM) to the current RSS: writing 5 to clear_refs (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


# Large blocks come from mmap and go straight back to the OS when freed, so the RSS high-water mark is
# the peak of live tensors rather than of glibc's cached arenas.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_ARENA_MAX": "1", "MALLOC_TRIM_THRESHOLD_": "0"}


def measure_case(method: str, steps: int, resolution: int, device: str) -> dict:
    setup = BenchSetup.build(resolution=resolution, device=device)
    train_step(setup, method, steps)  # steady state: the measured step is the second
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    if setup.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        done = train_step(setup, method, steps)
        peak = torch.cuda.max_memory_allocated()
    else:
        reset_peak_rss()  # the peak of the step, not of importing torch and building the model
        before = proc_status("VmRSS")
        done = train_step(setup, method, steps)
        peak = proc_status("VmHWM")
    return {"method": method, "steps": steps, "peak_bytes": peak, "step_bytes": peak - before, "device": device,
            "samples": done["samples"]}


def run_cases(methods: list[str], steps: list[int], resolution: int, device: str, progress=None,
              predicted: bool = False) -> list[dict]:
    rows = []
    for method in methods:
        for T in steps:
            cmd = [sys.executable, "-m", "benchmark.cli.bench.memory", method, str(T), str(resolution), device]
            done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **MALLOC_ENV})
            if done.returncode != 0:
                raise RuntimeError(f"memory case {method} T={T} failed:\n{done.stderr[-3000:]}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            if predicted:
                rows[-1].update(predict_case(method, T, resolution))
                rows[-1]["prediction_error"] = rows[-1]["predicted_step_bytes"] / rows[-1]["step_bytes"] - 1
            if progress:
                progress(rows[-1])
    return rows


def bench_run_config(method: str, steps: int, resolution: int) -> RunConfig:
    """The run config whose training step is the bench's: the tiny FLUX (one block of each kind) at
    ``resolution`` in float32, one sample, the tiny conv reward, AdamW on every transformer weight as
    ``BenchSetup``, no clipping, no autocast, no activation checkpointing."""
    return config_from_dict({
        "backbone": {"name": "flux", "tiny": True, "height": resolution, "width": resolution, "dtype": "float32"},
        "method": bench_config(method, steps), "reward": {"name": "tiny_conv"},
        "schedule": {"num_steps": steps, "global_batch": 1, "micro_batch": 1},
        "optim": {"lr": 1e-5, "weight_decay": 1e-4, "grad_clip": None},
        "train": {"gradient_checkpointing": False, "autocast": False},
    })


def predict_case(method: str, steps: int, resolution: int) -> dict:
    """The predicted step share of a bench case (CPU: float32, single-tensor AdamW; 16 text tokens as the bench)."""
    p = predict(bench_run_config(method, steps, resolution), target="cpu", text_tokens=BENCH_TEXT_TOKENS)
    return {"predicted_step_bytes": p.step_bytes, "predicted_peak_bytes": p.peak_bytes, "trace_s": p.seconds}


def ratios(rows: list[dict]) -> list[dict]:
    """Per method: peak (and step share) at the largest T over the smallest T."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["steps"])
        lo, hi = mine[0], mine[-1]
        out.append({
            "method": method, "ratio_of": f"T={hi['steps']}/T={lo['steps']}",
            "peak_ratio": hi["peak_bytes"] / lo["peak_bytes"],
            "step_ratio": hi["step_bytes"] / max(lo["step_bytes"], 1),
        })
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("method"), p.add_argument("steps", type=int), p.add_argument("resolution", type=int)
    p.add_argument("device")
    a = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(json.dumps(measure_case(a.method, a.steps, a.resolution, a.device)))
