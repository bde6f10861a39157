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

import importlib.util
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from benchmark.core.backbones import DTYPES, BackboneConfig
from benchmark.core.cache import EmbeddingCache
from benchmark.core.checkpoint import list_checkpoints, verify
from benchmark.core.configs import merge, parse_overrides, plain, read_yaml, to_yaml, typed
from benchmark.core.errors import ConfigError
from benchmark.core.io import atomic_write_text, check_writable
from evaluators.rewards import reward_config
from methods import build_method, method_config, preset_tree

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
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ConfigError("optim.weight_decay", "a finite number >= 0", self.weight_decay)
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
class WandbConfig:
    """``logging.wandb``: mirror the telemetry stream to Weights & Biases (the optional ``wandb`` extra)."""

    project: str = "leapbench"
    entity: str | None = None  # None = the account's default entity
    mode: Literal["online", "offline", "disabled"] = "online"  # offline: no network; `wandb sync <run_dir>/wandb`
    group: str | None = None  # e.g. the sweep's name


@dataclass
class LoggingConfig:
    progress: bool = True  # tqdm bar with the running reward
    tensorboard: bool = True  # also write TensorBoard scalars when tensorboard is installed
    grad_parts_every: int = 10  # every N steps split the gradient norm (single / nested); costs one more backward
    wandb: WandbConfig | None = None  # null = no W&B; a section = log every step to W&B as well

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
    if not (value > 0 and math.isfinite(value)):  # inf would pass "> 0" and train non-finite weights
        raise ConfigError(field_name, "a finite number > 0", value)


# -- building: defaults -> YAML -> overrides --------------------------------------------------------


def load_config(path: str | Path | None = None, overrides: Sequence[str] = (), unset: list[str] | None = None
                ) -> RunConfig:
    """Read ``path`` (YAML) over the defaults, apply ``key.sub=value`` overrides, and build the typed config.

    ``${NAME}`` in a string of the file or an override is the environment variable NAME (as in the sweep specs:
    ``backbone.path: ${FLUX_DIR}``). An unset one is a ConfigError naming the field, unless ``unset`` is a
    list: then the text stays as written and "field: NAME" is appended to it (a dry run lists them all).
    """
    layers = [read_yaml(path)] if path is not None else []
    tree, missing = expand_variables(merge_layers(*layers, parse_overrides(overrides)))
    if missing and unset is None:
        field, name = next(iter(missing.items()))
        raise ConfigError(field, f"the environment variable {name} to be set (or the path written in its place)",
                          f"${{{name}}}")
    if unset is not None:
        unset += [f"{field}: set {name}" for field, name in missing.items()]
    return config_from_dict(tree)


VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_variables(tree: Any, field: str = "") -> tuple[Any, dict[str, str]]:
    """``${NAME}`` -> ``os.environ[NAME]`` in every string of ``tree``; returns it and {field: unset NAME}."""
    if isinstance(tree, str):
        unset = [n for n in VARIABLE.findall(tree) if n not in os.environ]
        missing = {field: unset[0]} if unset else {}
        return VARIABLE.sub(lambda m: os.environ.get(m.group(1), m.group(0)), tree), missing
    if isinstance(tree, Mapping):
        out, missing = {}, {}
        for key, value in tree.items():
            out[key], more = expand_variables(value, f"{field}.{key}" if field else str(key))
            missing.update(more)
        return out, missing
    if isinstance(tree, list):
        pairs = [expand_variables(v, f"{field}[{i}]") for i, v in enumerate(tree)]
        return [v for v, _ in pairs], {k: n for _, m in pairs for k, n in m.items()}
    return tree, {}


def merge_layers(*layers: Mapping[str, Any]) -> dict:
    """Later layers over earlier ones, each ``method.preset`` expanded where it is written.

    A layer that sets ``method.preset`` first lays the preset's run settings (``methods.preset_tree``: the peer's
    steps, batch, learning rate, LoRA ...) over what came before, then its own values over those: the preset
    overrides earlier layers (a sweep's base, a YAML file under a CLI override) and everything written beside
    it or later wins over it.
    """
    tree: dict = {}
    for layer in layers:
        method = layer.get("method") if isinstance(layer, Mapping) else None
        if isinstance(method, Mapping) and method.get("preset") is not None:
            before = tree.get("method") or {}
            if method.get("name", before.get("name")) != before.get("name"):
                tree = {k: v for k, v in tree.items() if k != "method"}  # another method: its section starts afresh
            tree = merge(tree, preset_tree({**tree.get("method", {}), **method}))
        tree = merge(tree, layer)
    return tree


def config_from_dict(tree: Mapping[str, Any]) -> RunConfig:
    """Build the typed ``RunConfig`` from a nested mapping: every field's type by OmegaConf, every range by the
    sections' ``__post_init__``, the method section by its own config dataclass (``methods.method_config``).
    A ``method.preset`` lays its run settings under the tree (the tree's own values win)."""
    if not isinstance(tree, Mapping):
        raise ConfigError("config", "a mapping of sections", tree)
    if isinstance(tree.get("method"), Mapping):
        tree = merge_layers(tree)
    tree = dict(tree)
    method = tree.pop("method", None) or {}
    if not isinstance(method, Mapping):
        raise ConfigError("method", "a section (mapping) with name: ...", method)
    cfg = typed(RunConfig, tree)
    cfg.method = method_config({"name": "leapalign", **method})
    return cfg


def dump_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (``load_config(path)`` rebuilds the same config).

    A different config already there (a resume that was allowed to change it) is kept first, as
    ``config.history/until-step-NNNNNN.yaml`` beside it: it records what the steps up to then trained."""
    path, text = Path(path), to_yaml(cfg)
    if path.is_file() and path.read_text(encoding="utf-8", errors="replace") != text:
        history = path.parent / "config.history"
        name = f"until-step-{last_logged_step(path.parent):06d}.yaml"
        while (history / name).exists():
            name = "x" + name
        atomic_write_text(history / name, path.read_text(encoding="utf-8", errors="replace"))
    atomic_write_text(path, text)


def last_logged_step(run_dir: Path) -> int:
    """The last step in ``metrics.jsonl`` (0 when there is none; unreadable lines are skipped)."""
    step = 0
    file = run_dir / "metrics.jsonl"
    for line in file.read_text(encoding="utf-8", errors="replace").splitlines() if file.is_file() else []:
        try:
            step = max(step, int(json.loads(line)["step"]))
        except (ValueError, KeyError, TypeError):
            continue
    return step


# -- cross-checks that need the world size or the filesystem ---------------------------------------


def check_run(cfg: RunConfig, world_size: int = 1, resume: str | None = None, check_reward: bool = True,
              allow_config_change: bool = False) -> None:
    """Everything that must hold before a model is loaded or the run directory is created.

    ``allow_config_change``: resume even when the config changes what the run trained (see ``check_same_training``).
    """
    check_batches(cfg, world_size)
    if cfg.lora and cfg.backbone.name == "toy":
        raise ConfigError("train.lora.rank", "0 for the toy backbone (LoRA needs a diffusers transformer)", cfg.train.lora.rank)
    if cfg.lora and cfg.checkpoint.format == "sharded":
        raise ConfigError("checkpoint.format", "auto or full for LoRA (the adapter is saved whole)", "sharded")
    if cfg.lora and cfg.distributed.strategy == "fsdp":
        raise ConfigError("distributed.strategy", "auto or ddp for LoRA (FSDP2 is for full fine-tuning)", "fsdp")
    cfg.backbone.check_paths()
    check_cache(cfg)
    check_run_dir(cfg, resume, allow_config_change)
    if cfg.logging.wandb is not None and importlib.util.find_spec("wandb") is None:
        raise ConfigError("logging.wandb", "the wandb package (pip install 'leapbench[wandb]'), or null", "not installed")
    if check_reward:
        reward_config(cfg.reward)


def check_batches(cfg: RunConfig, world_size: int) -> None:
    """The method's checks that need T or the reward section, and how the batch splits over ranks, micro-batches,
    GRPO's groups and its optimiser steps per rollout."""
    cfg.method.validate(cfg.schedule.num_steps)
    cfg.method.check_reward(cfg.reward)  # e.g. GRPO's per-reward advantages need a weighted reward
    s, method = cfg.schedule, build_method(cfg.method)
    check_groups(s, method.group_size, method.updates is not None)
    minibatches = method.updates.minibatches if method.updates is not None else 1
    if s.global_batch % (world_size * s.micro_batch * minibatches):
        per_step = f" x method.minibatches ({world_size} x {s.micro_batch} x {minibatches})" if minibatches > 1 else \
            f" ({world_size} x {s.micro_batch})"
        raise ConfigError("schedule.global_batch", f"a multiple of world size x micro batch{per_step}", s.global_batch)


def check_groups(s: ScheduleConfig, group: int, batch_wide: bool) -> None:
    """GRPO's samples per prompt: groups stay inside the rollout batch when the method normalises over all of it
    (``Method.updates``), else inside a micro-batch."""
    if batch_wide and s.global_batch % group:
        raise ConfigError("schedule.global_batch", f"a multiple of method.group_size ({group})", s.global_batch)
    if not batch_wide and s.micro_batch % group:
        raise ConfigError("schedule.micro_batch", f"a multiple of method.group_size ({group})", s.micro_batch)


def check_cache(cfg: RunConfig) -> None:
    if cfg.backbone.name == "toy" and cfg.prompts.cache is None:
        if cfg.backbone.toy.cond_dim:
            raise ConfigError("prompts.cache", "an embedding cache for a conditioned toy backbone", None)
        return  # the unconditioned toy flow needs no prompts
    cache = EmbeddingCache.open(cfg.prompts.cache)
    if cache.backbone != cfg.backbone.name:
        raise ConfigError("prompts.cache", f"a cache encoded for backbone {cfg.backbone.name}", cache.backbone)
    cache.prompt_set(cfg.prompts.file)  # every prompt of the set must be cached


def check_run_dir(cfg: RunConfig, resume: str | None, allow_config_change: bool = False) -> None:
    """The run directory can be written; a run there is resumed (never silently restarted or overwritten)
    from a checkpoint that is complete and of this model, with a config that trains the same thing."""
    root = Path(cfg.run_dir)
    if root.exists() and not root.is_dir():
        raise ConfigError("run_dir", "a directory path", str(root))
    if resume not in (None, "none", "auto") and not Path(resume).is_dir():
        raise ConfigError("--resume", "auto, none or a checkpoint directory", resume)
    started = (root / "metrics.jsonl").exists() or (root / "checkpoints").exists()
    if started and resume in (None, "none"):
        raise ConfigError("run_dir", "a new directory, or --resume auto to continue this run", str(root))
    check_writable(root, "run_dir")
    if resume not in (None, "none", "auto"):
        check_checkpoint(cfg, Path(resume))
    elif resume == "auto":
        found = list_checkpoints(root / "checkpoints")
        if found and not any((c / "complete").is_file() for c in found):
            raise ConfigError("--resume", f"a run with a complete checkpoint (none of the {len(found)} in "
                              f"{root / 'checkpoints'} finished writing; name one with --resume DIR or start a new "
                              "run_dir)", "auto")
    if started and resume not in (None, "none"):
        check_same_training(cfg, root / "config.yaml", allow_config_change)


# what a run trains: a resume that changes one of these would continue another experiment under this run's name.
# Left out: backbone.path (the same model moved), schedule.iterations (a run extended or cut short) and
# schedule.micro_batch (the same global batch in other pieces).
TRAINED = ("method", "backbone", "reward", "schedule", "train.lora")
NOT_TRAINED = {"backbone.path", "schedule.iterations", "schedule.micro_batch"}


def changed_training(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The dotted fields of ``TRAINED`` whose values differ between two config trees."""
    def leaves(tree: Any, prefix: str) -> dict[str, Any]:
        if isinstance(tree, Mapping):
            return {k: v for key, sub in tree.items() for k, v in leaves(sub, f"{prefix}.{key}").items()}
        return {prefix: tree}

    changed = []
    for section in TRAINED:
        a, b = old, new
        for part in section.split("."):
            a = a.get(part) if isinstance(a, Mapping) else None
            b = b.get(part) if isinstance(b, Mapping) else None
        la, lb = leaves(a, section), leaves(b, section)
        changed += [k for k in sorted(set(la) | set(lb)) if k not in NOT_TRAINED and la.get(k) != lb.get(k)]
    return changed


def check_same_training(cfg: RunConfig, previous: Path, allow: bool) -> None:
    """Refuse to resume with a config that trains something else than ``previous`` (the run's config.yaml)."""
    if not previous.is_file():
        return
    old = read_yaml(previous, str(previous))
    changed = changed_training(old, cfg.to_dict())
    if changed and not allow:
        a, b = old, cfg.to_dict()
        for part in changed[0].split("."):
            a = a.get(part) if isinstance(a, Mapping) else None
            b = b.get(part) if isinstance(b, Mapping) else None
        raise ConfigError(changed[0], f"the value this run was trained with ({a!r}) to resume it; {len(changed)} "
                          f"field(s) differ ({', '.join(changed)}). Start a new run_dir, or pass "
                          "--allow-config-change to continue this run with the new config (the old one is kept in "
                          "config.history/)", b)


def check_checkpoint(cfg: RunConfig, ckpt: Path) -> None:
    """An explicit ``--resume`` checkpoint: complete, intact, and of this backbone and fine-tuning mode."""
    problem = verify(ckpt)
    if problem is not None:
        raise ConfigError("--resume", f"a complete, intact checkpoint ({problem})", str(ckpt))
    config = ckpt.parent.parent / "config.yaml"  # <run>/checkpoints/step_NNNNNN
    if config.is_file():
        old = read_yaml(config, str(config))
        new = cfg.to_dict()
        for key in ("name", "tiny"):
            was, now = (old.get("backbone") or {}).get(key), new["backbone"][key]
            if was != now:
                raise ConfigError("--resume", f"a checkpoint of backbone.{key}={now!r} (it was trained with "
                                  f"{was!r})", str(ckpt))
        was_lora = ((old.get("train") or {}).get("lora") or {}).get("rank", 0)
        if bool(was_lora) != cfg.lora or (cfg.lora and was_lora != cfg.train.lora.rank):
            raise ConfigError("--resume", f"a checkpoint of train.lora.rank={cfg.train.lora.rank} (it was trained "
                              f"with rank {was_lora})", str(ckpt))
