"""The GRPO presets against the peers' own training code, transcribed, on the same inputs (float64, toy flow).

LeapBench side: the real training loop (``Trainer.train_step`` -> ``benchmark.training.policy``) on a float64
toy flow with ``method.preset=<peer>``. Peer side: each peer's sampling step, advantages and inner training loop
transcribed below from its repository (file and function in each docstring), run on a copy of the same initial
weights. The random inputs are pinned to the values LeapBench drew: x_T, the SDE's standard-normal draws, the
per-sample step permutations (DanceGRPO) and the per-epoch shuffle (Flow-GRPO). Compared: every sampled state
(the noise of each step), the log-probabilities, the advantages, the ratio and the clipped loss of every trained
(sample, step) at every optimiser step, the gradient before each step and the parameters after it.

A larger learning rate than the presets' (1e-5 on a 12B model) makes the toy move enough for the test: the first
optimiser step is on-policy (ratio 1), the later ones see the ratio leave 1 and the clip act, by real updates.

Precision notes (not maths): the peers add the float32 constant log(sqrt(2 pi)) to each per-dimension log-prob
(it cancels in the ratio); DanceGRPO and MixGRPO compute the step's scalars (1 - sigma, sigma^2, std_dev_t) from
float32 0-dim tensors, a 1e-8 relative rounding that the transcriptions below avoid by taking the same sigmas
in float64 (the model's quantised time still comes from the float32 sigma, as theirs); Flow-GRPO's FLUX pipeline
tells the model fl(fl(1000 sigma) / 1000), which differs from sigma by at most one float32 ulp, while LeapBench
tells it sigma (the transcription below tells sigma too).
"""

import copy
import math

import pytest
import torch

import methods.grpo as grpo
from benchmark.core.backbones.toy import ToyBackbone, ToyConfig
from benchmark.core.seeding import seeded
from benchmark.training import policy
from benchmark.training.config import config_from_dict
from benchmark.training.trainer import Trainer
from evaluators.rewards.base import Reward
from evaluators.rewards.toy import ToyModeReward

F64 = torch.float64
LOG_SQRT_2PI_F32 = torch.log(torch.sqrt(2 * torch.as_tensor(math.pi))).item()  # the peers' constant, in float32
LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
TOL = dict(rtol=1e-12, atol=1e-13)  # float64: the two codes order their arithmetic differently


pytestmark = pytest.mark.usefixtures("one_thread")


def toy_flow(seed=0):
    torch.manual_seed(seed)
    return ToyBackbone(ToyConfig(dim=2, hidden=16, depth=2, dtype="float64"))


def run_tree(tmp_path, preset, method, schedule, reward="toy_mode", lr=3e-3):
    return {
        "run_dir": str(tmp_path / preset), "seed": 0,
        "backbone": {"name": "toy", "toy": {"dim": 2, "hidden": 16, "depth": 2, "dtype": "float64"}},
        "method": {"name": "grpo", "preset": preset, **method},
        "reward": {"name": reward}, "optim": {"lr": lr, "ema_decay": 0.0},
        "schedule": {"iterations": 1, **schedule}, "train": {"master_dtype": "float64"},
        "checkpoint": {"every": 0}, "logging": {"progress": False, "tensorboard": False, "grad_parts_every": 0},
    }


class Ours:
    """One step of LeapBench's loop with everything the comparison needs recorded."""

    def __init__(self, tree, reward, monkeypatch):
        self.cfg = config_from_dict(tree)
        self.backbone = toy_flow()
        self.initial = copy.deepcopy(self.backbone.transformer)
        trainer = Trainer(self.cfg, reward, backbone=self.backbone)
        self.sampled, self.grads, self.params, self.terms = [], [], [], []
        sample, step = policy.sample, trainer.optimizer_step
        monkeypatch.setattr(policy, "sample", lambda *a: self.sampled.append(sample(*a)) or self.sampled[-1])
        objective = grpo.clipped_objective

        def record(ratio, A, clip_range):
            term = objective(ratio, A, clip_range)
            self.terms.append((ratio.detach().clone(), term.detach().clone()))
            return term

        monkeypatch.setattr(grpo, "clipped_objective", record)

        def optimizer_step(loss, has_grad):
            self.grads.append([p.grad.detach().clone() for p in trainer.params])
            out = step(loss, has_grad)
            self.params.append([p.detach().clone() for p in trainer.params])
            return out

        trainer.optimizer_step = optimizer_step
        self.row = trainer.train_step(1)
        self.trainer = trainer

    def states(self, i):
        return self.sampled[i].traj.x

    def logprob(self, i, t):
        return self.sampled[i].traj.logprob[t] / self.sampled[i].traj.x[t][0].numel()


class Replica:
    """The peer's optimiser on a copy of the initial weights: AdamW and clip_grad_norm_ as each script builds them."""

    def __init__(self, ours: Ours):
        self.model = copy.deepcopy(ours.initial)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        o = ours.cfg.optim
        self.opt = torch.optim.AdamW(self.params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay, eps=o.eps)
        self.max_grad_norm = o.grad_clip
        self.grads, self.param_history = [], []

    def v(self, x, t):
        return self.model(x, t, None)

    def optimizer_step(self):
        self.grads.append([p.grad.detach().clone() for p in self.params])
        torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        self.opt.step()
        self.opt.zero_grad()
        self.param_history.append([p.detach().clone() for p in self.params])


def worst(a, b):
    return max((x - y).abs().max().item() for x, y in zip(a, b))


def compare_updates(ours: Ours, replica: Replica, updates: int):
    assert len(ours.grads) == len(replica.grads) == updates
    for u in range(updates):
        for g_ours, g_peer in zip(ours.grads[u], replica.grads[u]):
            torch.testing.assert_close(g_ours, g_peer, **TOL)
        for p_ours, p_peer in zip(ours.params[u], replica.param_history[u]):
            torch.testing.assert_close(p_ours, p_peer, **TOL)


def sde_draws(step, index, n, shape=(1, 2)):
    """The standard-normal draws LeapBench's engine makes for micro-batch ``index`` (one per SDE step, in order)."""
    g = seeded(0, "sde", step, index)
    return [torch.randn(shape, generator=g, dtype=F64) for _ in range(n)]


def x_T(sample):
    return torch.randn(1, 2, generator=seeded(0, "noise", sample), dtype=F64)


# -- DanceGRPO -----------------------------------------------------------------------------------------------


def sd3_time_shift(shift, t):
    """DanceGRPO fastvideo/train_grpo_flux.py, sd3_time_shift."""
    return (shift * t) / (1 + (shift - 1) * t)


def flux_step(model_output, latents, eta, sigmas, index, prev_sample, noise=None):
    """DanceGRPO fastvideo/train_grpo_flux.py, flux_step (grpo=True, sde_solver=True); ``noise`` replaces
    torch.randn_like when sampling. Returns (prev_sample, pred_original_sample, log_prob)."""
    sigma = sigmas[index]
    dsigma = sigmas[index + 1] - sigma
    prev_sample_mean = latents + dsigma * model_output
    pred_original_sample = latents - sigma * model_output
    delta_t = sigma - sigmas[index + 1]
    std_dev_t = eta * math.sqrt(delta_t)
    score_estimate = -(latents - pred_original_sample * (1 - sigma)) / sigma**2
    log_term = -0.5 * eta**2 * score_estimate
    prev_sample_mean = prev_sample_mean + log_term * dsigma
    if prev_sample is None:
        prev_sample = prev_sample_mean + noise * std_dev_t
    log_prob = (-((prev_sample.detach() - prev_sample_mean) ** 2) / (2 * (std_dev_t**2))
                - math.log(std_dev_t) - LOG_SQRT_2PI_F32)
    return prev_sample, pred_original_sample, log_prob.mean(dim=tuple(range(1, log_prob.ndim)))


def dance_timestep(sigma):
    """run_sample_step / train_one_step: timestep = int(sigma * 1000) as a long, divided by 1000 for the model."""
    return torch.full([1], int(sigma * 1000), dtype=torch.long) / 1000


def dance_sample(replica, sample, T, eta, sigmas):
    """run_sample_step (init_same_noise: the group's x_T) with LeapBench's draws; the reward input is the last
    step's pred_original (``latents = pred_original``). ``sigmas``: the float32 schedule."""
    z, latents, log_probs = x_T(0), [x_T(0)], []
    for i, eps in zip(range(T), sde_draws(1, sample, T)):
        with torch.no_grad():
            pred = replica.v(z, dance_timestep(sigmas[i]))
        z, pred_original, log_prob = flux_step(pred, z, eta, sigmas.double(), i, None, eps)
        latents.append(z)
        log_probs.append(log_prob)
    return torch.stack(latents, 1), torch.stack(log_probs, 1), pred_original


def test_dancegrpo_preset_equals_dancegrpo_train_one_step(tmp_path, monkeypatch):
    """DanceGRPO fastvideo/train_grpo_flux.py, train_one_step: one prompt, G = 6 samples from one x_T, the last step
    dropped, per-sample permutations, int(0.6 * 5) = 3 steps each, group advantages (std + 1e-8), an optimiser step
    every gradient_accumulation_steps = 2 samples (3 per rollout)."""
    T, G, ga, eta = 6, 6, 2, 0.3
    ours = Ours(run_tree(tmp_path, "dancegrpo", {"group_size": G}, {"num_steps": T, "global_batch": G}),
                ToyModeReward(), monkeypatch)
    peer = Replica(ours)
    sigmas = sd3_time_shift(3.0, torch.linspace(1, 0, T + 1))
    torch.testing.assert_close(ours.trainer.sigmas, sigmas, rtol=0, atol=0)

    # sampling: states, log-probs and the reward of the x0 prediction
    reward = ToyModeReward()
    rollouts = [dance_sample(peer, i, T, eta, sigmas) for i in range(G)]
    for i, (latents, log_probs, _) in enumerate(rollouts):
        for k in range(T + 1):
            torch.testing.assert_close(ours.states(i)[T - k], latents[:, k], **TOL)
        for k in range(T):  # the float32 constant is the only difference
            torch.testing.assert_close(ours.logprob(i, T - k) + LOG_SQRT_2PI - LOG_SQRT_2PI_F32, log_probs[:, k], **TOL)
    rewards = torch.cat([reward(pred, None) for _, _, pred in rollouts])
    torch.testing.assert_close(torch.cat([s.step.scores[0] for s in ours.sampled]), rewards, **TOL)

    # advantages: (r - group mean) / (group std + 1e-8)
    advantages = (rewards - rewards.mean()) / (rewards.std() + 1e-8)
    torch.testing.assert_close(torch.cat([s.ctx.advantages for s in ours.sampled]), advantages, **TOL)

    # the inner loop, on the peer's own samples: per-sample permutations of the 5 kept steps
    n = int(5 * 0.6)
    perms = [torch.randperm(T - 1, generator=seeded(0, "loss", 1, i)) for i in range(G)]
    terms = {}
    for i in range(G):
        latents, old_log_probs, _ = rollouts[i]
        for j in perms[i][:n].tolist():
            new_log_prob = flux_step(peer.v(latents[:, j], dance_timestep(sigmas[j])), latents[:, j], eta,
                                     sigmas.double(), j, latents[:, j + 1], None)[2]
            A = torch.clamp(advantages[i:i + 1], -5.0, 5.0)
            ratio = torch.exp(new_log_prob - old_log_probs[:, j])
            unclipped_loss = -A * ratio
            clipped_loss = -A * torch.clamp(ratio, 1.0 - 1e-4, 1.0 + 1e-4)
            loss = torch.mean(torch.maximum(unclipped_loss, clipped_loss)) / (ga * n)
            loss.backward()
            terms[i, T - j] = ratio.detach(), torch.maximum(unclipped_loss, clipped_loss).detach()
        if (i + 1) % ga == 0:
            peer.optimizer_step()

    order = [(i, t) for i in range(G) for t in sorted((T - j for j in perms[i][:n].tolist()), reverse=True)]
    assert len(ours.terms) == len(order)
    for (ratio, term), key in zip(ours.terms, order):
        torch.testing.assert_close(ratio, terms[key][0], **TOL)
        torch.testing.assert_close(term, terms[key][1], **TOL)
    compare_updates(ours, peer, 3)
    dev, clip = ours.row["update_ratio_dev"], ours.row["update_clip_frac"]
    assert dev[0] < 1e-12 and clip[0] == 0  # on-policy
    assert min(dev[1:]) > 1e-4 and max(clip[1:]) > 0  # the updates moved the ratio past the clip range


# -- MixGRPO ---------------------------------------------------------------------------------------------------


def flow_grpo_step(model_output, latents, eta, sigmas, index, prev_sample, determistic=False, noise=None):
    """MixGRPO fastvideo/utils/sampling_utils.py, flow_grpo_step; ``noise`` replaces randn_tensor.
    Returns (prev_sample, log_prob)."""
    sigma = sigmas[index]
    sigma_prev = sigmas[index + 1]
    sigma_max = sigmas[1].item()
    dt = sigma_prev - sigma
    std_dev_t = torch.sqrt(sigma / (1 - torch.where(sigma == 1, sigma_max, sigma))) * eta
    prev_sample_mean = latents * (1 + std_dev_t**2 / (2 * sigma) * dt) + model_output * (
        1 + std_dev_t**2 * (1 - sigma) / (2 * sigma)) * dt
    if prev_sample is None:
        prev_sample = prev_sample_mean + std_dev_t * torch.sqrt(-1 * dt) * noise
    if determistic:
        prev_sample = latents + dt * model_output
    log_prob = (-((prev_sample.detach() - prev_sample_mean) ** 2) / (2 * ((std_dev_t * torch.sqrt(-1 * dt)) ** 2))
                - torch.log(std_dev_t * torch.sqrt(-1 * dt)) - LOG_SQRT_2PI_F32)
    return prev_sample, log_prob.mean(dim=tuple(range(1, log_prob.ndim)))


def mix_window(iteration, T, group_size=4, iters_per_group=25):
    """MixGRPO fastvideo/utils/grpo_states.py, GRPOTrainingStates (progressive, prog_overlap_step 1, roll_back,
    max_timesteps = sampling_steps - 2): get_current_timesteps() before the iteration's update_iteration()."""
    cur_timestep, cur_iter, max_timesteps = 0, 0, T - 2
    for _ in range(iteration - 1):
        cur_iter += 1
        if cur_iter >= iters_per_group:
            cur_iter, cur_timestep = 0, cur_timestep + 1
        if cur_timestep > max_timesteps:
            cur_timestep, cur_iter = 0, 0
    return list(range(cur_timestep, min(cur_timestep + group_size, max_timesteps)))


class TwoParts(Reward):
    """A weighted reward of two parts on 2-D toy samples (MixGRPO's multi-reward, weights summing to 1)."""

    name = "weighted"

    def __init__(self):
        super().__init__()
        self.register_buffer("center", torch.tensor([1.0, -0.5], dtype=F64))

    def score(self, images, prompts):
        a, b = -(images - self.center).norm(dim=1), torch.sin(3 * images[:, 0])
        return 0.25 * a + 0.75 * b, {"a": (a, 0.25), "b": (b, 0.75)}

    def forward(self, images, prompts=None):
        return self.score(images, prompts)[0]


def test_mixgrpo_preset_equals_mixgrpo_train_one_step(tmp_path, monkeypatch):
    """MixGRPO fastvideo/train_grpo_flux.py, train_one_step with --training_strategy part: SDE only in the window
    (flow_grpo_step), ODE elsewhere, every window step trained for every sample, advantage_aggr over two rewards,
    an optimiser step every gradient_accumulation_steps = 2 of the 8 samples (4 per rollout)."""
    T, G, ga, eta = 8, 8, 2, 0.7
    ours = Ours(run_tree(tmp_path, "mixgrpo", {"group_size": G}, {"num_steps": T, "global_batch": G},
                         reward="weighted"), TwoParts(), monkeypatch)
    peer = Replica(ours)
    sigmas = sd3_time_shift(3.0, torch.linspace(1, 0, T + 1))
    window = mix_window(1, T)
    assert window == [0, 1, 2, 3] and ours.row["sde_steps"] == [T - i for i in window]

    rollouts = []
    for i in range(G):
        z, latents, log_probs, draws = x_T(0), [x_T(0)], [], iter(sde_draws(1, i, len(window)))
        for k in range(T):
            with torch.no_grad():
                pred = peer.v(z, dance_timestep(sigmas[k]))
            determistic = k not in window
            noise = torch.zeros_like(z) if determistic else next(draws)  # drawn, then overwritten, at an ODE step
            z, log_prob = flow_grpo_step(pred, z, eta, sigmas.double(), k, None, determistic, noise)
            latents.append(z)
            log_probs.append(log_prob)
        rollouts.append((torch.stack(latents, 1), torch.stack(log_probs, 1)))
        for k in range(T + 1):
            torch.testing.assert_close(ours.states(i)[T - k], rollouts[i][0][:, k], **TOL)
        for k in window:
            torch.testing.assert_close(ours.logprob(i, T - k) + LOG_SQRT_2PI - LOG_SQRT_2PI_F32, log_probs[k], **TOL)

    # advantage_aggr: each reward's group advantages, weighted by the normalised weights
    x0 = torch.cat([latents[:, -1] for latents, _ in rollouts])
    _, parts = TwoParts().score(x0, None)
    total = sum(w for _, w in parts.values())
    advantages = torch.zeros(G, dtype=F64)
    for scores, w in parts.values():
        advantages += (scores - scores.mean()) / (scores.std() + 1e-8) * (w / total)
    torch.testing.assert_close(torch.cat([s.ctx.advantages for s in ours.sampled]), advantages, **TOL)

    terms = {}
    for i in range(G):
        latents, old_log_probs = rollouts[i]
        for j in window:
            new_log_prob = flow_grpo_step(peer.v(latents[:, j], dance_timestep(sigmas[j])), latents[:, j], eta,
                                          sigmas.double(), j, latents[:, j + 1])[1]
            A = torch.clamp(advantages[i:i + 1], -5.0, 5.0)
            ratio = torch.exp(new_log_prob - old_log_probs[:, j])
            unclipped_loss, clipped_loss = -A * ratio, -A * torch.clamp(ratio, 1.0 - 1e-4, 1.0 + 1e-4)
            policy_loss = torch.mean(torch.maximum(unclipped_loss, clipped_loss)) / (ga * len(window))
            policy_loss.backward()
            terms[i, T - j] = ratio.detach(), torch.maximum(unclipped_loss, clipped_loss).detach()
        if (i + 1) % ga == 0:
            peer.optimizer_step()

    order = [(i, T - j) for i in range(G) for j in window]
    for (ratio, term), key in zip(ours.terms, order, strict=True):
        torch.testing.assert_close(ratio, terms[key][0], **TOL)
        torch.testing.assert_close(term, terms[key][1], **TOL)
    compare_updates(ours, peer, 4)
    dev, clip = ours.row["update_ratio_dev"], ours.row["update_clip_frac"]
    assert dev[0] < 1e-12 and clip[0] == 0 and min(dev[1:]) > 1e-4 and max(clip[1:]) > 0


# -- Flow-GRPO -------------------------------------------------------------------------------------------------


def sde_step_with_logprob(model_output, sigmas, index, sample, noise_level, prev_sample=None, noise=None):
    """Flow-GRPO flow_grpo/diffusers_patch/sd3_sde_with_logprob.py, sde_step_with_logprob (sde_type 'sde'); the
    scheduler's sigma lookup by index; ``noise`` replaces randn_tensor.
    Returns (prev_sample, log_prob, prev_sample_mean, std_dev_t)."""
    sigma, sigma_prev, sigma_max = sigmas[index], sigmas[index + 1], sigmas[1].item()
    dt = sigma_prev - sigma
    std_dev_t = torch.sqrt(sigma / (1 - torch.where(sigma == 1, sigma_max, sigma))) * noise_level
    prev_sample_mean = sample * (1 + std_dev_t**2 / (2 * sigma) * dt) + model_output * (
        1 + std_dev_t**2 * (1 - sigma) / (2 * sigma)) * dt
    if prev_sample is None:
        prev_sample = prev_sample_mean + std_dev_t * torch.sqrt(-1 * dt) * noise
    log_prob = (-((prev_sample.detach() - prev_sample_mean) ** 2) / (2 * ((std_dev_t * torch.sqrt(-1 * dt)) ** 2))
                - torch.log(std_dev_t * torch.sqrt(-1 * dt)) - LOG_SQRT_2PI_F32)
    return prev_sample, log_prob.mean(dim=tuple(range(1, log_prob.ndim))), prev_sample_mean, std_dev_t


def stat_tracker(prompts, rewards, global_std=True):
    """Flow-GRPO flow_grpo/stat_tracking.py, PerPromptStatTracker.update (type grpo, one epoch's stats)."""
    advantages = torch.empty_like(rewards)
    for prompt in sorted(set(prompts)):
        mine = torch.tensor([p == prompt for p in prompts])
        std = (rewards.std(unbiased=False) if global_std else rewards[mine].std(unbiased=False)) + 1e-4
        advantages[mine] = (rewards[mine] - rewards[mine].mean()) / std
    return advantages


def test_flowgrpo_preset_equals_flow_grpo_train_flux(tmp_path, monkeypatch):
    """Flow-GRPO scripts/train_flux.py (main: sampling, per-prompt stat tracking with global std, the inner epoch
    with its shuffle, int(T * 0.99) first steps, KL / (2 std_dev_t^2) at beta > 0), config/grpo.py pickscore_flux:
    2 groups of 4 samples, train_batch_size 1, gradient_accumulation_steps 4 (2 optimiser steps per epoch).
    beta = 0.04 (Flow-GRPO's SD3.5 GenEval value; its FLUX config has 0) to compare the KL form as well."""
    T, G, eta, beta = 6, 4, 0.9, 0.04
    ours = Ours(run_tree(tmp_path, "flowgrpo", {"group_size": G, "kl_weight": beta},
                         {"num_steps": T, "global_batch": 2 * G, "micro_batch": 1}) | {"train": {
                             "master_dtype": "float64", "lora": {"rank": 0}}}, ToyModeReward(), monkeypatch)
    peer = Replica(ours)
    reference = copy.deepcopy(ours.initial)
    sigmas = ours.trainer.sigmas  # the backbone's own grid (FLUX: FluxPipeline's dynamic shift; the toy: linear)
    N, ga = 2 * G, G

    samples = []
    for i in range(N):
        z, latents, log_probs = x_T(i), [x_T(i)], []
        for k, eps in zip(range(T), sde_draws(1, i, T)):
            with torch.no_grad():
                pred = peer.v(z, sigmas[k])
            z, log_prob, _, _ = sde_step_with_logprob(pred, sigmas, k, z, eta, noise=eps)
            latents.append(z)
            log_probs.append(log_prob)
        samples.append((torch.stack(latents, 1), torch.stack(log_probs, 1)))
        for k in range(T + 1):
            torch.testing.assert_close(ours.states(i)[T - k], samples[i][0][:, k], **TOL)
        for k in range(T):
            torch.testing.assert_close(ours.logprob(i, T - k) + LOG_SQRT_2PI - LOG_SQRT_2PI_F32, log_probs[k], **TOL)

    rewards = ToyModeReward()(torch.cat([latents[:, -1] for latents, _ in samples]), None)
    advantages = stat_tracker([f"prompt{i // G}" for i in range(N)], rewards)
    torch.testing.assert_close(torch.cat([s.ctx.advantages for s in ours.sampled]), advantages, **TOL)

    num_train_timesteps = int(T * 0.99)
    perm = torch.randperm(N, generator=seeded(0, "shuffle", 1, 0, 0)).tolist()  # inner epoch 0, rank 0
    terms = {}
    for b, i in enumerate(perm):
        latents, old_log_probs = samples[i]
        for j in range(num_train_timesteps):
            _, log_prob, prev_sample_mean, std_dev_t = sde_step_with_logprob(
                peer.v(latents[:, j], sigmas[j]), sigmas, j, latents[:, j], eta, prev_sample=latents[:, j + 1])
            with torch.no_grad():
                _, _, prev_sample_mean_ref, _ = sde_step_with_logprob(
                    reference(latents[:, j], sigmas[j], None), sigmas, j, latents[:, j], eta, prev_sample=latents[:, j + 1])
            A = torch.clamp(advantages[i:i + 1], -5.0, 5.0)
            ratio = torch.exp(log_prob - old_log_probs[:, j])
            unclipped_loss, clipped_loss = -A * ratio, -A * torch.clamp(ratio, 1.0 - 1e-4, 1.0 + 1e-4)
            policy_loss = torch.mean(torch.maximum(unclipped_loss, clipped_loss))
            kl_loss = torch.mean(((prev_sample_mean - prev_sample_mean_ref) ** 2).mean(dim=1, keepdim=True)
                                 / (2 * std_dev_t**2))
            loss = policy_loss + beta * kl_loss
            # accelerator.backward divides by the accumulation steps it was built with: ga * num_train_timesteps
            (loss / (ga * num_train_timesteps)).backward()
            terms[i, T - j] = ratio.detach(), torch.maximum(unclipped_loss, clipped_loss).detach()
        if (b + 1) % ga == 0:
            peer.optimizer_step()

    order = [(i, T - j) for i in perm for j in range(num_train_timesteps)]
    for (ratio, term), key in zip(ours.terms, order, strict=True):
        torch.testing.assert_close(ratio, terms[key][0], **TOL)
        torch.testing.assert_close(term, terms[key][1], **TOL)
    compare_updates(ours, peer, 2)
    assert ours.row["kl"] > 0
    dev, clip = ours.row["update_ratio_dev"], ours.row["update_clip_frac"]
    assert dev[0] < 1e-12 and clip[0] == 0 and dev[1] > 1e-4 and clip[1] > 0
