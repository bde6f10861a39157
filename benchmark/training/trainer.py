"""The training loop, one for every method: ``train(cfg, reward)``.

Per optimiser step: every rank draws the same method choices (k, j, t_min, ...) from a generator seeded by
(seed, step); each micro-batch takes cached prompt embeddings and fresh noise, rolls out with the method's
plan (``engine.rollout``), scores the method's differentiable x_0 through the VAE and the reward, and
backpropagates; gradients accumulate to the global batch, are clipped, and AdamW and the fp32 EMA step
unless the loss or gradient is non-finite. The loop never looks at which method it trains.

Reproducibility: prompt order, noise and method choices are pure functions of (seed, step, sample), so
a resumed run, or the same global batch split over a different number of ranks, sees the same data.
A method's optional attributes (``group_size``, ``needs_reference``, ``uses_iteration``; ``methods.base.Method``)
repeat prompts in groups, add a frozen reference model and hand ``start`` the step number; stochastic
rollout steps draw their noise from a generator seeded by (seed, step, micro-batch).
"""

from __future__ import annotations

import copy
import hashlib
import math
import random
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from benchmark.core import distributed
from benchmark.core.backbones import DTYPES, build_backbone
from benchmark.core.checkpoint import latest_valid, load_checkpoint, save_checkpoint
from benchmark.training.config import RunConfig, TrainingConfig, check_run, dump_config
from benchmark.core.engine import rollout
from benchmark.training.telemetry import COMPLEMENT, Telemetry, gradient_parts, peak_memory
from methods import LossContext, build_method



class NonFiniteStop(RuntimeError):
    """Too many non-finite steps in a row; the message names the last good checkpoint."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int  # the last completed step
    status: str  # "finished", or "preempted" after SIGTERM/SIGUSR2
    checkpoint: Path | None
    summary: dict


@dataclass
class MicroBatch:
    index: int  # global micro-batch number within the step: rank * accumulation + a
    prompts: list[str]
    cond: Any
    x_T: Tensor


def train(
    cfg: RunConfig,
    reward: nn.Module,
    *,
    resume: str | None = None,
    backbone: Any = None,
    on_step: Callable[[int, dict], None] | None = None,
) -> TrainResult:
    """Fine-tune ``cfg.backbone`` with ``cfg.method`` on ``reward`` (a module: images in [0,1], prompts -> [B]).

    ``resume``: None/"none" (a fresh run), "auto" (the newest valid checkpoint of the run directory, if any)
    or a checkpoint directory. ``backbone`` replaces building one from ``cfg.backbone`` (tests).
    ``on_step(step, metrics)`` runs after each step's logging and checkpointing.
    """
    # -- where we run; everything is checked before a model is loaded or the run directory exists --
    env, started = distributed.setup(cfg.distributed)
    check_run(cfg, env.world_size, resume, check_reward=False)
    run_dir = Path(cfg.run_dir)
    if env.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, run_dir / "config.yaml")
    device = env.device
    seed_everything(cfg.seed)

    # -- model, optimiser, EMA, method, data --------------------------------------------------------
    method = build_method(cfg.method)
    backbone = backbone if backbone is not None else build_backbone(cfg.backbone)
    reference = frozen_reference(backbone, device) if getattr(method, "needs_reference", False) else None
    prepare_model(backbone, cfg.train, device)
    how = distributed.strategy(cfg.distributed, cfg.lora, env.world_size)
    model = distributed.parallelize(backbone.transformer, how, cfg.distributed, env)
    backbone.transformer = model  # the backbone's velocity now runs the wrapped (DDP / FSDP2) module
    named = [(n, p) for n, p in distributed.unwrap(model).named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    o = cfg.optim
    optimizer = torch.optim.AdamW(params, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
    ema = EMA(named, o.ema_decay)
    parts = gradient_parts(method) if cfg.logging.grad_parts_every else {}
    reward = reward.to(device).requires_grad_(False).eval()
    cache, prompts = open_prompts(cfg)
    T = cfg.schedule.num_steps
    sigmas = backbone.schedule(T).to(device)
    accumulation = cfg.accumulation(env.world_size)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                              enabled=cfg.train.autocast and device.type == "cuda")

    # -- resume ------------------------------------------------------------------------------------
    ckpt_root = run_dir / "checkpoints"
    state = {"step": 0, "skipped_total": 0, "consecutive_skips": 0}
    last_ckpt = None
    if resume not in (None, "none"):
        found = latest_valid(ckpt_root) if resume == "auto" else Path(resume)
        last_ckpt = distributed.broadcast_object(found if env.is_main else None)
        if last_ckpt is not None:
            trainer = load_checkpoint(last_ckpt, model, optimizer, ema, lora=cfg.lora, is_main=env.is_main,
                                      world_size=env.world_size)
            state = trainer["state"]
            restore_rng(trainer["rng"])

    def checkpoint(step: int) -> Path:
        trainer_state = {"state": dict(state), "rng": rng_state()}
        return save_checkpoint(ckpt_root, step, model, optimizer, ema, trainer_state, lora=cfg.lora,
                               backbone=backbone.name, is_main=env.is_main, keep=cfg.checkpoint.keep)

    def run_micro_batches(method: Any, step: int, batches: list[MicroBatch]) -> tuple[list[float], list[dict], bool]:
        """Roll out, score and backpropagate every micro-batch; gradients sync on the last one."""
        losses, rows, has_grad = [], [], False
        for a, mb in enumerate(batches):
            pins = {"iteration": step} if getattr(method, "uses_iteration", False) else {}
            mstep = method.start(T, seeded(cfg.seed, "choice", step), **pins)  # identical on every rank
            ctx = LossContext(
                model=backbone, cond=mb.cond,
                reward=lambda x0, p=mb.prompts: reward(backbone.decode(x0), p),
                generator=seeded(cfg.seed, "loss", step, mb.index, device=device),
                reference=reference, reward_parts=lambda: reward_parts(reward),
            )
            with distributed.gradient_sync(model, sync=a == len(batches) - 1):
                with autocast:
                    sde_noise = seeded(cfg.seed, "sde", step, mb.index, device=device)  # used by stochastic steps only
                    traj = rollout(backbone, mb.cond, mb.x_T, sigmas, mstep, generator=sde_noise)
                    loss, metrics = mstep.loss(traj, ctx)
                # a loss may carry no graph (DRTune when all its training steps lie below t_min)
                if loss.requires_grad:
                    (loss / len(batches)).backward()
                    has_grad = True
            losses.append(loss.detach().float().item())
            rows.append(metrics)
        return losses, rows, has_grad

    telemetry = Telemetry(run_dir, env.is_main, cfg.schedule.iterations, state["step"], cfg.logging.progress,
                          cfg.logging.tensorboard)
    stop = StopFlag().install()
    t_start = time.perf_counter()
    status = "finished"

    # -- the loop -----------------------------------------------------------------------------------
    try:
        while state["step"] < cfg.schedule.iterations:
            if distributed.any_rank(stop.signum is not None, device):  # SIGTERM / SIGUSR2 between steps
                last_ckpt = checkpoint(state["step"]) if state["step"] > 0 else last_ckpt
                status = "preempted"
                break
            step = state["step"] + 1
            t0 = time.perf_counter()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            batches = make_batches(cfg, backbone, cache, prompts, step, env.rank, accumulation, device,
                                   group_size=getattr(method, "group_size", 1))

            optimizer.zero_grad(set_to_none=True)
            losses, rows, has_grad = run_micro_batches(method, step, batches)
            row = {"step": step, "loss": float(distributed.all_mean(torch.tensor(np.mean(losses))).item())}
            row.update(merge_metrics(rows))

            # gradient decomposition (LeapAlign: single-step vs nested), same batches and choices, before clipping
            if has_grad and parts and step % cfg.logging.grad_parts_every == 0:
                full = [grad_or_zeros(p) for p in params]
                for name, variant in parts.items():
                    optimizer.zero_grad(set_to_none=True)
                    run_micro_batches(variant, step, batches)
                    part = [grad_or_zeros(p) for p in params]
                    row[f"grad_norm_{name}"] = total_norm(part)
                    row[f"grad_norm_{COMPLEMENT.get(name, 'rest_' + name)}"] = total_norm(
                        [f - g for f, g in zip(full, part)])
                for p, g in zip(params, full):
                    p.grad = g

            # clip, then step only when loss and gradient are finite on every rank
            grad_norm = 0.0
            if has_grad:
                max_norm = o.grad_clip if o.grad_clip is not None else math.inf
                grad_norm = float(distributed.full_tensor(torch.nn.utils.clip_grad_norm_(params, max_norm)))
            finite = math.isfinite(row["loss"]) and math.isfinite(grad_norm)
            skipped = distributed.any_rank(not finite, device)
            if not skipped and has_grad:
                optimizer.step()
                ema.update()
            optimizer.zero_grad(set_to_none=True)
            state["step"] = step
            state["skipped_total"] += int(skipped)
            state["consecutive_skips"] = state["consecutive_skips"] + 1 if skipped else 0

            row.update(grad_norm=grad_norm, lr=o.lr, step_time=time.perf_counter() - t0, peak_mem=peak_memory(device),
                       skipped=skipped, trained=has_grad and not skipped, skipped_total=state["skipped_total"])
            telemetry.log(row)

            if state["consecutive_skips"] >= cfg.train.max_consecutive_skips:
                # parameters, optimiser and EMA are those of the last good step: save them and stop
                last_ckpt = checkpoint(step)
                status = "stopped"
                raise NonFiniteStop(
                    f"stopped at step {step}: {state['consecutive_skips']} consecutive steps with a non-finite "
                    f"loss or gradient (loss={row['loss']}, grad_norm={grad_norm}; train.max_consecutive_skips="
                    f"{cfg.train.max_consecutive_skips}). The model is that of the last finite step; checkpoint: "
                    f"{last_ckpt}. Check the reward and lower optim.lr or optim.grad_clip."
                )
            every = cfg.checkpoint.every
            if (every and step % every == 0) or step == cfg.schedule.iterations:
                last_ckpt = checkpoint(step)
            if on_step is not None:
                on_step(step, row)
    finally:
        stop.restore()
        summary = telemetry.summary({"status": status, "step": state["step"], "skipped_total": state["skipped_total"],
                                     "wall_time": time.perf_counter() - t_start,
                                     "checkpoint": str(last_ckpt) if last_ckpt else None})
        telemetry.close()
        distributed.teardown(started)
    if env.is_main:
        print(f"[leapbench] {status} at step {state['step']}: " + ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()), flush=True)
    if status == "preempted":
        stop.chain()  # e.g. submitit's own SIGUSR2 handler, which requeues the job
    return TrainResult(run_dir, state["step"], status, last_ckpt, summary)


# -- pieces of the loop --------------------------------------------------------------------------------


def prepare_model(backbone: Any, cfg: TrainingConfig, device: torch.device) -> None:
    """Move to the device, freeze what is not trained, add the LoRA adapter, cast the trained params."""
    transformer = backbone.transformer.to(device)
    vae = getattr(backbone, "vae", None)
    if vae is not None:
        vae.to(device).requires_grad_(False)
    if cfg.lora.rank:
        from peft import LoraConfig

        transformer.requires_grad_(False)
        transformer.add_adapter(LoraConfig(r=cfg.lora.rank, lora_alpha=cfg.lora.alpha or cfg.lora.rank,
                                           target_modules=list(cfg.lora.targets), init_lora_weights="gaussian"))
    for p in transformer.parameters():
        if p.requires_grad:
            p.data = p.data.to(DTYPES[cfg.master_dtype])
    if cfg.gradient_checkpointing and hasattr(transformer, "enable_gradient_checkpointing"):
        transformer.enable_gradient_checkpointing()
    transformer.train()
    if cfg.compile:
        compile_blocks(transformer, cfg.compile_mode)


def compile_blocks(transformer: nn.Module, mode: str) -> None:
    """torch.compile each repeated block in place (the whole module when it has none), before any DDP or
    FSDP2 wrapping: one compiled graph per block shape, reused by every block and every step."""
    blocks = [block for blocks in distributed.block_lists(transformer) for block in blocks]
    for module in blocks or [transformer]:
        module.compile(mode=mode)


def frozen_reference(backbone: Any, device: torch.device) -> Any:
    """A frozen copy of the initial backbone (its transformer in the loaded dtype), for a method's KL term."""
    reference = copy.copy(backbone)
    reference.transformer = copy.deepcopy(backbone.transformer).to(device).requires_grad_(False).eval()
    return reference


def reward_parts(reward: nn.Module) -> dict[str, tuple[Tensor, float]] | None:
    """The parts of a weighted reward from its latest call, as (unweighted scores, weight); None for one reward."""
    parts = getattr(reward, "last_parts", None)
    return {k: (parts[k], reward.weights[k]) for k in parts} if parts else None


def open_prompts(cfg: RunConfig) -> tuple[Any, list[str]]:
    if cfg.prompts.cache is None:  # the unconditioned toy flow
        return None, [""]
    from benchmark.core.cache import EmbeddingCache

    cache = EmbeddingCache.open(cfg.prompts.cache)
    return cache, cache.prompt_set(cfg.prompts.file)


def make_batches(cfg: RunConfig, backbone: Any, cache: Any, prompts: list[str], step: int, rank: int,
                 accumulation: int, device: torch.device, group_size: int = 1) -> list[MicroBatch]:
    """This rank's micro-batches of ``step``: sample g of the global batch is the same whatever the world size.

    With ``group_size`` G (GRPO) samples g share the prompt of group g // G: each prompt appears G times in a
    row, with its own noise per sample; ``check_run`` makes the micro-batch a multiple of G so that groups
    never span micro-batches.
    """
    m, B = cfg.schedule.micro_batch, cfg.schedule.global_batch
    batches = []
    for a in range(accumulation):
        index = rank * accumulation + a
        samples = [(step - 1) * B + index * m + i for i in range(m)]
        chosen = [prompts[prompt_index(g // group_size, len(prompts), cfg.seed)] for g in samples]
        cond = cache.cond(chosen, device) if cache is not None else None
        x_T = torch.cat([backbone.noise(1, seeded(cfg.seed, "noise", g)) for g in samples]).to(device)
        batches.append(MicroBatch(index, chosen, cond, x_T))
    return batches


_PERMS: dict[tuple, Tensor] = {}


def prompt_index(g: int, n: int, seed: int) -> int:
    """Sample g's prompt: epochs over the prompt set, each in its own seeded permutation."""
    epoch, position = divmod(g, n)
    key = (seed, epoch, n)
    if key not in _PERMS:
        _PERMS.clear()
        _PERMS[key] = torch.randperm(n, generator=seeded(seed, "prompts", epoch))
    return int(_PERMS[key][position])


def seeded(*keys: Any, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator whose state is a pure function of ``keys`` (so ranks and resumed runs agree)."""
    digest = hashlib.sha256(repr(keys).encode()).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def merge_metrics(rows: list[dict]) -> dict:
    """Micro-batch metrics -> step metrics: floats averaged over micro-batches and ranks, choices kept.

    reward_std is the standard deviation of the whole global batch (from per-micro-batch moments).
    """
    first = rows[0]
    floats = [k for k, v in first.items() if isinstance(v, float)]
    table = torch.tensor([[float(r[k]) for k in floats] for r in rows], dtype=torch.float64)
    if "reward_mean" in first and "reward_std" in first:
        second = torch.tensor([[r["reward_std"] ** 2 + r["reward_mean"] ** 2] for r in rows], dtype=torch.float64)
        table = torch.cat([table, second], dim=1)
    means = distributed.all_mean(table.mean(0)).tolist()
    out = {k: v for k, v in first.items() if k not in floats}
    out.update(zip(floats, means))
    if "reward_mean" in first and "reward_std" in first:
        out["reward_std"] = math.sqrt(max(means[-1] - out["reward_mean"] ** 2, 0.0))
    return out


def grad_or_zeros(p: Tensor) -> Tensor:
    return p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)


def total_norm(tensors: list[Tensor]) -> float:
    return float(distributed.full_tensor(torch.nn.utils.get_total_norm(tensors)))


class EMA:
    """fp32 exponential moving average of the trained parameters (sharded like them under FSDP2)."""

    def __init__(self, named: list[tuple[str, nn.Parameter]], decay: float):
        self.decay = decay
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.shadow = [p.detach().float().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        for s, p in zip(self.shadow, self.params):
            s.lerp_(p.detach().float(), 1 - self.decay)

    def full_state(self) -> dict[str, Tensor]:
        return {n: distributed.full_tensor(s).detach().cpu() for n, s in zip(self.names, self.shadow)}

    @torch.no_grad()
    def load_full_state(self, state: dict[str, Tensor]) -> None:
        missing = set(self.names) - set(state)
        if missing:
            raise RuntimeError(f"EMA checkpoint lacks {sorted(missing)[:3]}")
        for n, s in zip(self.names, self.shadow):
            src = state[n].to(s.device if not hasattr(s, "device_mesh") else "cpu")
            if hasattr(s, "device_mesh"):  # a DTensor shard: take this rank's piece of the full tensor
                from torch.distributed.tensor import distribute_tensor

                src = distribute_tensor(src.to(s.to_local().device), s.device_mesh, s.placements)
            s.copy_(src)


class StopFlag:
    """SIGTERM / SIGUSR2 set a flag that the loop checks between steps (Slurm preemption, submitit timeout)."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR2)

    def __init__(self):
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}

    def install(self) -> "StopFlag":
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self.previous[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum

    def restore(self) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def chain(self) -> None:
        """After saving, hand the signal to the handler installed before ours, if it was a Python callable."""
        handler = self.previous.get(self.signum)
        if callable(handler):
            handler(self.signum, None)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])

