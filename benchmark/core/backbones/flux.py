"""FLUX.1 (dev): diffusers' FluxTransformer2DModel + AutoencoderKL, sampled exactly as FluxPipeline does.

The engine's state is FLUX's packed latent: (B, h/2 * w/2, 4C) tokens of 2x2 latent patches. The
schedule is FluxPipeline's: sigmas = linspace(1, 1/T, T) shifted by mu = calculate_shift(image_seq_len)
(resolution dependent), computed by the model's own FlowMatchEulerDiscreteScheduler; the transformer
receives timestep = sigma and the distilled guidance scale (3.5 by default). Decoding unpacks, undoes
the VAE scaling and shift, decodes and maps [-1, 1] to [0, 1], all differentiable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
from diffusers.pipelines.flux.pipeline_flux import calculate_shift
from torch import Tensor

from benchmark.core.backbones.base import DiffusersBackbone, scheduler_sigmas


@dataclass
class FluxCond:
    """Cached text conditioning: T5 token embeddings (B, L, D) and the pooled CLIP embedding (B, D_pool)."""

    prompt_embeds: Tensor
    pooled_prompt_embeds: Tensor

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "FluxCond":
        return FluxCond(self.prompt_embeds.to(device, dtype), self.pooled_prompt_embeds.to(device, dtype))

    def __len__(self) -> int:
        return len(self.prompt_embeds)


class FluxBackbone(DiffusersBackbone):
    name = "flux"
    transformer_cls = FluxTransformer2DModel
    patch = 2  # 2 x 2 latent patches per token; latent size 2 * (H // (vae_scale_factor * 2)) as FluxPipeline
    input_layer = "x_embedder"

    def __init__(
        self,
        transformer: FluxTransformer2DModel,
        vae: AutoencoderKL,
        scheduler: FlowMatchEulerDiscreteScheduler,
        height: int = 720,
        width: int = 720,
        guidance: float = 3.5,
    ):
        super().__init__(transformer, vae, scheduler, height, width, guidance)
        self.channels = transformer.config.in_channels // 4
        self._ids: dict[tuple, Tensor] = {}

    @property
    def seq_len(self) -> int:
        return (self.latent_h // 2) * (self.latent_w // 2)

    # -- layout -------------------------------------------------------------------------------------
    def pack(self, z: Tensor) -> Tensor:
        """(B, C, h, w) -> (B, h/2 * w/2, 4C), FluxPipeline._pack_latents."""
        B, C, h, w = z.shape
        z = z.view(B, C, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
        return z.reshape(B, (h // 2) * (w // 2), C * 4)

    def unpack(self, x: Tensor) -> Tensor:
        """(B, h/2 * w/2, 4C) -> (B, C, h, w), FluxPipeline._unpack_latents."""
        B, _, D = x.shape
        h, w = self.latent_h, self.latent_w
        x = x.view(B, h // 2, w // 2, D // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
        return x.reshape(B, D // 4, h, w)

    def _cached(self, key: tuple, make) -> Tensor:
        if key not in self._ids:
            self._ids[key] = make()
        return self._ids[key]

    def image_ids(self, device, dtype) -> Tensor:
        """(h/2 * w/2, 3) position ids: row index in channel 1, column index in channel 2."""

        def make():
            ids = torch.zeros(self.latent_h // 2, self.latent_w // 2, 3)
            ids[..., 1] += torch.arange(self.latent_h // 2)[:, None]
            ids[..., 2] += torch.arange(self.latent_w // 2)[None, :]
            return ids.reshape(-1, 3).to(device=device, dtype=dtype)

        return self._cached(("img", device, dtype), make)

    # -- the backbone contract ----------------------------------------------------------------------
    def velocity(self, x: Tensor, sigma: Tensor, cond: FluxCond) -> Tensor:
        model_dtype = self.input_weight.dtype
        B, L = x.shape[0], cond.prompt_embeds.shape[1]
        device = x.device
        guidance = None
        if self.transformer.config.guidance_embeds:
            guidance = self._cached(("g", B, device, self.guidance), lambda: torch.full([B], self.guidance, device=device))
        text_ids = self._cached(("txt", L, device, model_dtype), lambda: torch.zeros(L, 3, device=device, dtype=model_dtype))
        return self.transformer(
            hidden_states=x.to(model_dtype),
            timestep=sigma.to(device=device, dtype=model_dtype).expand(B),
            guidance=guidance,
            pooled_projections=cond.pooled_prompt_embeds.to(model_dtype),
            encoder_hidden_states=cond.prompt_embeds.to(model_dtype),
            txt_ids=text_ids,
            img_ids=self.image_ids(device, model_dtype),
            return_dict=False,
        )[0]

    def schedule(self, num_steps: int) -> Tensor:
        """FluxPipeline's sigmas (T + 1 values ending at 0) for this resolution."""
        self.check_steps(num_steps)
        cfg = self.scheduler.config
        mu = calculate_shift(
            self.seq_len,
            cfg.get("base_image_seq_len", 256),
            cfg.get("max_image_seq_len", 4096),
            cfg.get("base_shift", 0.5),
            cfg.get("max_shift", 1.15),
        )
        return scheduler_sigmas(self.scheduler, num_steps, sigmas=np.linspace(1.0, 1 / num_steps, num_steps), mu=mu)

    def noise(self, batch: int, generator: torch.Generator | None = None) -> Tensor:
        shape = (batch, self.channels, self.latent_h, self.latent_w)
        device = generator.device if generator is not None else self.input_weight.device
        return self.pack(torch.randn(shape, generator=generator, device=device, dtype=torch.float32))
