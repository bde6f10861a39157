"""``bench real``: a real-size FLUX.1-dev transformer (random init, bf16, nothing downloaded) on a GPU.

Measures, per resolution: no-grad rollout throughput (images/s, tokens/s, model FLOPs utilisation) and
one LeapAlign training step (time, peak memory) with LoRA and with full fine-tuning. ``--tiny`` runs the
same code on the tiny FLUX so that the script is exercised on CPU in CI.

``--predict`` adds ``leapbench plan``'s prediction of the same step (``bench_run_config``: the transformer in
the run's dtype with AdamW's states in it, LoRA rank 64 on the attention projections or full fine-tuning,
block checkpointing, 512 text tokens, the tiny conv reward) beside the measured one: the step's share
(``step_bytes``: the peak of allocated memory during the step above what was allocated before it, on a GPU
from ``torch.cuda.max_memory_allocated``, on CPU from the allocator's profile, ``memory.allocated_peak``)
against the predicted share, ``prediction_error`` = predicted / measured - 1.

FLOPs of one transformer forward over S = image + text tokens: 2 P S for the matmuls (P = parameters in
the blocks' linear layers) plus 4 S^2 D per block for attention (QK^T and AV); a backward costs twice a
forward. MFU = achieved FLOP/s over the device's dense bf16 peak.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel

from benchmark.cli.bench.harness import sync
from benchmark.cli.bench.memory import allocated_peak
from benchmark.core.backbones.flux import FluxBackbone, FluxCond
from benchmark.core.backbones.real import FLUX_DEV, FLUX_VAE
from benchmark.core.backbones.tiny import FLUX_SCHEDULER, TINY_FLUX, tiny_flux
from benchmark.core.engine import rollout
from benchmark.core.errors import ConfigError
from benchmark.training.config import RunConfig, config_from_dict
from benchmark.training.plan import predict
from evaluators.rewards.toy import TinyConvReward
from methods import LossContext, build_method

LORA = {"rank": 64, "alpha": 64, "targets": ["to_q", "to_k", "to_v", "to_out.0"]}
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}  # dense, no sparsity
TEXT_TOKENS = 512


def build(tiny: bool, resolution: int, device: torch.device, dtype: torch.dtype) -> FluxBackbone:
    """FLUX.1-dev's transformer and VAE (``benchmark.core.backbones.real``'s architectures) or the tiny FLUX."""
    if tiny:
        backbone = tiny_flux(resolution, resolution)
        backbone.transformer.to(device, dtype), backbone.vae.to(device, dtype)
        return backbone
    with torch.device(device):
        transformer = FluxTransformer2DModel(**FLUX_DEV)
        vae = AutoencoderKL(**FLUX_VAE)
    if dtype != torch.float32:
        transformer, vae = transformer.to(dtype), vae.to(dtype)
    return FluxBackbone(transformer, vae, FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER), resolution, resolution)


def forward_flops(backbone: FluxBackbone, batch: int) -> float:
    cfg = backbone.transformer.config
    linear = sum(m.weight.numel() for m in backbone.transformer.modules() if isinstance(m, torch.nn.Linear))
    S = backbone.seq_len + TEXT_TOKENS
    D = cfg.num_attention_heads * cfg.attention_head_dim
    return batch * (2 * linear * S + 4 * S * S * D * (cfg.num_layers + cfg.num_single_layers))


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def timed(fn, device) -> tuple[float, object]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def cond_for(backbone: FluxBackbone, batch: int, device, dtype) -> FluxCond:
    cfg = backbone.transformer.config
    return FluxCond(torch.randn(batch, TEXT_TOKENS, cfg.joint_attention_dim, device=device, dtype=dtype),
                    torch.randn(batch, cfg.pooled_projection_dim, device=device, dtype=dtype))


def rollout_throughput(backbone, steps, batch, device, dtype) -> dict:
    cond = cond_for(backbone, batch, device, dtype)
    sigmas = backbone.schedule(steps).to(device)
    x_T = backbone.noise(batch, torch.Generator(device).manual_seed(0))
    with torch.no_grad():
        rollout(backbone, cond, x_T, sigmas)  # warm-up
        seconds, _ = timed(lambda: rollout(backbone, cond, x_T, sigmas), device)
    flops = steps * forward_flops(backbone, batch)
    peak = peak_flops(device)
    return {"images_per_s": batch / seconds, "rollout_s": seconds,
            "tokens_per_s": batch * steps * (backbone.seq_len + TEXT_TOKENS) / seconds,
            "mfu": flops / seconds / peak if peak else None}


def leapalign_step(backbone, steps, batch, device, dtype, mode: str, measure_cpu: bool = False) -> dict:
    """One LeapAlign step (k, j pinned mid-trajectory) with LoRA (rank 64) or full fine-tuning; on CPU with
    ``measure_cpu`` also its allocated share (a third step, profiled)."""
    transformer = backbone.transformer
    transformer.enable_gradient_checkpointing()
    if mode == "lora":
        from peft import LoraConfig  # heavy (peft pulls in accelerate); the LoRA case only

        transformer.requires_grad_(False)
        transformer.add_adapter(LoraConfig(r=LORA["rank"], lora_alpha=LORA["alpha"], target_modules=LORA["targets"]))
    params = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, weight_decay=1e-4)  # states in the params' dtype (bf16)
    reward = TinyConvReward().to(device, dtype)
    cond = cond_for(backbone, batch, device, dtype)
    sigmas = backbone.schedule(steps).to(device)
    method = build_method({"name": "leapalign", "lam": 1e3})

    def one_step():
        step = method.start(steps, k=steps - max(1, steps // 8), j=max(1, steps // 3))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):  # as the trainer's
            traj = rollout(backbone, cond, backbone.noise(batch, torch.Generator(device).manual_seed(1)), sigmas, step)
            loss, _ = step.loss(traj, LossContext(backbone, cond, reward=lambda x0: reward(backbone.decode(x0).to(dtype))))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    one_step()  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device) if device.type == "cuda" else None
    seconds, _ = timed(one_step, device)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    step_bytes = peak - before if device.type == "cuda" else allocated_peak(one_step) if measure_cpu else None
    return {"mode": mode, "step_s": seconds, "peak_bytes": peak, "step_bytes": step_bytes,
            "trained_params": sum(p.numel() for p in params)}


def bench_run_config(tiny: bool, resolution: int, steps: int, batch: int, mode: str, device: torch.device) -> RunConfig:
    """The run config whose training step is ``leapalign_step``'s (for ``leapbench plan``'s prediction)."""
    dtype = "bfloat16" if device.type == "cuda" else "float32"
    return config_from_dict({
        "backbone": {"name": "flux", "tiny": tiny, "height": resolution, "width": resolution, "dtype": dtype},
        "method": {"name": "leapalign", "lam": 1e3}, "reward": {"name": "tiny_conv"},
        "schedule": {"num_steps": steps, "global_batch": batch, "micro_batch": batch},
        "optim": {"lr": 1e-5, "weight_decay": 1e-4, "grad_clip": None},
        "train": {"gradient_checkpointing": True, "autocast": device.type == "cuda", "master_dtype": dtype,
                  "lora": LORA if mode == "lora" else {"rank": 0}},
    })


def predicted(row: dict, tiny: bool, device: torch.device) -> dict:
    """``leapbench plan``'s prediction of a measured row's step, and its error against the measured share."""
    cfg = bench_run_config(tiny, row["resolution"], row["steps"], row["batch"], row["mode"], device)
    p = predict(cfg, target="cuda" if device.type == "cuda" else "cpu", text_tokens=TEXT_TOKENS)
    out = {"predicted_step_bytes": p.step_bytes, "predicted_peak_bytes": p.peak_bytes - p.split.get("EMA", 0),
           "trace_s": p.seconds}  # no EMA in this step (a training run keeps one: the plan counts it)
    if row.get("step_bytes"):
        out["prediction_error"] = p.step_bytes / row["step_bytes"] - 1
    return out


def check_memory(device: torch.device, tiny: bool, modes) -> None:
    """Refuse, before allocating anything, a transformer that cannot fit: its weights (counted on the meta
    device) in the run's dtype, and on a CPU (where running out kills the process) the gradient and the two
    AdamW moments of full fine-tuning too; ConfigError naming what is needed and what is free."""
    with torch.device("meta"):
        params = sum(p.numel() for p in FluxTransformer2DModel(**(TINY_FLUX if tiny else FLUX_DEV)).parameters())
    bytes_per = 2 if device.type == "cuda" else 4
    copies = 4 if device.type == "cpu" and "full" in modes else 1
    need = int(params * bytes_per * copies * 1.1)  # 10% for the VAE, activations and buffers
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    else:
        meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").is_file() else ""
        found = re.search(r"MemAvailable:\s+(\d+) kB", meminfo)
        free = int(found.group(1)) * 1024 if found else None
    if free is not None and need > free:
        raise ConfigError("memory", f"{need / 2**30:.0f} GiB free on {device} for a {params / 1e9:.1f}B-parameter "
                          f"transformer{' with full fine-tuning' if copies > 1 else ''} (--tiny runs the same code on "
                          "a tiny config)", f"{free / 2**30:.0f} GiB free")


def run_real(resolutions=(512, 720), steps=25, batch=1, device="cuda", tiny=False, modes=("lora", "full"),
             predict_memory: bool = False) -> list[dict]:
    dev = torch.device(device)
    check_memory(dev, tiny, modes)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    rows = []
    for resolution in resolutions:
        for mode in modes:
            backbone = build(tiny, resolution, dev, dtype)
            row = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "resolution": resolution,
                   "steps": steps, "batch": batch, "image_tokens": backbone.seq_len}
            row.update(rollout_throughput(backbone, steps, batch, dev, dtype))
            try:
                row.update(leapalign_step(backbone, steps, batch, dev, dtype, mode, measure_cpu=predict_memory))
            except torch.OutOfMemoryError as err:  # full fine-tuning of 12B on one GPU may not fit
                row.update(mode=mode, step_s=None, peak_bytes=None, error=f"out of memory: {str(err).splitlines()[0]}")
            rows.append(row)
            del backbone
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            if predict_memory:
                row.update(predicted(row, tiny, dev))
    return rows
