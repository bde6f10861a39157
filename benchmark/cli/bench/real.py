"""``bench real``: a real-size FLUX.1-dev transformer (random init, bf16, nothing downloaded) on a GPU.

Measures, per resolution: no-grad rollout throughput (images/s, tokens/s, model FLOPs utilisation) and
one LeapAlign training step (time, peak memory) with LoRA and with full fine-tuning. ``--tiny`` runs the
same code on a tiny config so that the script is exercised on CPU in CI.

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
from benchmark.core.backbones.flux import FluxBackbone, FluxCond
from benchmark.core.backbones.tiny import FLUX_SCHEDULER
from benchmark.core.engine import rollout
from benchmark.core.errors import ConfigError
from evaluators.rewards.toy import TinyConvReward
from methods import LossContext, build_method

FLUX_DEV = dict(
    patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128, num_attention_heads=24,
    joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True, axes_dims_rope=(16, 56, 56),
)
FLUX_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32,
    scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False,
)
TINY = dict(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
            joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True, axes_dims_rope=(4, 6, 6))
TINY_VAE = dict(FLUX_VAE, latent_channels=4, block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4, layers_per_block=1)
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}  # dense, no sparsity
TEXT_TOKENS = 512


def build(tiny: bool, resolution: int, device: torch.device, dtype: torch.dtype) -> FluxBackbone:
    with torch.device(device):
        transformer = FluxTransformer2DModel(**(TINY if tiny else FLUX_DEV))
        vae = AutoencoderKL(**(TINY_VAE if tiny else FLUX_VAE))
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


def leapalign_step(backbone, steps, batch, device, dtype, mode: str) -> dict:
    """One LeapAlign step (k, j pinned mid-trajectory) with LoRA (rank 64) or full fine-tuning."""
    transformer = backbone.transformer
    transformer.enable_gradient_checkpointing()
    if mode == "lora":
        from peft import LoraConfig  # heavy (peft pulls in accelerate); the LoRA case only

        transformer.requires_grad_(False)
        transformer.add_adapter(LoraConfig(r=64, lora_alpha=64, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    params = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, weight_decay=1e-4)  # states in the params' dtype (bf16)
    reward = TinyConvReward().to(device, dtype)
    cond = cond_for(backbone, batch, device, dtype)
    sigmas = backbone.schedule(steps).to(device)
    method = build_method({"name": "leapalign", "lam": 1e3})

    def one_step():
        step = method.start(steps, k=steps - max(1, steps // 8), j=max(1, steps // 3))
        traj = rollout(backbone, cond, backbone.noise(batch, torch.Generator(device).manual_seed(1)), sigmas, step)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss, _ = step.loss(traj, LossContext(backbone, cond, reward=lambda x0: reward(backbone.decode(x0).to(dtype))))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    one_step()  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds, _ = timed(one_step, device)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {"mode": mode, "step_s": seconds, "peak_bytes": peak, "trained_params": sum(p.numel() for p in params)}


def check_memory(device: torch.device, tiny: bool, modes) -> None:
    """Refuse, before allocating anything, a transformer that cannot fit: its weights (counted on the meta
    device) in the run's dtype, and on a CPU (where running out kills the process) the gradient and the two
    AdamW moments of full fine-tuning too; ConfigError naming what is needed and what is free."""
    with torch.device("meta"):
        params = sum(p.numel() for p in FluxTransformer2DModel(**(TINY if tiny else FLUX_DEV)).parameters())
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


def run_real(resolutions=(512, 720), steps=25, batch=1, device="cuda", tiny=False, modes=("lora", "full")) -> list[dict]:
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
                row.update(leapalign_step(backbone, steps, batch, dev, dtype, mode))
            except torch.OutOfMemoryError as err:  # full fine-tuning of 12B on one GPU may not fit
                row.update(mode=mode, step_s=None, peak_bytes=None, error=f"out of memory: {str(err).splitlines()[0]}")
            rows.append(row)
            del backbone
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    return rows
