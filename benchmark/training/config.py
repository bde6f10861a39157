"""The run config: typed dataclasses, built from defaults -> YAML file -> dotted CLI overrides.

    cfg = load_config("run.yaml", ["method.alpha=0.1", "schedule.iterations=10"])
    check_run(cfg, world_size=2)          # cross-checks and paths, before any model is loaded

Every bad value raises ``ConfigError`` naming its dotted field. OmegaConf (``benchmark.core.configs``) merges
the layers and checks every field's type; each section's ``__post_init__`` checks its ranges. The method
section becomes the method's own config dataclass (``methods.method_config``), the backbone section a
``BackboneConfig``; the reward section stays a mapping, checked as ``evaluators.rewards.RewardConfig`` by
``check_run`` (its paths included). The defaults are the paper's
FLUX.1-dev recipe (supplement A5): AdamW lr 1e-5, weight decay 1e-4, global batch 64, EMA 0.995,
clipping 1.0, 300 iterations, 25 steps at 720 x 720, guidance 3.5.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from benchmark.core.backbones import DTYPES, BackboneConfig
from benchmark.core.cache import EmbeddingCache
from benchmark.core.configs import merge, parse_overrides, plain, read_yaml, to_yaml, typed
from benchmark.core.errors import ConfigError
from benchmark.core.io import atomic_write_text
from evaluators.rewards import reward_config
from methods import method_config

DTYPE_NAMES = tuple(DTYPES)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class PromptsConfig:
    file: str | None = None  # prompt set (.txt one per line, .json list, .jsonl with "prompt"); None = all cached
    cache: str | None = None  # embedding cache directory written by `leapbench embed`; training reads only this


@dataclass
class OptimConfig:
    lr: float = 1e-5  # A5: 1e-5 (8e-6 for HPSv3)
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float | None = 1.0  # max total gradient norm; None = no clipping (the norm is still logged)
    ema_decay: float = 0.995

    def __post_init__(self):
        positive("optim.lr", self.lr)
        positive("optim.eps", self.eps)
        if self.weight_decay < 0:
            raise ConfigError("optim.weight_decay", "a number >= 0", self.weight_decay)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError("optim.betas", "two numbers in [0, 1)", list(self.betas))
        if self.grad_clip is not None:
            positive("optim.grad_clip", self.grad_clip)
        if not 0 <= self.ema_decay < 1:
            raise ConfigError("optim.ema_decay", "a number in [0, 1)", self.ema_decay)


@dataclass
class ScheduleConfig:
    num_steps: int = 25  # sampling steps T of each training rollout
    iterations: int = 300  # optimiser steps
    global_batch: int = 64  # samples per optimiser step, summed over ranks and micro-batches
    micro_batch: int = 1  # samples per rollout on one rank (gradient accumulation fills the rest)

    def __post_init__(self):
        if self.num_steps < 2:
            raise ConfigError("schedule.num_steps", "an integer >= 2", self.num_steps)
        for name in ("iterations", "global_batch", "micro_batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"schedule.{name}", "an integer >= 1", getattr(self, name))


@dataclass
class LoraSettings:
    rank: int = 0  # 0 = full fine-tuning; > 0 = a peft LoRA adapter of this rank
    alpha: float | None = None  # lora_alpha; None = rank (scale 1)
    targets: list[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])

    def __post_init__(self):
        if self.rank < 0:
            raise ConfigError("train.lora.rank", "an integer >= 0 (0 = full fine-tuning)", self.rank)
        if self.alpha is not None:
            positive("train.lora.alpha", self.alpha)
        if self.rank and not self.targets:
            raise ConfigError("train.lora.targets", "a non-empty list of module names", self.targets)


@dataclass
class TrainingConfig:
    lora: LoraSettings = field(default_factory=LoraSettings)
    gradient_checkpointing: bool = True  # diffusers' per-block activation checkpointing
    autocast: bool = True  # bf16 autocast around rollout and loss, on CUDA
    autocast_cpu: bool = False  # ... and on CPU too (slow there; runs the bf16 path of the paper's runs without a GPU)
    master_dtype: str = "float32"  # dtype of the trained parameters (AdamW and EMA see these)
    max_consecutive_skips: int = 5  # non-finite steps in a row before the run stops
    compile: bool = False  # torch.compile the transformer's blocks (first steps pay the compilation)
    compile_mode: str = "default"  # torch.compile mode: default, reduce-overhead (CUDA graphs), max-autotune

    def __post_init__(self):
        if self.compile_mode not in COMPILE_MODES:
            raise ConfigError("train.compile_mode", f"one of {', '.join(COMPILE_MODES)}", self.compile_mode)
        if self.master_dtype not in DTYPE_NAMES:
            raise ConfigError("train.master_dtype", f"one of {', '.join(DTYPE_NAMES)}", self.master_dtype)
        if self.max_consecutive_skips < 1:
            raise ConfigError("train.max_consecutive_skips", "an integer >= 1", self.max_consecutive_skips)


@dataclass
class DistributedConfig:
    strategy: Literal["auto", "ddp", "fsdp"] = "auto"  # auto: DDP for LoRA, FSDP2 for full fine-tuning
    backend: Literal["auto", "nccl", "gloo"] = "auto"  # auto: nccl on GPU, gloo on CPU
    fsdp_param_dtype: str = "bfloat16"  # FSDP2 MixedPrecisionPolicy: compute dtype of gathered params
    fsdp_reduce_dtype: str = "float32"  # ... and of the gradient reduce-scatter
    timeout_s: int = 1800

    def __post_init__(self):
        for name in ("fsdp_param_dtype", "fsdp_reduce_dtype"):
            if getattr(self, name) not in DTYPE_NAMES:
                raise ConfigError(f"distributed.{name}", f"one of {', '.join(DTYPE_NAMES)}", getattr(self, name))
        positive("distributed.timeout_s", self.timeout_s)


@dataclass
class CheckpointConfig:
    every: int = 50  # save every N steps (0 = only at the end); also saved at the end and on SIGTERM/SIGUSR2
    keep: int = 3  # keep the newest K complete checkpoints
    format: Literal["auto", "full", "sharded"] = "auto"  # auto: per-rank shards (DCP) under FSDP2, else full

    def __post_init__(self):
        if self.every < 0:
            raise ConfigError("checkpoint.every", "an integer >= 0", self.every)
        if self.keep < 1:
            raise ConfigError("checkpoint.keep", "an integer >= 1", self.keep)


@dataclass
class LoggingConfig:
    progress: bool = True  # tqdm bar with the running reward
    tensorboard: bool = True  # also write TensorBoard scalars when tensorboard is installed
    grad_parts_every: int = 10  # every N steps split the gradient norm (single / nested); costs one more backward

    def __post_init__(self):
        if self.grad_parts_every < 0:
            raise ConfigError("logging.grad_parts_every", "an integer >= 0 (0 = never)", self.grad_parts_every)


@dataclass
class RunConfig:
    run_dir: str = "results/runs/run"
    seed: int = 0
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    method: Any = None  # the method's config dataclass (methods.method_config); default LeapAlign
    reward: dict = field(default_factory=lambda: {"name": "hpsv2"})  # handed to evaluators.rewards.RewardConfig
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainingConfig = field(default_factory=TrainingConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def __post_init__(self):
        if self.method is None:
            self.method = method_config({"name": "leapalign"})
        if not str(self.run_dir):
            raise ConfigError("run_dir", "a directory path", self.run_dir)
        if not isinstance(self.reward, Mapping) or not isinstance(self.reward.get("name"), str):
            raise ConfigError("reward.name", "a reward name (a mapping with name: ...)", self.reward)

    @property
    def lora(self) -> bool:
        return self.train.lora.rank > 0

    def accumulation(self, world_size: int) -> int:
        """Micro-batches per rank per optimiser step."""
        return self.schedule.global_batch // (self.schedule.micro_batch * world_size)

    def to_dict(self) -> dict:
        """The resolved config as plain data (what config.yaml holds)."""
        return plain(self)


def positive(field_name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(field_name, "a number > 0", value)


# -- building: defaults -> YAML -> overrides --------------------------------------------------------


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """Read ``path`` (YAML) over the defaults, apply ``key.sub=value`` overrides, and build the typed config."""
    layers = [read_yaml(path)] if path is not None else []
    return config_from_dict(merge(*layers, parse_overrides(overrides)))


def config_from_dict(tree: Mapping[str, Any]) -> RunConfig:
    """Build the typed ``RunConfig`` from a nested mapping: every field's type by OmegaConf, every range by the
    sections' ``__post_init__``, the method section by its own config dataclass (``methods.method_config``)."""
    if not isinstance(tree, Mapping):
        raise ConfigError("config", "a mapping of sections", tree)
    tree = dict(tree)
    method = tree.pop("method", None) or {}
    if not isinstance(method, Mapping):
        raise ConfigError("method", "a section (mapping) with name: ...", method)
    cfg = typed(RunConfig, tree)
    cfg.method = method_config({"name": "leapalign", **method})
    return cfg


def dump_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (``load_config(path)`` rebuilds the same config)."""
    atomic_write_text(path, to_yaml(cfg))


# -- cross-checks that need the world size or the filesystem ---------------------------------------


def check_run(cfg: RunConfig, world_size: int = 1, resume: str | None = None, check_reward: bool = True) -> None:
    """Everything that must hold before a model is loaded or the run directory is created."""
    cfg.method.validate(cfg.schedule.num_steps)
    cfg.method.check_reward(cfg.reward)  # e.g. GRPO's per-reward advantages need a weighted reward
    s = cfg.schedule
    group = cfg.method.group_size  # GRPO's samples per prompt: groups stay inside a micro-batch
    if s.micro_batch % group:
        raise ConfigError("schedule.micro_batch", f"a multiple of method.group_size ({group})", s.micro_batch)
    if s.global_batch % (world_size * s.micro_batch):
        raise ConfigError(
            "schedule.global_batch",
            f"a multiple of world size x micro batch ({world_size} x {s.micro_batch})",
            s.global_batch,
        )
    if cfg.lora and cfg.backbone.name == "toy":
        raise ConfigError("train.lora.rank", "0 for the toy backbone (LoRA needs a diffusers transformer)", cfg.train.lora.rank)
    if cfg.lora and cfg.checkpoint.format == "sharded":
        raise ConfigError("checkpoint.format", "auto or full for LoRA (the adapter is saved whole)", "sharded")
    if cfg.lora and cfg.distributed.strategy == "fsdp":
        raise ConfigError("distributed.strategy", "auto or ddp for LoRA (FSDP2 is for full fine-tuning)", "fsdp")
    cfg.backbone.check_paths()
    check_cache(cfg)
    check_run_dir(cfg, resume)
    if check_reward:
        reward_config(cfg.reward)


def check_cache(cfg: RunConfig) -> None:
    if cfg.backbone.name == "toy" and cfg.prompts.cache is None:
        if cfg.backbone.toy.cond_dim:
            raise ConfigError("prompts.cache", "an embedding cache for a conditioned toy backbone", None)
        return  # the unconditioned toy flow needs no prompts
    cache = EmbeddingCache.open(cfg.prompts.cache)
    if cache.backbone != cfg.backbone.name:
        raise ConfigError("prompts.cache", f"a cache encoded for backbone {cfg.backbone.name}", cache.backbone)
    cache.prompt_set(cfg.prompts.file)  # every prompt of the set must be cached


def check_run_dir(cfg: RunConfig, resume: str | None) -> None:
    root = Path(cfg.run_dir)
    if root.exists() and not root.is_dir():
        raise ConfigError("run_dir", "a directory path", str(root))
    started = (root / "metrics.jsonl").exists() or (root / "checkpoints").exists()
    if started and resume in (None, "none"):
        raise ConfigError("run_dir", "a new directory, or --resume auto to continue this run", str(root))
    if resume not in (None, "none", "auto") and not Path(resume).is_dir():
        raise ConfigError("--resume", "auto, none or a checkpoint directory", resume)
