"""``bench rollout``: our no-grad rollout against diffusers' FluxPipeline(output_type="latent").

Same transformer, prompt embeddings, noise, steps and resolution; the two run alternately so that
drift (thermal, other load) hits both alike; the medians are compared.
"""

from __future__ import annotations

import statistics
import time

import torch
from diffusers import FluxPipeline

from benchmark.cli.bench.harness import BenchSetup, sync
from benchmark.core.engine import rollout


def bench_rollout(setup: BenchSetup, steps: int, repeats: int) -> dict:
    bb, cond, dev = setup.backbone, setup.cond, setup.device
    pipe = FluxPipeline(scheduler=bb.scheduler, vae=bb.vae, text_encoder=None, tokenizer=None,
                        text_encoder_2=None, tokenizer_2=None, transformer=bb.transformer)
    pipe.set_progress_bar_config(disable=True)
    x_T = bb.noise(setup.batch, torch.Generator(dev).manual_seed(0))

    def ours():
        with torch.no_grad():
            return rollout(bb, cond, x_T, bb.schedule(steps).to(dev)).x0

    def theirs():
        return pipe(prompt_embeds=cond.prompt_embeds, pooled_prompt_embeds=cond.pooled_prompt_embeds, latents=x_T,
                    height=bb.height, width=bb.width, num_inference_steps=steps, guidance_scale=bb.guidance,
                    output_type="latent").images

    times = {"ours": [], "diffusers": []}
    err = ((ours() - theirs()).abs().max() / theirs().abs().max()).item()  # warm-up, and the same result
    for _ in range(repeats):
        for name, fn in (("ours", ours), ("diffusers", theirs)):
            sync(dev)
            start = time.perf_counter()
            fn()
            sync(dev)
            times[name].append(time.perf_counter() - start)
    ours_s, theirs_s = statistics.median(times["ours"]), statistics.median(times["diffusers"])
    return {"steps": steps, "resolution": bb.height, "ours_s": ours_s, "diffusers_s": theirs_s,
            "ratio": ours_s / theirs_s, "max_rel_diff": err}
