"""Peak GPU memory of one training step, per rank, predicted before a job is submitted (``leapbench plan``).

The step is the trainer's (``Trainer.forward_backward`` and ``optimizer_step``): the method's rollout, its loss
through the VAE and the reward, backward, gradient clipping, AdamW and the EMA; for a method that samples
before it learns (the GRPO peers, ``benchmark.training.policy``) every micro-batch of the rank sampled without
gradient and kept, then the first optimiser step's micro-batches with loss and backward. The method's random
choices are those of its heaviest rollout (``Method.peak_choices``: a run's peak is its heaviest step). All at
the run config's backbone, resolution, micro-batch, method, T, LoRA or full fine-tuning, dtypes, activation
checkpointing and FSDP2 world size. It runs on tensors without data: the real-size transformer (FLUX.1-dev,
SD3.5-Medium), VAE and reward built on the meta device (``benchmark.core.backbones.real``,
``evaluators.rewards.architectures``); under FSDP2 as fake CPU tensors (FakeTensorMode) on a fake process
group of the world size, this process being rank 0, so that FSDP2 itself shards, gathers and reduce-scatters.
``benchmark.core.memtrace`` counts the live bytes and applies what a CUDA run decides (bf16 autocast with CUDA's
operator lists, flash attention).

The step is taken in steady state: AdamW's moments, the EMA and the frozen models exist before it; with
gradient accumulation the traced micro-batches are the first and the last (gradients exist from the first,
and under FSDP2 the first accumulates unsharded gradients without reducing them). The peak is split into
parameters (this rank's shards, gathered blocks and every frozen model), gradients, optimiser, EMA,
activations (saved for backward and temporaries) and trajectory (the states and velocities the engine keeps).

Exact where tensors decide: a no-grad velocity evaluation's memory depends only on its inputs' shapes, so
the second one is measured and the rest replay its transient, which makes a trace cost the evaluations a
method keeps, not T. Not modelled: memory a kernel allocates internally (cuBLAS/flash workspaces, tens of
MB), the caching allocator's rounding and fragmentation (``torch.cuda.memory_reserved`` runs above
``max_memory_allocated`` by some percent), the CUDA context (about 0.5 GB) and NCCL's buffers, and host
memory: autograd's graph (its nodes and saved-variable records, several hundred bytes per operator kept for
backward) lives in host RAM beside a GPU run, and in the same RAM on a CPU, where ``bench memory`` therefore
checks the prediction against the CPU allocator's peak (tensors only, as ``max_memory_allocated``), not RSS.
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.checkpoint import checkpoint

from benchmark.core import distributed
from benchmark.core.backbones.real import meta_backbone, text_conditioning
from benchmark.core.engine import Trajectory, rollout
from benchmark.core.errors import ConfigError
from benchmark.core.memtrace import CudaPolicy, MemoryTracker, tensors_of, under_policy
from benchmark.core.seeding import seeded
from benchmark.training.config import RunConfig, check_batches
from benchmark.training.ema import EMA
from benchmark.training.trainer import frozen_reference, prepare_model
from evaluators.rewards.architectures import architecture
from evaluators.rewards.config import RewardConfig
from methods import LossContext, build_method
from methods.base import MethodStep, Updates

CATEGORIES = ("parameters", "gradients", "optimizer", "EMA", "activations", "trajectory")
PROMPT = "a photo of a red cat sitting on a wooden table next to a blue vase"


@dataclass
class Prediction:
    """The predicted peak of one training step on rank 0 and what it is made of (bytes)."""

    setting: dict
    peak_bytes: int
    split: dict[str, int]
    before_bytes: int  # live when the step starts: parameters, AdamW moments, EMA
    trained_params: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def step_bytes(self) -> int:
        """The step's own share: the peak above what was live before it."""
        return self.peak_bytes - self.before_bytes

    def row(self) -> dict:
        gib = 2**30
        return {**self.setting, "peak_GiB": self.peak_bytes / gib,
                **{f"{k}_GiB": self.split.get(k, 0) / gib for k in CATEGORIES}, "trace_s": self.seconds}

    def to_dict(self) -> dict:
        return {**asdict(self), "step_bytes": self.step_bytes}


def setting_of(cfg: RunConfig, world_size: int, strategy: str, autocast: bool) -> dict:
    b = cfg.backbone
    return {"backbone": b.name + (" (tiny)" if b.tiny else ""), "resolution": f"{b.height}x{b.width}",
            "method": cfg.method.name, "T": cfg.schedule.num_steps, "micro_batch": cfg.schedule.micro_batch,
            "accumulation": cfg.accumulation(world_size), "lora": cfg.train.lora.rank or None, "world_size": world_size,
            "strategy": strategy, "bf16": autocast, "act_ckpt": cfg.train.gradient_checkpointing}


def check_plannable(cfg: RunConfig, world_size: int) -> RewardConfig:
    """The config checks that need no file (the plan runs before models are downloaded); the reward section."""
    if cfg.backbone.name not in ("flux", "sd3"):
        raise ConfigError("backbone.name", "flux or sd3 to plan", cfg.backbone.name)
    if world_size < 1:
        raise ConfigError("--world-size", "an integer >= 1", world_size)
    check_batches(cfg, world_size)
    from benchmark.core.configs import typed  # the reward section as RewardConfig, its paths unchecked

    reward = typed(RewardConfig, cfg.reward, "reward")
    reward.check_values()
    return reward


@contextlib.contextmanager
def fake_process_group(world_size: int):
    """torch.distributed's fake backend: collectives return at once; this process is rank 0 of ``world_size``."""
    from torch.testing._internal.distributed.fake_pg import FakeStore  # registers the "fake" backend; planning only

    if dist.is_initialized():
        raise RuntimeError("plan FSDP2 in a process without a process group (it starts a fake one)")
    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=world_size)
    try:
        yield
    finally:
        dist.destroy_process_group()


class NoGradMemo:
    """Backbone velocity calls without autograd: the first two are traced, the rest replay the second's
    transient (a no-grad evaluation's memory is a function of its inputs' shapes) and return an empty output.
    Calls with autograd run under the CUDA policy, also when a method's checkpointing recomputes them."""

    def __init__(self, backbone: Any, tracker: MemoryTracker, autocast: bool):
        self.velocity, self.tracker, self.seen = backbone.velocity, tracker, {}
        self.with_grad = under_policy(backbone.velocity, autocast)

    def __call__(self, x: Tensor, sigma: Tensor, cond: Any) -> Tensor:
        if torch.is_grad_enabled():
            return self.with_grad(x, sigma, cond)
        key = (tuple(x.shape), x.dtype, id(cond))
        count, memo = self.seen.get(key, (0, None))
        if count == 0:
            self.seen[key] = (1, None)
            return self.velocity(x, sigma, cond)
        if memo is None:
            with self.tracker.window() as window:
                v = self.velocity(x, sigma, cond)
            self.seen[key] = (2, (window["extra"], v.shape, v.dtype))
            return v
        extra, shape, dtype = memo
        self.tracker.replay(extra)
        return torch.empty(shape, dtype=dtype, device=x.device)


def predict(cfg: RunConfig, world_size: int = 1, *, target: str = "cuda", text_tokens: int | None = None,
            layers: int = 1) -> Prediction:
    """The predicted peak of one training step of ``cfg`` on rank 0 of ``world_size`` ranks.

    ``target``: "cuda" (bf16 autocast with CUDA's lists when ``train.autocast``, foreach AdamW, as on a GPU) or
    "cpu" (float32, single-tensor AdamW, as ``bench memory`` runs on CPU).
    ``text_tokens``: the text sequence length (default: the pipeline's). ``layers``: the tiny FLUX's depth.
    """
    reward_cfg = check_plannable(cfg, world_size)
    how = distributed.strategy(cfg.distributed.strategy, cfg.lora, world_size)
    autocast = cfg.train.autocast and target == "cuda"
    notes = []
    if how == "ddp":
        notes.append("DDP: traced as one process (DDP adds gradient buckets of the trained parameters' size)")
    t0 = time.perf_counter()
    fsdp = how == "fsdp"
    with fake_process_group(world_size) if fsdp else contextlib.nullcontext():
        tracker, before, trained = trace_step(cfg, reward_cfg, world_size, fsdp, autocast, target, text_tokens, layers)
    setting = setting_of(cfg, world_size, how, autocast)
    return Prediction(setting, tracker.peak.total, tracker.split(), before, trained, time.perf_counter() - t0, notes)


def trace_step(cfg: RunConfig, reward_cfg: RewardConfig, world_size: int, fsdp: bool, autocast: bool, target: str,
               text_tokens: int | None, layers: int) -> tuple[MemoryTracker, int, int]:
    b = cfg.backbone
    backbone = meta_backbone(b.name, height=b.height, width=b.width, guidance=b.guidance, dtype=b.dtype, tiny=b.tiny,
                             path=b.path, layers=layers)
    reward = architecture(reward_cfg)
    method = build_method(cfg.method)
    train_cfg = copy.deepcopy(cfg.train)
    train_cfg.compile = False  # compiling changes speed, not what is stored
    device = torch.device("meta")
    prepare_model(backbone, train_cfg, device)
    if train_cfg.gradient_checkpointing:  # diffusers' per-block checkpointing, recomputing under the CUDA policy
        backbone.transformer.enable_gradient_checkpointing(
            lambda module, *args: checkpoint(under_policy(module.__call__, autocast), *args, use_reentrant=False))
    reference = frozen_reference(backbone, device) if method.needs_reference else None
    how = "fsdp" if fsdp else "none"
    model = distributed.parallelize(backbone.transformer, how, distributed.DistEnv(0, world_size),
                                    cfg.distributed.fsdp_param_dtype, cfg.distributed.fsdp_reduce_dtype)
    backbone.transformer = model
    frozen = [backbone.vae, reward] + ([reference.transformer] if reference is not None else [])
    T, accumulation = cfg.schedule.num_steps, cfg.accumulation(world_size)
    pins = {"iteration": 1} if method.uses_iteration else {}
    draws = accumulation if method.updates is not None else min(accumulation, 2)  # the micro-batches traced
    steps = [method.start(T, seeded(cfg.seed, "choice", 1), **{**pins, **method.peak_choices(T)})
             for _ in range(draws)]  # drawn on the CPU, as the trainer does: the choices are real
    sigmas = method.time_grid.sigmas(backbone, T)
    # fake CPU tensors rather than meta ones: FSDP2 refuses meta parameters, autocast knows no meta device
    with FakeTensorMode(allow_non_fake_inputs=True):
        device = torch.device("cpu")
        for module in [model, *frozen]:
            module.to_empty(device=device)
        return run_step(cfg, method, steps, backbone, model, reward, reference, frozen, sigmas.to(device), world_size,
                        autocast, target, text_tokens)


@dataclass
class Traced:
    """What the traced micro-batches of a step share: the models, the conditioning, the tracker, the CUDA policy."""

    cfg: RunConfig
    backbone: Any
    model: torch.nn.Module
    flow: Any  # the backbone as the method's time grid calls it
    reward: Any
    reference: Any
    cond: Any
    sigmas: Tensor
    tracker: MemoryTracker
    autocast: bool
    params: list[Tensor]

    def context(self) -> LossContext:
        prompts = [PROMPT] * self.cfg.schedule.micro_batch
        return LossContext(model=self.flow, cond=self.cond, reference=self.reference,
                           score=lambda x0: self.reward.score(self.backbone.decode(x0), prompts))

    def cuda_autocast(self) -> contextlib.ExitStack:
        """The trainer's autocast, with CUDA's decisions on top."""
        stack = contextlib.ExitStack()
        stack.enter_context(torch.autocast("cpu", torch.bfloat16, enabled=self.autocast))
        stack.enter_context(CudaPolicy(self.autocast))
        return stack

    def roll_out(self, mstep) -> Trajectory:
        x_T = self.backbone.noise(self.cfg.schedule.micro_batch)
        traj = rollout(self.flow, self.cond, x_T, self.sigmas, mstep)
        self.tracker.label(tensors_of(traj.x) + tensors_of(traj.v) + tensors_of(traj.logprob), "trajectory")
        return traj

    def backward(self, loss: Tensor, accumulated: int) -> None:
        if loss.requires_grad:
            (loss / accumulated).backward()

    def label_gradients(self) -> None:
        self.tracker.label([p.grad for p in self.params if p.grad is not None] + unsharded_grads(self.model),
                           "gradients")


def direct_step(run: Traced, steps: list[MethodStep], accumulation: int) -> list:
    """The reward-gradient loop's step: each micro-batch rolls out with its loss's graph and backpropagates
    (with accumulation the first and the last micro-batch are traced: ``steps``)."""
    for a, mstep in enumerate(steps):
        with distributed.gradient_sync(run.model, sync=a == len(steps) - 1):
            with run.cuda_autocast():
                traj = run.roll_out(mstep)
                loss, _ = mstep.loss(traj, run.context())
            run.backward(loss, accumulation)
            del traj, loss
        run.label_gradients()
    return []


def policy_step(run: Traced, steps: list[MethodStep], updates: Updates) -> list:
    """``benchmark.training.policy``'s step on this rank: every micro-batch rolled out without gradient and kept
    (trajectory and rewards), then the first optimiser step's share of them with loss and backward (its first
    and last micro-batch traced; the later optimiser steps repeat it). Returns the sampled micro-batches, which
    live until the optimiser step."""
    sampled = []
    for mstep in steps:  # one per micro-batch of this rank
        ctx = run.context()
        with torch.no_grad(), run.cuda_autocast():
            traj = run.roll_out(mstep)
            mstep.observe(traj, ctx)
        ctx.advantages = torch.ones(run.cfg.schedule.micro_batch, dtype=torch.float64)
        sampled.append((mstep, traj, ctx))
    per_update = len(steps) // updates.minibatches
    traced = sampled[:per_update][:1] + sampled[1:per_update][-1:]
    for a, (mstep, traj, ctx) in enumerate(traced):
        with distributed.gradient_sync(run.model, sync=a == len(traced) - 1):
            with run.cuda_autocast():
                loss, _ = mstep.loss(traj, ctx)
            run.backward(loss, per_update)
            del loss
        run.label_gradients()
    return sampled


def run_step(cfg, method, steps, backbone, model, reward, reference, frozen, sigmas, world_size, autocast, target,
             text_tokens) -> tuple[MemoryTracker, int, int]:
    named = [(n, p) for n, p in distributed.unwrap(model).named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    o = cfg.optim
    optimizer = torch.optim.AdamW(params, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay,
                                  foreach=target == "cuda")  # torch's default for CUDA tensors; loops on CPU
    tracker = MemoryTracker()
    with tracker:
        ema = EMA(named, o.ema_decay)
        for p in params:  # AdamW's moments exist in a running job: one step of zero gradients makes them
            p.grad = torch.zeros_like(p)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    for module in [model, *frozen]:
        tracker.add(list(module.parameters()) + list(module.buffers()), "parameters")
    tracker.add([v for s in optimizer.state.values() for v in s.values() if isinstance(v, Tensor)], "optimizer")
    tracker.add(ema.shadow, "EMA")
    label_gathered(model, tracker)

    accumulation = cfg.accumulation(world_size)
    backbone.velocity = NoGradMemo(backbone, tracker, autocast)
    tracker.reset_peak()
    before = tracker.total
    with tracker:
        cond = text_conditioning(cfg.backbone.name, cfg.schedule.micro_batch, sigmas.device,
                                 torch.float32 if cfg.backbone.tiny else torch.bfloat16, tiny=cfg.backbone.tiny,
                                 tokens=text_tokens)
        run = Traced(cfg, backbone, model, method.time_grid.model(backbone), reward, reference, cond, sigmas, tracker,
                     autocast, params)
        if method.updates is None:
            kept = direct_step(run, steps, accumulation)
        else:
            kept = policy_step(run, steps, method.updates)
        with tracker.in_phase("optimizer"):
            clip = cfg.optim.grad_clip
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(params, clip)
            optimizer.step()
            ema.update()
            optimizer.zero_grad(set_to_none=True)
        del kept
    trained = sum(p.numel() for p in params)
    return tracker, before, trained


def label_gathered(model: torch.nn.Module, tracker: MemoryTracker) -> None:
    """Under FSDP2 a block's gathered parameters count as parameters: after FSDP2's own pre-forward hook (which
    gathers them) the module's parameters are the unsharded tensors."""
    modules = [m for m in model.modules() if hasattr(m, "unshard")]
    for module in modules:
        module.register_forward_pre_hook(
            lambda mod, args: tracker.label([p for p in mod.parameters() if not hasattr(p, "to_local")], "parameters"))




def unsharded_grads(model: torch.nn.Module) -> list[Tensor]:
    """FSDP2's gradients accumulated unsharded, in the reduce dtype, over micro-batches without gradient sync
    (``FSDPParam.unsharded_accumulated_grad``, torch/distributed/fsdp/_fully_shard/_fsdp_param.py): the whole
    model's size on every rank until the last micro-batch reduce-scatters them."""
    groups = [m._get_fsdp_state()._fsdp_param_group for m in model.modules() if hasattr(m, "_get_fsdp_state")]
    return [p.unsharded_accumulated_grad for g in groups if g is not None for p in g.fsdp_params]
