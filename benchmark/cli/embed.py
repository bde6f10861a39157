"""``leapbench embed --config run.yaml [key.sub=value ...]``: encode a prompt set into the embedding cache.

Reads ``backbone.name``/``backbone.path`` (a local diffusers directory holding the text encoders),
``prompts.file`` and ``prompts.cache`` from the same config as training; prompts already cached are
skipped, so an interrupted run resumes where it stopped, and shards that fail their checksums are encoded
again (the repair of a damaged cache). FLUX: CLIP-L (pooled) + T5-XXL through FluxPipeline.encode_prompt;
SD3: CLIP-L, CLIP-G and T5 through StableDiffusion3Pipeline.encode_prompt, plus the empty negative prompt.
``backbone.tiny=true`` (the tiny random backbones of tests and the CPU walk-through) caches deterministic
random embeddings of the tiny backbones' shapes instead: no text encoder is loaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from benchmark.core.backbones import DTYPES
from benchmark.core.backbones.base import require_diffusers_dir
from benchmark.core.cache import ENCODERS, read_index, write_cache
from benchmark.core.devices import check_device, default_device
from benchmark.core.errors import ConfigError
from benchmark.core.io import check_writable
from benchmark.core.prompts import load_prompts
from benchmark.training.config import load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="run config (YAML) giving backbone, prompts.file and prompts.cache")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--shard-size", type=int, default=1024, help="prompts per safetensors shard")
    parser.add_argument("--max-sequence-length", type=int, default=None, help="T5 tokens (FLUX 512, SD3 256)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value")


def run(args: argparse.Namespace) -> int:
    for flag, value in (("--batch-size", args.batch_size), ("--shard-size", args.shard_size),
                        ("--max-sequence-length", args.max_sequence_length)):
        if value is not None and value < 1:
            raise ConfigError(flag, "an integer >= 1", value)
    device = check_device(args.device or default_device())
    cfg = load_config(args.config, args.overrides)
    name = cfg.backbone.name
    if name not in ENCODERS:
        raise ConfigError("backbone.name", f"one of {', '.join(ENCODERS)} (the toy flow has no text encoder)", name)
    if not cfg.prompts.cache:
        raise ConfigError("prompts.cache", "an output directory for the embedding cache", None)
    cache = Path(cfg.prompts.cache)
    if cache.exists() and not cache.is_dir():
        raise ConfigError("prompts.cache", "a directory", str(cache))
    if (cache / "index.json").is_file() and read_index(cache)["backbone"] != name:
        raise ConfigError("prompts.cache", f"a cache of backbone {name} (or a new directory)", str(cache))
    check_writable(cache, "prompts.cache")
    prompts = load_prompts(cfg.prompts.file)
    if cfg.backbone.tiny:
        from benchmark.core.testing import fake_encoder  # the tiny backbones' stand-in for text encoders

        encode, model = fake_encoder(name), "tiny"
    else:
        encoders = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2") + (
            ("text_encoder_3", "tokenizer_3") if name == "sd3" else ())
        root = require_diffusers_dir(cfg.backbone.path, ())
        for part in encoders:
            if not (root / part).is_dir():
                raise ConfigError("backbone.path", f"a diffusers {name} directory with {part}/", cfg.backbone.path)
        kwargs = {} if args.max_sequence_length is None else {"max_sequence_length": args.max_sequence_length}
        encode = ENCODERS[name](cfg.backbone.path, device=str(device), dtype=DTYPES[cfg.backbone.dtype], **kwargs)
        model = str(cfg.backbone.path)

    with tqdm(total=len(prompts), desc="embed") as bar:
        index = write_cache(cache, prompts, encode, name, batch_size=args.batch_size, shard_size=args.shard_size,
                            meta={"model": model}, progress=bar.update)
    print(f"cache {cache}: {len(index['prompts'])} prompts ({len(prompts)} in {cfg.prompts.file})")
    return 0
