"""``leapbench embed --config run.yaml [key.sub=value ...]``: encode a prompt set into the embedding cache.

Reads ``backbone.name``/``backbone.path`` (a local diffusers directory holding the text encoders),
``prompts.file`` and ``prompts.cache`` from the same config as training; prompts already cached are
skipped, so an interrupted run resumes where it stopped. FLUX: CLIP-L (pooled) + T5-XXL through
FluxPipeline.encode_prompt; SD3: CLIP-L, CLIP-G and T5 through StableDiffusion3Pipeline.encode_prompt,
plus the empty negative prompt.
"""

from __future__ import annotations

import argparse

import torch
from tqdm import tqdm

from benchmark.core.backbones import DTYPES
from benchmark.core.backbones.base import require_diffusers_dir
from benchmark.core.cache import ENCODERS, write_cache
from benchmark.core.errors import ConfigError
from benchmark.core.prompts import load_prompts
from benchmark.training.config import load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="run config (YAML) giving backbone, prompts.file and prompts.cache")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--shard-size", type=int, default=1024, help="prompts per safetensors shard")
    parser.add_argument("--max-sequence-length", type=int, default=None, help="T5 tokens (FLUX 512, SD3 256)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    name = cfg.backbone.name
    if name not in ENCODERS:
        raise ConfigError("backbone.name", f"one of {', '.join(ENCODERS)} (the toy flow has no text encoder)", name)
    if not cfg.prompts.cache:
        raise ConfigError("prompts.cache", "an output directory for the embedding cache", None)
    encoders = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2") + (
        ("text_encoder_3", "tokenizer_3") if name == "sd3" else ())
    root = require_diffusers_dir(cfg.backbone.path, ())
    for part in encoders:
        if not (root / part).is_dir():
            raise ConfigError("backbone.path", f"a diffusers {name} directory with {part}/", cfg.backbone.path)
    prompts = load_prompts(cfg.prompts.file)
    dtype = DTYPES[cfg.backbone.dtype]
    kwargs = {} if args.max_sequence_length is None else {"max_sequence_length": args.max_sequence_length}
    encode = ENCODERS[name](cfg.backbone.path, device=args.device, dtype=dtype, **kwargs)

    with tqdm(total=len(prompts), desc="embed") as bar:
        index = write_cache(cfg.prompts.cache, prompts, encode, name, batch_size=args.batch_size,
                            shard_size=args.shard_size, meta={"model": str(cfg.backbone.path)}, progress=bar.update)
    print(f"cache {cfg.prompts.cache}: {len(index['prompts'])} prompts ({len(prompts)} in {cfg.prompts.file})")
    return 0
