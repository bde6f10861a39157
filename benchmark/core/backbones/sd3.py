"""Stable Diffusion 3 / 3.5 (Medium): diffusers' SD3Transformer2DModel with real classifier-free guidance.

As StableDiffusion3Pipeline computes it: the unconditional and conditional branches run as one batch
(negative first), v = v_u + g (v_c - v_u); the transformer receives timestep = 1000 sigma; the sigmas
are the scheduler's (SD3's static shift, 3.0 for SD3.5). The engine's state is the latent (B, C, h, w).
The paper's appendix runs SD3.5-Medium at 512 x 512.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
from torch import Tensor

from benchmark.core.backbones.base import DiffusersBackbone, scheduler_sigmas


@dataclass
class SD3Cond:
    """Cached conditioning of the three text encoders, with the negative (empty) prompt for CFG."""

    prompt_embeds: Tensor  # (B, L, 4096): CLIP-L + CLIP-G (padded) concatenated with T5
    pooled_prompt_embeds: Tensor  # (B, 2048)
    negative_prompt_embeds: Tensor
    negative_pooled_prompt_embeds: Tensor

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "SD3Cond":
        return SD3Cond(*(t.to(device, dtype) for t in vars(self).values()))

    def __len__(self) -> int:
        return len(self.prompt_embeds)


class SD3Backbone(DiffusersBackbone):
    name = "sd3"
    transformer_cls = SD3Transformer2DModel
    input_layer = "pos_embed.proj"

    def __init__(
        self,
        transformer: SD3Transformer2DModel,
        vae: AutoencoderKL,
        scheduler: FlowMatchEulerDiscreteScheduler,
        height: int = 512,
        width: int = 512,
        guidance: float = 4.5,
    ):
        self.patch = transformer.config.patch_size
        super().__init__(transformer, vae, scheduler, height, width, guidance)

    @property
    def cfg_on(self) -> bool:
        return self.guidance > 1

    def velocity(self, x: Tensor, sigma: Tensor, cond: SD3Cond) -> Tensor:
        model_dtype = self.input_weight.dtype
        embeds, pooled = cond.prompt_embeds, cond.pooled_prompt_embeds
        if self.cfg_on:
            x = torch.cat([x, x])
            embeds = torch.cat([cond.negative_prompt_embeds, embeds])
            pooled = torch.cat([cond.negative_pooled_prompt_embeds, pooled])
        timestep = (sigma.to(torch.float32) * self.scheduler.config.num_train_timesteps).to(x.device)
        v = self.transformer(
            hidden_states=x.to(model_dtype),
            timestep=timestep.expand(x.shape[0]),
            encoder_hidden_states=embeds.to(model_dtype),
            pooled_projections=pooled.to(model_dtype),
            return_dict=False,
        )[0]
        if not self.cfg_on:
            return v
        v_uncond, v_cond = v.chunk(2)
        return v_uncond + self.guidance * (v_cond - v_uncond)

    def schedule(self, num_steps: int) -> Tensor:
        """StableDiffusion3Pipeline's sigmas: the scheduler's shifted linear grid (T + 1 values ending at 0)."""
        self.check_steps(num_steps)
        return scheduler_sigmas(self.scheduler, num_steps)

    def noise(self, batch: int, generator: torch.Generator | None = None) -> Tensor:
        shape = (batch, self.transformer.config.in_channels, self.latent_h, self.latent_w)
        device = generator.device if generator is not None else self.input_weight.device
        return torch.randn(shape, generator=generator, device=device, dtype=torch.float32)
