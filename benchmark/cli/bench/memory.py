"""``bench memory``: peak memory of one training step per method and number of steps T, and its prediction.

Each case runs in a fresh process (``python -m benchmark.cli.bench.memory METHOD T ...``) so that no
allocator state carries over, and measures a step in steady state: after one step (AdamW's moments exist,
the libraries' one-time buffers are made), the next one. A method's random choices are pinned to its heaviest
rollout (``Method.peak_choices``: ReFL's and DRTune's earliest stop), the step a run's peak comes from. On CPU
two figures: the process's RSS high-water mark (VmHWM, reset just before the step; the step's share is that
minus the RSS just before it), which also holds autograd's graph (its nodes and saved-variable records, several
hundred bytes per operator kept for backward) and the allocator's rounding, and the peak of the bytes torch's
CPU allocator holds (``allocated_step_bytes``: a third step under torch.profiler's memory profiling, the CPU
counterpart of CUDA's max_memory_allocated, which also counts tensors only). On GPU both are
max_memory_allocated. LeapAlign keeps two velocity evaluations whatever T is, so its peak must stay
flat (T=50 over T=10 at most 1.05); full backprop keeps T of them and grows linearly. A GRPO preset's step is a
group of samples at the same micro-batch (``harness.policy_step``): its peak is one micro-batch's loss, which
keeps the evaluations of the steps it trains (DanceGRPO: 60% of T) plus the group's stored trajectories.

``--predict`` traces the same step without data (``benchmark.training.plan``: the run config ``bench_run_config``
says what the bench does) and reports the predicted step share beside the measured ones; ``prediction_error``
is against the allocator's share (tensors, as the prediction and a GPU count them), ``rss_error`` against RSS.
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
from methods import build_method

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


def allocated_peak(step) -> int:
    """The peak of the bytes torch's CPU allocator holds during ``step()``, above what it held when it began.

    torch.profiler's memory profiling reports every allocation and free of the CPU allocator with the running
    total (``c10::ProfiledCPUMemoryReporter``); the total counts from the profile's start, so the step's share
    is its largest value less the total before the first event."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if hasattr(node.extra_fields, "alloc_size"):
            events.append((node.start_time_ns, node.extra_fields.alloc_size, node.extra_fields.total_allocated))
        stack.extend(node.children)
    events.sort()
    return max(total for *_, total in events) - (events[0][2] - events[0][1])


def measure_case(method: str, steps: int, resolution: int, device: str) -> dict:
    setup = BenchSetup.build(resolution=resolution, device=device)

    def step() -> dict:
        return train_step(setup, method, steps, heaviest=True)

    step()  # steady state: the measured step is the second
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    if setup.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        done = step()
        peak = torch.cuda.max_memory_allocated()
        allocated = peak - before
    else:
        reset_peak_rss()  # the peak of the step, not of importing torch and building the model
        before = proc_status("VmRSS")
        done = step()
        peak = proc_status("VmHWM")
        allocated = allocated_peak(step)
    return {"method": method, "steps": steps, "peak_bytes": peak, "step_bytes": peak - before,
            "allocated_step_bytes": allocated, "device": device, "samples": done["samples"]}


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
                row = rows[-1]
                row.update(predict_case(method, T, resolution))
                row["prediction_error"] = row["predicted_step_bytes"] / row["allocated_step_bytes"] - 1
                row["rss_error"] = row["predicted_step_bytes"] / row["step_bytes"] - 1
            if progress:
                progress(rows[-1])
    return rows


def bench_run_config(method: str, steps: int, resolution: int) -> RunConfig:
    """The run config whose training step is the bench's: the tiny FLUX (one block of each kind) at
    ``resolution`` in float32, micro-batches of one sample (a GRPO preset: one group of them), the tiny conv
    reward, AdamW on every transformer weight as ``BenchSetup``, no clipping, no autocast, no activation
    checkpointing."""
    group = build_method(bench_config(method, steps)).group_size
    return config_from_dict({
        "backbone": {"name": "flux", "tiny": True, "height": resolution, "width": resolution, "dtype": "float32"},
        "method": bench_config(method, steps), "reward": {"name": "tiny_conv"},
        "schedule": {"num_steps": steps, "global_batch": group, "micro_batch": 1},
        "optim": {"lr": 1e-5, "weight_decay": 1e-4, "grad_clip": None},
        "train": {"gradient_checkpointing": False, "autocast": False, "lora": {"rank": 0}},
    })


def predict_case(method: str, steps: int, resolution: int) -> dict:
    """The predicted step share of a bench case (CPU: float32, single-tensor AdamW; 16 text tokens as the bench)."""
    p = predict(bench_run_config(method, steps, resolution), target="cpu", text_tokens=BENCH_TEXT_TOKENS)
    return {"predicted_step_bytes": p.step_bytes, "predicted_peak_bytes": p.peak_bytes, "trace_s": p.seconds}


def ratios(rows: list[dict]) -> list[dict]:
    """Per method: peak, step share (RSS) and allocated step share at the largest T over the smallest T."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["steps"])
        lo, hi = mine[0], mine[-1]
        out.append({
            "method": method, "ratio_of": f"T={hi['steps']}/T={lo['steps']}",
            "peak_ratio": hi["peak_bytes"] / lo["peak_bytes"],
            "step_ratio": hi["step_bytes"] / max(lo["step_bytes"], 1),
            "allocated_ratio": hi["allocated_step_bytes"] / max(lo["allocated_step_bytes"], 1),
        })
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("method"), p.add_argument("steps", type=int), p.add_argument("resolution", type=int)
    p.add_argument("device")
    a = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(json.dumps(measure_case(a.method, a.steps, a.resolution, a.device)))
