"""``leapbench sample --cache DIR --out DIR [--prompts FILE] [model] [--steps 50 --images 4 --seed 0]``.

Generates evaluation images in GenEval's folder layout (see ``evaluators.sample``). The model is a base
model (``--config`` YAML with a ``backbone`` section and/or the backbone flags), a checkpoint written by
training (``--checkpoint DIR``; its run's backbone unless flags say otherwise) or a training run
(``--run DIR``: its config's backbone and newest valid checkpoint, its prompt cache unless ``--cache``, and
its EMA weights unless ``--no-ema``); ``--ema`` takes the EMA weights.
Defaults are the paper's evaluation: 720 x 720 (FLUX), 50 steps, guidance 3.5, 4 images per prompt.
Sharded over ranks by RANK / WORLD_SIZE (torchrun, or Slurm's SLURM_PROCID / SLURM_NTASKS) or
--rank / --world-size; every rank runs the same command and writes its own prompts; no collectives.
"""

from __future__ import annotations

import argparse

from tqdm.auto import tqdm

from benchmark.core.devices import check_device, default_device
from benchmark.core.distributed import env_from_environment
from evaluators.sample import generate, load_model, plan_sampling

BACKBONE_FLAGS = {"backbone": "name", "model_path": "path", "tiny": "tiny", "height": "height", "width": "width",
                  "guidance": "guidance", "dtype": "dtype"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache", help="embedding cache directory holding every prompt of the set "
                        "(default with --run: the run's prompts.cache)")
    parser.add_argument("--out", required=True, help="output directory (GenEval's layout)")
    parser.add_argument("--prompts", help="prompt set (.txt, .json or .jsonl such as GenEval metadata); "
                        "default: every cached prompt")
    model = parser.add_argument_group("model")
    model.add_argument("--config", help="YAML file with a backbone section (e.g. a run config)")
    model.add_argument("--run", help="training run directory: its backbone and newest valid checkpoint")
    model.add_argument("--checkpoint", help="checkpoint directory written by training (full or LoRA)")
    model.add_argument("--ema", action=argparse.BooleanOptionalAction, default=None,
                       help="use the checkpoint's EMA weights (default: yes for --run when it kept an EMA, else no)")
    model.add_argument("--backbone", choices=("flux", "sd3"), help="backbone.name")
    model.add_argument("--model-path", help="backbone.path: local diffusers model directory")
    model.add_argument("--tiny", action=argparse.BooleanOptionalAction, help="tiny random model (tests)")
    model.add_argument("--height", type=int)
    model.add_argument("--width", type=int)
    model.add_argument("--guidance", type=float, help="FLUX distilled guidance (3.5) or SD3 CFG scale")
    model.add_argument("--dtype", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--steps", type=int, default=50, help="sampling steps")
    parser.add_argument("--images", type=int, default=4, help="images per prompt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=4, help="images per forward (never mixes prompts)")
    parser.add_argument("--limit", type=int, help="only the first N prompts of the set")
    parser.add_argument("--rank", type=int, help="this shard (default: RANK / SLURM_PROCID, else 0)")
    parser.add_argument("--world-size", type=int, help="number of shards (default: WORLD_SIZE / SLURM_NTASKS)")
    parser.add_argument("--device", help="default: cuda:LOCAL_RANK when CUDA is available, else cpu")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:

    env = env_from_environment()
    if args.device:
        check_device(args.device)  # before anything else: a device this machine does not have
    rank = env.rank if args.rank is None else args.rank
    world_size = env.world_size if args.world_size is None else args.world_size
    backbone = {key: getattr(args, flag) for flag, key in BACKBONE_FLAGS.items()}
    plan = plan_sampling(args.cache, args.out, backbone, prompts=args.prompts, config=args.config, run=args.run,
                         checkpoint=args.checkpoint, ema=args.ema, steps=args.steps, images=args.images,
                         seed=args.seed, batch_size=args.batch_size, rank=rank, world_size=world_size,
                         limit=args.limit)
    todo = plan.missing()
    shard = f"rank {rank}/{world_size}: " if world_size > 1 else ""
    if todo == 0:
        print(f"{shard}all {plan.images} images of this shard's prompts exist in {plan.out}; nothing to do")
        return 0
    device = check_device(args.device or default_device(env.local_rank))
    if args.run:
        print(f"{shard}sampling {plan.checkpoint} ({'EMA' if plan.ema else 'raw'} weights; --ema/--no-ema to "
              f"choose) with the prompts of {plan.cache.root}")
    backbone_model = load_model(plan, device)
    with tqdm(total=todo, desc=f"sample {shard}".strip(), disable=args.no_progress) as bar:
        written = generate(plan, backbone_model, device, progress=bar.update)
    print(f"{shard}wrote {written} images to {plan.out} ({len(plan.rows)} prompts x {plan.images} images, "
          f"{plan.steps} steps, {plan.backbone.height}x{plan.backbone.width})")
    return 0
