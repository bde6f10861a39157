"""Evaluation sampling: images for a prompt set, from a base model or a training checkpoint, in GenEval's layout.

    <out>/sampling.json                 the settings (a rerun with different settings is refused)
    <out>/<NNNNN>/metadata.jsonl        the prompt's metadata row (GenEval rows as they are, else {"prompt": ...})
    <out>/<NNNNN>/samples/<k>.png       image k = 0 .. images-1 of prompt NNNNN (its index in the prompt set)

Reproducible whatever the sharding or resumption: the noise of image k of prompt p comes from a generator
seeded by (seed, p, k), prompts are split round-robin over ranks (prompt p on rank p % world_size), and a
batch never mixes prompts (a prompt's images are cut into fixed chunks of ``batch_size``), so every image is
computed with the same inputs in the same batch. Existing images are skipped (a chunk with a missing image is
regenerated and only its missing images written); every file is written to a temporary name and renamed.
Prompt embeddings come from the embedding cache; text encoders are never loaded here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import diffusers
import torch
from PIL import Image
from torch import Tensor

from benchmark.core.backbones import DTYPES, BackboneConfig, build_backbone
from benchmark.core.cache import EmbeddingCache
from benchmark.core.checkpoint import apply_ema, latest_valid, verify
from benchmark.core.configs import read_yaml, typed
from benchmark.core.engine import rollout
from benchmark.core.errors import ConfigError
from benchmark.core.io import atomic_path, atomic_write_text, check_writable, remove_stale_temporaries
from benchmark.core.prompts import load_prompt_rows
from benchmark.core.seeding import seeded
from benchmark.core.sharded import MODEL_CONFIG, is_sharded, load_transformer

SETTINGS_FILE = "sampling.json"
SAME_SETTINGS = ("backbone", "checkpoint", "ema", "steps", "seed")  # what changes the pixels of an image
TRANSFORMERS = {"flux": "FluxTransformer2DModel", "sd3": "SD3Transformer2DModel"}


@dataclass
class SamplingPlan:
    """Everything a sampling run needs, checked before any model is loaded (see ``plan_sampling``)."""

    backbone: BackboneConfig
    cache: EmbeddingCache
    rows: list[dict]  # metadata rows of the whole prompt set; a prompt's id is its position
    out: Path
    checkpoint: Path | None = None
    kind: str | None = None  # "transformer" (full fine-tuning), "sharded" (full, FSDP2's shards) or "lora"
    ema: bool = False
    steps: int = 50
    images: int = 4
    seed: int = 0
    batch_size: int = 4
    rank: int = 0
    world_size: int = 1
    labels: dict | None = None  # run, method, prompt_set: default labels of the scores

    def settings(self) -> dict:
        backbone = {k: v for k, v in asdict(self.backbone).items() if k != "toy"}
        return {"format": 1, "backbone": backbone, "checkpoint": str(self.checkpoint) if self.checkpoint else None,
                "ema": self.ema, "steps": self.steps, "seed": self.seed, "images": self.images,
                "prompts": len(self.rows), **(self.labels or {})}

    def image_path(self, prompt_id: int, k: int) -> Path:
        return self.out / f"{prompt_id:05d}" / "samples" / f"{k}.png"

    def missing(self) -> int:
        """How many images this rank still has to write."""
        return sum(not self.image_path(p, k).is_file() for p, ks in self.chunks() for k in ks)

    def chunks(self) -> list[tuple[int, list[int]]]:
        """This rank's (prompt id, image indices) batches that still miss at least one image."""
        todo = []
        for p in range(self.rank, len(self.rows), self.world_size):
            for start in range(0, self.images, self.batch_size):
                ks = list(range(start, min(start + self.batch_size, self.images)))
                if any(not self.image_path(p, k).is_file() for k in ks):
                    todo.append((p, ks))
        return todo


# -- planning: every check before a model is loaded -------------------------------------------------------


def prompt_rows(cache: EmbeddingCache, file: str | None) -> tuple[list[dict], str]:
    """The metadata rows of the prompt set (all cached, else ConfigError) and a default prompt-set label."""
    if file is None:
        return [{"prompt": p} for p in cache.prompt_set()], cache.root.name
    cache.prompt_set(file)  # checks the file and that every prompt is cached
    rows = load_prompt_rows(file)
    geneval = all("tag" in r and "include" in r for r in rows)
    return rows, "geneval" if geneval else Path(file).stem


def checkpoint_kind(ckpt: Path, field: str = "--checkpoint", verified: bool = False) -> str:
    """"transformer" (full fine-tuning), "sharded" (full fine-tuning under FSDP2: DCP shards) or "lora" for a
    complete, intact checkpoint; ConfigError otherwise."""
    if not ckpt.is_dir():
        raise ConfigError(field, "a checkpoint directory written by training (<run>/checkpoints/step_NNNNNN)",
                          str(ckpt))
    problem = None if verified else verify(ckpt)  # checksums every file: done once per run
    if problem is not None:
        raise ConfigError(field, f"a complete, intact checkpoint ({problem})", str(ckpt))
    kinds = [k for k in ("transformer", "lora") if (ckpt / k).is_dir()] + (["sharded"] if is_sharded(ckpt) else [])
    if len(kinds) != 1:
        raise ConfigError(field, "a checkpoint holding transformer/, lora/ or dcp/", str(ckpt))
    return kinds[0]


def run_labels(run_dir: Path | None, backbone: str) -> dict:
    """Default score labels: the run directory's name and its method, or ``<backbone>-pretrained``."""
    if run_dir is None or not (run_dir / "config.yaml").is_file():
        return {"run": f"{backbone}-pretrained", "method": "pretrained"}
    config = read_yaml(run_dir / "config.yaml", "--run")
    return {"run": run_dir.name, "method": (config.get("method") or {}).get("name", "unknown")}


def resolve_model(backbone: dict, *, config: str | None = None, run: str | None = None, checkpoint: str | None = None,
                  ema: bool = False) -> tuple[BackboneConfig, Path | None, str | None, dict]:
    """The backbone, the checkpoint with its kind, and default labels; checked, nothing loaded.

    The backbone is the run's (``--run``), the YAML file's ``backbone`` section (``--config``) or the
    checkpoint's run's, then the non-None entries of ``backbone`` (the flags) over it. The checkpoint is the
    one given or the run's newest valid one.
    """
    if run and (checkpoint or config):
        raise ConfigError("--run", "no --checkpoint or --config with --run (the run gives both)", run)
    if ema and not (run or checkpoint):
        raise ConfigError("--ema", "a --checkpoint or --run to take the EMA weights from", None)
    tree: dict[str, Any] = {}
    ckpt = Path(checkpoint).resolve() if checkpoint else None
    kind = None
    run_dir = ckpt.parent.parent if ckpt else None  # <run>/checkpoints/step_NNNNNN
    if run:
        run_dir = Path(run)
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError("--run", "a training run directory with config.yaml", run)
        tree = read_yaml(run_dir / "config.yaml").get("backbone") or {}
        ckpt = latest_valid(run_dir / "checkpoints")  # verified
        if ckpt is None:
            raise ConfigError("--run", "a run directory with a complete checkpoint in checkpoints/", run)
    elif config:
        tree = read_yaml(config).get("backbone") or {}
    elif run_dir is not None and (run_dir / "config.yaml").is_file():  # a checkpoint: its run's backbone
        tree = read_yaml(run_dir / "config.yaml").get("backbone") or {}
    tree = {**tree, **{k: v for k, v in backbone.items() if v is not None}}
    cfg = typed(BackboneConfig, tree, "backbone")
    if cfg.name not in TRANSFORMERS:
        raise ConfigError("backbone.name", f"one of {', '.join(TRANSFORMERS)} (images to sample)", cfg.name)
    cfg.check_paths()
    if ckpt is not None:
        ckpt = ckpt.resolve()
        kind = checkpoint_kind(ckpt, "--run" if run else "--checkpoint", verified=bool(run))
        if ema and kind != "sharded" and not (ckpt / "ema.safetensors").is_file():
            raise ConfigError("--ema", "a checkpoint with ema.safetensors", str(ckpt))
        if kind in ("transformer", "sharded"):
            config_file = ckpt / "transformer" / "config.json" if kind == "transformer" else ckpt / MODEL_CONFIG
            name = json.loads(config_file.read_text()).get("_class_name") if config_file.is_file() else None
            if name != TRANSFORMERS[cfg.name]:
                raise ConfigError("--checkpoint", f"a {TRANSFORMERS[cfg.name]} checkpoint for backbone "
                                  f"{cfg.name}", f"{name} in {ckpt}")
    return cfg, ckpt, kind, run_labels(run_dir if ckpt is not None else None, cfg.name)


def check_out(out: Path, rows: list[dict], settings: dict) -> None:
    """``out`` must be new or hold the same prompts sampled with the same settings."""
    if out.exists() and not out.is_dir():
        raise ConfigError("--out", "a directory", str(out))
    check_writable(out, "--out")
    previous = out / SETTINGS_FILE
    if previous.is_file():
        old = read_json(previous, "--out")
        changed = [k for k in SAME_SETTINGS if old.get(k) != settings[k]]
        if changed:
            raise ConfigError("--out", f"a new directory, or one sampled with the same settings ({changed[0]}: "
                              f"{old.get(changed[0])!r} there, {settings[changed[0]]!r} now)", str(out))
    for p, row in enumerate(rows):
        meta = out / f"{p:05d}" / "metadata.jsonl"
        if meta.is_file() and read_json(meta, "--out").get("prompt") != row["prompt"]:
            raise ConfigError("--out", f"a directory holding this prompt set (prompt {p} differs)", str(out))


def read_json(file: Path, field: str) -> dict:
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(field, f"a readable JSON file ({err})", str(file)) from None
    if not isinstance(value, dict):
        raise ConfigError(field, "a JSON object", str(file))
    return value


def run_defaults(run: str, cache: str | None, ema: bool | None) -> tuple[str | None, bool]:
    """What ``--run`` decides when the flags do not: its training cache, and its EMA weights when the run kept
    an average that differs from the weights (``optim.ema_decay`` > 0; the paper evaluates the EMA)."""
    file = Path(run) / "config.yaml"
    config = read_yaml(file, "--run") if file.is_file() else {}
    if cache is None:
        cache = (config.get("prompts") or {}).get("cache")
    if ema is None:
        decay = (config.get("optim") or {}).get("ema_decay", 0.995)
        ema = isinstance(decay, (int, float)) and decay > 0
    return cache, ema


def plan_sampling(cache: str | None, out: str, backbone: dict | None = None, *, prompts: str | None = None,
                  config: str | None = None, run: str | None = None, checkpoint: str | None = None,
                  ema: bool | None = False, steps: int = 50, images: int = 4, seed: int = 0, batch_size: int = 4,
                  rank: int = 0, world_size: int = 1, limit: int | None = None) -> SamplingPlan:
    """Resolve and check a sampling run (ConfigError on any bad input); loads no model.

    With ``run``, a ``cache`` or ``ema`` of None is the run's (``run_defaults``)."""
    for name, value, low in (("--steps", steps, 2), ("--images", images, 1), ("--batch-size", batch_size, 1),
                             ("--world-size", world_size, 1)):
        if not isinstance(value, int) or value < low:
            raise ConfigError(name, f"an integer >= {low}", value)
    if not 0 <= rank < world_size:
        raise ConfigError("--rank", f"an integer in [0, {world_size})", rank)
    if limit is not None and limit < 1:
        raise ConfigError("--limit", "an integer >= 1", limit)
    if run and Path(run).is_dir():
        cache, ema = run_defaults(run, cache, ema)
    cfg, ckpt, kind, labels = resolve_model(backbone or {}, config=config, run=run, checkpoint=checkpoint,
                                            ema=bool(ema))
    store = EmbeddingCache.open(cache, "--cache")
    if store.backbone != cfg.name:
        raise ConfigError("--cache", f"an embedding cache encoded for backbone {cfg.name}", store.backbone)
    rows, prompt_set = prompt_rows(store, prompts)
    rows = rows[:limit] if limit else rows
    plan = SamplingPlan(cfg, store, rows, Path(out), ckpt, kind, bool(ema), steps, images, seed, min(batch_size, images),
                        rank, world_size, {**labels, "prompt_set": prompt_set})
    check_out(plan.out, rows, plan.settings())
    return plan


# -- the model ---------------------------------------------------------------------------------------------


def load_model(plan: SamplingPlan, device: torch.device | str) -> Any:
    """The backbone with the checkpoint's transformer or LoRA adapter (and its EMA weights) applied."""
    cfg, ckpt, kind = plan.backbone, plan.checkpoint, plan.kind

    def trained() -> torch.nn.Module:
        if kind == "sharded":  # read from the shards directly, with the EMA weights if asked
            return load_transformer(ckpt, DTYPES[cfg.dtype], ema=plan.ema)
        cls = getattr(diffusers, TRANSFORMERS[cfg.name])
        return cls.from_pretrained(ckpt / "transformer", torch_dtype=DTYPES[cfg.dtype])

    # a trained full transformer replaces the model directory's, which is then never loaded
    backbone = build_backbone(cfg, transformer=trained() if kind in ("transformer", "sharded") else None)
    if kind == "lora":
        backbone.transformer.load_lora_adapter(ckpt / "lora", prefix="transformer", adapter_name="default",
                                               weight_name="pytorch_lora_weights.safetensors")
    if plan.ema and kind != "sharded":
        apply_ema(backbone.transformer, ckpt)  # after the adapter: LoRA's EMA holds the adapter's weights
    backbone.transformer.to(device).eval().requires_grad_(False)
    backbone.vae.to(device).eval().requires_grad_(False)
    return backbone


# -- generation --------------------------------------------------------------------------------------------


def to_uint8(images: Tensor) -> Tensor:
    """(B, 3, H, W) in [0, 1] -> (B, H, W, 3) uint8 on the CPU, rounded."""
    return (images.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()


def save_png(array: Tensor, path: Path) -> None:
    """Write an (H, W, 3) uint8 image as PNG via a temporary file and an atomic rename."""
    with atomic_path(path) as tmp:
        Image.fromarray(array.numpy()).save(tmp, format="PNG")


@torch.inference_mode()
def generate(plan: SamplingPlan, backbone: Any, device: torch.device | str,
             progress: Callable[[int], None] | None = None) -> int:
    """Sample this rank's missing images into ``plan.out``; returns how many images were written."""
    plan.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(plan.out / SETTINGS_FILE, json.dumps(plan.settings(), indent=1))
    sigmas = backbone.schedule(plan.steps).to(device)
    written = 0
    for p, ks in plan.chunks():
        folder = plan.out / f"{p:05d}"
        (folder / "samples").mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(folder / "samples")  # a killed run's half-written images
        meta = json.dumps(plan.rows[p])
        if not (folder / "metadata.jsonl").is_file() or (folder / "metadata.jsonl").read_text() != meta:
            atomic_write_text(folder / "metadata.jsonl", meta)
        cond = plan.cache.cond([plan.rows[p]["prompt"]] * len(ks), device)
        x_T = torch.cat([backbone.noise(1, seeded(plan.seed, "sample", p, k)) for k in ks]).to(device)
        images = to_uint8(backbone.decode(rollout(backbone, cond, x_T, sigmas).x0))
        for k, image in zip(ks, images):
            if not plan.image_path(p, k).is_file():
                save_png(image, plan.image_path(p, k))
                written += 1
                if progress is not None:
                    progress(1)
    return written
