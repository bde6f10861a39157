"""The engine's no-grad rollout reproduces diffusers' own pipelines on tiny random models (float32)."""

import torch
from diffusers import FluxPipeline, StableDiffusion3Pipeline

from benchmark.core.backbones.flux import FluxCond
from benchmark.core.backbones.sd3 import SD3Cond
from benchmark.core.backbones.tiny import POOLED_DIM, TEXT_DIM, tiny_flux, tiny_sd3
from benchmark.core.engine import rollout

RTOL = 1e-5  # float32; both sides run the same kernels, so the only differences are summation order


def max_rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def test_flux_rollout_matches_flux_pipeline():
    backbone = tiny_flux(height=64, width=48, guidance=3.5)
    pipe = FluxPipeline(
        scheduler=backbone.scheduler, vae=backbone.vae, text_encoder=None, tokenizer=None,
        text_encoder_2=None, tokenizer_2=None, transformer=backbone.transformer,
    )
    g = torch.Generator().manual_seed(0)
    cond = FluxCond(torch.randn(2, 7, TEXT_DIM, generator=g), torch.randn(2, POOLED_DIM, generator=g))
    x_T = backbone.noise(2, g)
    for steps in (4, 25):
        ours = rollout(backbone, cond, x_T, backbone.schedule(steps)).x0
        theirs = pipe(
            prompt_embeds=cond.prompt_embeds, pooled_prompt_embeds=cond.pooled_prompt_embeds, latents=x_T,
            height=64, width=48, num_inference_steps=steps, guidance_scale=3.5, output_type="latent",
        ).images
        assert ours.shape == theirs.shape == (2, 16 * 12, 16)  # (64/2/2) x (48/2/2) tokens of 4 x 4 channels
        assert max_rel_err(ours, theirs) < RTOL
        assert (ours - x_T).abs().max() > 0.1  # the rollout did move


def test_flux_schedule_is_resolution_dependent():
    small, large = tiny_flux(height=32, width=32), tiny_flux(height=256, width=256)
    s_small, s_large = small.schedule(25), large.schedule(25)
    assert s_small[0] == s_large[0] == 1 and s_small[-1] == s_large[-1] == 0
    assert (s_large[1:-1] > s_small[1:-1]).all()  # more tokens, larger mu, more time spent at high noise


def test_sd3_rollout_with_cfg_matches_sd3_pipeline():
    backbone = tiny_sd3(height=32, width=32, guidance=4.5)
    pipe = StableDiffusion3Pipeline(
        transformer=backbone.transformer, scheduler=backbone.scheduler, vae=backbone.vae,
        text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None,
        text_encoder_3=None, tokenizer_3=None,
    )
    g = torch.Generator().manual_seed(1)
    embeds = [torch.randn(2, 6, TEXT_DIM, generator=g) for _ in range(2)]
    pooled = [torch.randn(2, POOLED_DIM, generator=g) for _ in range(2)]
    cond = SD3Cond(embeds[0], pooled[0], embeds[1], pooled[1])
    x_T = backbone.noise(2, g)
    ours = rollout(backbone, cond, x_T, backbone.schedule(6)).x0
    theirs = pipe(
        prompt_embeds=embeds[0], pooled_prompt_embeds=pooled[0], negative_prompt_embeds=embeds[1],
        negative_pooled_prompt_embeds=pooled[1], latents=x_T, height=32, width=32,
        num_inference_steps=6, guidance_scale=4.5, output_type="latent",
    ).images
    assert max_rel_err(ours, theirs) < RTOL
    # CFG matters: without guidance the result differs clearly
    backbone.guidance = 1.0
    unguided = rollout(backbone, cond, x_T, backbone.schedule(6)).x0
    assert max_rel_err(unguided, theirs) > 1e-2
