"""The GRPO peers' FLUX.1-dev recipes as ``method.preset`` values: each peer's published training script, transcribed.

A preset is a run-config layer expanded where ``method.preset`` is written (``training.config.merge_layers``,
``sweeps.spec.over``): it sets the method fields below and the run settings its script uses (steps, batch,
learning rate, LoRA ...) over what came before; every value written beside the preset, or in a later layer, wins.
Batches are the scripts' global ones (GPUs x samples per GPU): on as many GPUs each rank holds what the peer's
does, and which samples share an optimiser step is the peer's. Not reproduced: Flow-GRPO's EMA (decay
min((1 + n) / (10 + n), 0.9) every 8th step; LeapBench's ``optim.ema_decay`` applies), its sample-level shuffle
(micro-batches are shuffled; the same with ``schedule.micro_batch=1``) and its model time fl(fl(1000 sigma) / 1000)
(one float32 ulp from sigma); MixGRPO's truncated windows past start T - 2 - 4 before it rolls back (its 300
rollouts reach start 11); the bf16 noise of DanceGRPO and MixGRPO.
Sources (repository, file, what it sets):

dancegrpo  XueZeyue/DanceGRPO @15cc71d. scripts/finetune/finetune_flux_grpo.sh (16 GPUs): --num_generations 12,
           --eta 0.3, --sampling_steps 16, --shift 3, --timestep_fraction 0.6, --ignore_last, --init_same_noise,
           --clip_range 1e-4, --adv_clip_max 5.0, --learning_rate 1e-5, --weight_decay 0.0001,
           --max_grad_norm 1.0, --gradient_accumulation_steps 4, --train_batch_size 1, --max_train_steps 300,
           --h 720 --w 720, no --use_ema, full fine-tuning (FSDP). fastvideo/train_grpo_flux.py: flux_step
           (g = eta), run_sample_step (timestep int(1000 sigma) / 1000; reward on the last step's x0 prediction),
           train_one_step (the last step dropped, a permutation of the steps per sample, group std + 1e-8,
           an optimiser step every 4 of the rank's 12 samples: 3 per rollout).
mixgrpo    Tencent-Hunyuan/MixGRPO @e5cdd6a. scripts/finetune/finetune_flux_grpo_MixGRPO.sh (4 nodes x 8 GPUs):
           --num_generations 12, --eta 0.7, --sampling_steps 25, --shift 3, --flow_grpo_sampling,
           --init_same_noise, --training_strategy part, --group_size 4, --iters_per_group 25,
           --sample_strategy progressive, --prog_overlap_step 1, --roll_back, --multi_reward_mix
           advantage_aggr, --kl_coeff 0.0, --clip_range 1e-4, --adv_clip_max 5.0, --learning_rate 1e-5,
           --weight_decay 0.0001, --max_grad_norm 1.0, --gradient_accumulation_steps 3, --max_train_steps 300.
           fastvideo/utils/grpo_states.py (max_timesteps = sampling_steps - 2: the last two steps never train),
           fastvideo/utils/sampling_utils.py (flow_grpo_step; ODE steps outside the window; the sampled x0 is
           scored), fastvideo/train_grpo_flux.py (4 optimiser steps per rollout of 12 samples per rank).
flowgrpo   yifan123/flow_grpo (config/grpo.py @31c71b9, config/base.py @54809b5, scripts/train_flux.py @74db691,
           flow_grpo/stat_tracking.py @94e23ee). config/grpo.py pickscore_flux (32 GPUs): num_steps 6, resolution 512,
           guidance 3.5, num_image_per_prompt 24, train_batch_size 3, num_batches_per_epoch 12,
           gradient_accumulation_steps 6 (2 optimiser steps per epoch), num_inner_epochs 1,
           timestep_fraction 0.99, beta 0, global_std True, same_latent False, noise_level 0.9; config/base.py:
           learning_rate 3e-4, adam_weight_decay 1e-4, max_grad_norm 1.0, clip_range 1e-4, adv_clip_max 5;
           scripts/train_flux.py: LoRA r 64 / alpha 128 on the twelve attention and MLP projections, the first
           int(0.99 T) steps trained, samples shuffled per inner epoch, KL / (2 std_dev_t^2) without the step;
           flow_grpo/stat_tracking.py: (r - mean of the prompt's group) / (np.std of all rewards + 1e-4).
"""

from __future__ import annotations

FLUX_LORA_TARGETS = [  # flow_grpo scripts/train_flux.py: target_modules
    "attn.to_k", "attn.to_q", "attn.to_v", "attn.to_out.0", "attn.add_k_proj", "attn.add_q_proj", "attn.add_v_proj",
    "attn.to_add_out", "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2",
]

PRESETS: dict[str, dict] = {
    "dancegrpo": {
        "method": {
            "group_size": 12, "eta": 0.3, "diffusion": "constant", "shared_noise": True,
            "train_steps": "per_sample", "train_fraction": 0.6, "exclude_last": 1,
            "clip_range": 1.0e-4, "adv_clip": 5.0, "epochs": 1, "minibatches": 3, "shuffle": False,
            "schedule_shift": 3.0, "timestep_levels": 1000, "reward_on": "prediction",
            "advantage": "reward", "advantage_std": "group", "kl_weight": 0.0, "kl_form": "exact", "window": None,
        },
        "optim": {"lr": 1.0e-5, "weight_decay": 1.0e-4, "grad_clip": 1.0, "ema_decay": 0.0, "betas": [0.9, 0.999],
                  "eps": 1.0e-8},
        "schedule": {"num_steps": 16, "iterations": 300, "global_batch": 192, "micro_batch": 1},
        "train": {"lora": {"rank": 0}},
        "backbone": {"height": 720, "width": 720, "guidance": 3.5},
    },
    "mixgrpo": {
        "method": {
            "group_size": 12, "eta": 0.7, "diffusion": "scaled", "shared_noise": True,
            "train_steps": "first", "train_fraction": 1.0, "exclude_last": 2,
            "window": {"size": 4, "shift_every": 25, "stride": 1, "roll_back": True},
            "clip_range": 1.0e-4, "adv_clip": 5.0, "epochs": 1, "minibatches": 4, "shuffle": False,
            "schedule_shift": 3.0, "timestep_levels": 1000, "reward_on": "sample",
            "advantage": "per_reward", "advantage_std": "group", "kl_weight": 0.0, "kl_form": "exact",
        },
        "optim": {"lr": 1.0e-5, "weight_decay": 1.0e-4, "grad_clip": 1.0, "ema_decay": 0.0, "betas": [0.9, 0.999],
                  "eps": 1.0e-8},
        "schedule": {"num_steps": 25, "iterations": 300, "global_batch": 384, "micro_batch": 1},
        "train": {"lora": {"rank": 0}},
        "backbone": {"height": 720, "width": 720, "guidance": 3.5},
    },
    "flowgrpo": {
        "method": {
            "group_size": 24, "eta": 0.9, "diffusion": "scaled", "shared_noise": False,
            "train_steps": "first", "train_fraction": 0.99, "exclude_last": 0,
            "clip_range": 1.0e-4, "adv_clip": 5.0, "epochs": 1, "minibatches": 2, "shuffle": True,
            "schedule_shift": None, "timestep_levels": 0, "reward_on": "sample",
            "advantage": "reward", "advantage_std": "global", "kl_weight": 0.0, "kl_form": "flow_grpo", "window": None,
        },
        "optim": {"lr": 3.0e-4, "weight_decay": 1.0e-4, "grad_clip": 1.0, "betas": [0.9, 0.999], "eps": 1.0e-8},
        "schedule": {"num_steps": 6, "global_batch": 1152, "micro_batch": 3},
        "train": {"lora": {"rank": 64, "alpha": 128.0, "targets": FLUX_LORA_TARGETS}},
        "backbone": {"height": 512, "width": 512, "guidance": 3.5},
    },
}
