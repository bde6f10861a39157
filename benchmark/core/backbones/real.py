"""The real models' architectures, built without weights on the meta device (for memory planning and ``bench real``).

FLUX.1-dev (black-forest-labs/FLUX.1-dev, transformer/ and vae/ config.json): 19 double + 38 single blocks, 24 heads
of 128, 12B parameters; its VAE has 16 latent channels. SD3.5-Medium (stabilityai/stable-diffusion-3.5-medium,
transformer/config.json): 24 MMDiT-X blocks of 24 heads of 64 (dual attention in blocks 0-12, RMS q/k norm),
2.5B parameters; its VAE is SD3's (16 latent channels, scaling 1.5305, shift 0.0609). Text conditioning as the
pipelines encode it: FLUX's T5 sequence of 512 tokens (max_sequence_length) and pooled CLIP-L; SD3's 77 CLIP
tokens concatenated with 256 T5 tokens, pooled CLIP-L + CLIP-G (2048), and the negative prompt's for CFG.

A local model directory (``backbone.path``) is read for its config.json files instead, when given.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel, SD3Transformer2DModel

from benchmark.core.backbones.flux import FluxBackbone, FluxCond
from benchmark.core.backbones.sd3 import SD3Backbone, SD3Cond
from benchmark.core.backbones.tiny import FLUX_SCHEDULER, POOLED_DIM, SD3_SCHEDULER, TEXT_DIM, tiny_flux, tiny_sd3
from benchmark.core.dtypes import DTYPES

FLUX_DEV = {
    "patch_size": 1, "in_channels": 64, "num_layers": 19, "num_single_layers": 38, "attention_head_dim": 128, "num_attention_heads": 24,
    "joint_attention_dim": 4096, "pooled_projection_dim": 768, "guidance_embeds": True, "axes_dims_rope": (16, 56, 56),
}
FLUX_VAE = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 16, "block_out_channels": (128, 256, 512, 512), "layers_per_block": 2,
    "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4, "norm_num_groups": 32,
    "scaling_factor": 0.3611, "shift_factor": 0.1159, "use_quant_conv": False, "use_post_quant_conv": False,
}
SD35_MEDIUM = {
    "sample_size": 128, "patch_size": 2, "in_channels": 16, "num_layers": 24, "attention_head_dim": 64, "num_attention_heads": 24,
    "joint_attention_dim": 4096, "caption_projection_dim": 1536, "pooled_projection_dim": 2048, "out_channels": 16,
    "pos_embed_max_size": 384, "dual_attention_layers": tuple(range(13)), "qk_norm": "rms_norm",
}
SD3_VAE = dict(FLUX_VAE, scaling_factor=1.5305, shift_factor=0.0609)
TEXT = {"flux": {"tokens": 512, "dim": 4096, "pooled": 768}, "sd3": {"tokens": 77 + 256, "dim": 4096, "pooled": 2048}}
TINY_TEXT = {"tokens": 8, "dim": TEXT_DIM, "pooled": POOLED_DIM}

ARCHITECTURES = {"flux": (FluxBackbone, FluxTransformer2DModel, FLUX_DEV, FLUX_VAE, FLUX_SCHEDULER),
                 "sd3": (SD3Backbone, SD3Transformer2DModel, SD35_MEDIUM, SD3_VAE, SD3_SCHEDULER)}


def local_config(path: str | None, part: str) -> dict | None:
    """``<path>/<part>/config.json`` without its private keys, if there is one."""
    file = Path(path) / part / "config.json" if path else None
    if file is None or not file.is_file():
        return None
    return {k: v for k, v in json.loads(file.read_text()).items() if not k.startswith("_")}


def meta_backbone(name: str, *, height: int, width: int, guidance: float, dtype: str = "bfloat16", tiny: bool = False,
                  path: str | None = None, layers: int = 1):
    """The backbone ``name`` with its transformer and VAE on the meta device in ``dtype`` (no memory, no weights);
    the scheduler is real (the sigmas are computed on the CPU)."""
    size = {"height": height, "width": width, "guidance": guidance}
    with torch.device("meta"):
        if tiny:
            backbone = tiny_flux(**size, layers=layers) if name == "flux" else tiny_sd3(**size)
        else:
            cls, transformer_cls, transformer_cfg, vae_cfg, scheduler_cfg = ARCHITECTURES[name]
            transformer = transformer_cls(**(local_config(path, "transformer") or transformer_cfg))
            vae = AutoencoderKL(**(local_config(path, "vae") or vae_cfg))
            scheduler = FlowMatchEulerDiscreteScheduler(**(local_config(path, "scheduler") or scheduler_cfg))
            backbone = cls(transformer, vae, scheduler, **size)
    for module in (backbone.transformer, backbone.vae):  # nn.Module.to: diffusers' own warns about fp32 modules
        torch.nn.Module.to(module, DTYPES[dtype])
    return backbone


def text_conditioning(name: str, batch: int, device, dtype: torch.dtype, tiny: bool = False, tokens: int | None = None):
    """Conditioning shaped as the embedding cache gives it for ``batch`` prompts."""
    t = dict(TINY_TEXT if tiny else TEXT[name])
    t["tokens"] = tokens or t["tokens"]

    def emb(*shape):
        return torch.zeros(*shape, device=device, dtype=dtype)

    if name == "flux":
        return FluxCond(emb(batch, t["tokens"], t["dim"]), emb(batch, t["pooled"]))
    return SD3Cond(emb(batch, t["tokens"], t["dim"]), emb(batch, t["pooled"]), emb(batch, t["tokens"], t["dim"]),
                   emb(batch, t["pooled"]))
