"""Tiny random FLUX and SD3 models with the real diffusers classes, for tests, the demo and CPU benchmarks.

Nothing is downloaded: the transformer, VAE and scheduler are built from configs. The schedulers carry
the real models' configs (FLUX.1-dev: dynamic shifting; SD3.5: shift 3.0), so schedules are the real ones.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel, SD3Transformer2DModel

from benchmark.core.backbones.flux import FluxBackbone
from benchmark.core.backbones.sd3 import SD3Backbone

FLUX_SCHEDULER = dict(
    num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
    base_image_seq_len=256, max_image_seq_len=4096,
)
SD3_SCHEDULER = dict(num_train_timesteps=1000, shift=3.0)
TEXT_DIM, POOLED_DIM = 32, 32
TINY_FLUX = dict(  # one double and one single block of 2 heads of 16 (``tiny_flux``'s transformer)
    patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
    joint_attention_dim=TEXT_DIM, pooled_projection_dim=POOLED_DIM, guidance_embeds=True, axes_dims_rope=(4, 6, 6),
)


def tiny_vae(latent_channels: int, scaling_factor: float, shift_factor: float) -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=latent_channels,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        scaling_factor=scaling_factor, shift_factor=shift_factor,
    )


def tiny_flux(height: int = 32, width: int = 32, guidance: float = 3.5, seed: int = 0, layers: int = 1) -> FluxBackbone:
    """FluxTransformer2DModel with `layers` double + `layers` single blocks, 2 heads of 16, and a 2-level VAE."""
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(**{**TINY_FLUX, "num_layers": layers, "num_single_layers": layers})
    vae = tiny_vae(4, scaling_factor=0.3611, shift_factor=0.1159)
    return FluxBackbone(transformer, vae, FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER), height, width, guidance)


def tiny_sd3(height: int = 32, width: int = 32, guidance: float = 4.5, seed: int = 0) -> SD3Backbone:
    """SD3Transformer2DModel with 2 joint blocks of 2 heads of 8 and a 2-level VAE (4 latent channels)."""
    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(
        sample_size=height // 2, patch_size=2, in_channels=4, out_channels=4, num_layers=2,
        attention_head_dim=8, num_attention_heads=2, joint_attention_dim=TEXT_DIM,
        caption_projection_dim=16, pooled_projection_dim=POOLED_DIM, pos_embed_max_size=32,
    )
    vae = tiny_vae(4, scaling_factor=1.5305, shift_factor=0.0609)
    return SD3Backbone(transformer, vae, FlowMatchEulerDiscreteScheduler(**SD3_SCHEDULER), height, width, guidance)
