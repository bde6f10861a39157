"""Tiny fixtures for tests and CPU demos: a frozen conv reward, a random embedding cache, a tiny run config,
and a tiny FluxPipeline with real (tiny) CLIP-L and T5 text encoders and local tokenizers. Nothing downloads.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from benchmark.core.backbones.tiny import POOLED_DIM, TEXT_DIM
from benchmark.core.cache import write_cache
from benchmark.training.config import RunConfig, apply_override, config_from_dict

PROMPTS = [f"a photo of {n} {c} {o}" for n, c, o in zip(
    ["a", "two", "three", "a", "four", "a", "two", "a"],
    ["red", "blue", "green", "black", "white", "pink", "brown", "purple"],
    ["cat", "dogs", "cups", "car", "birds", "vase", "clocks", "bench"],
)]


@contextlib.contextmanager
def single_thread():
    """Run tiny models on one intra-op thread: they gain nothing from more, and on a busy machine
    OpenMP threads spinning against other processes slow a step from milliseconds to seconds."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class TinyReward(nn.Module):
    """A frozen random conv net scoring images in [0, 1]: smooth, differentiable, prompt-independent."""

    name = "tiny_conv"
    differentiable = True

    def __init__(self, seed: int = 0, channels: int = 8):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.net = nn.Sequential(
            nn.Conv2d(3, channels, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.SiLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 1),
        )
        for p in self.net.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.5
        self.requires_grad_(False).eval()

    def forward(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        assert images.ndim == 4 and images.shape[1] == 3 and len(prompts) == len(images)
        return self.net(images.float()).squeeze(1)


class FaultyReward(nn.Module):
    """Wraps a reward and returns NaN during the steps in ``nan_steps`` ("all" for every step).

    The loop calls ``on_step`` after each step; pass ``faulty.on_step`` to ``train`` to keep ``step`` current.
    """

    name = "faulty"
    differentiable = True

    def __init__(self, reward: nn.Module, nan_steps: set[int] | str):
        super().__init__()
        self.reward, self.nan_steps, self.step = reward, nan_steps, 1

    def on_step(self, step: int, metrics: dict) -> None:
        self.step = step + 1

    def forward(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        r = self.reward(images, prompts)
        if self.nan_steps == "all" or self.step in self.nan_steps:
            return r * float("nan")
        return r


def fake_encoder(backbone: str, seq_len: int = 8):
    """Deterministic random embeddings per prompt, shaped like the tiny backbones' text inputs."""

    def encode(prompts: list[str]) -> dict[str, Tensor]:
        rows = []
        for p in prompts:
            g = torch.Generator().manual_seed(int(hashlib.sha1(p.encode()).hexdigest()[:8], 16))
            if backbone == "toy":
                rows.append({"cond": torch.randn(4, generator=g)})
            else:
                rows.append({"prompt_embeds": torch.randn(seq_len, TEXT_DIM, generator=g),
                             "pooled_prompt_embeds": torch.randn(POOLED_DIM, generator=g)})
        return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}

    return encode


def tiny_cache(root: str | Path, backbone: str = "flux", prompts: Sequence[str] = PROMPTS) -> Path:
    write_cache(root, prompts, fake_encoder(backbone), backbone, batch_size=4, shard_size=4)
    return Path(root)


# method settings that fit 4 sampling steps; LeapAlign's hinge threshold above any tiny reward (always active)
TINY_METHODS = {"refl": {"m": 3}, "drtune": {"m": 3, "K": 2}, "draft_lv": {"n": 1}, "leapalign": {"lam": 100.0},
                "full_backprop": {}}


def tiny_tree(tmp: str | Path, backbone: str = "flux", method: str = "leapalign", cache: bool = True) -> dict:
    """A nested config mapping for a tiny CPU run (float32, 32 x 32, 4 sampling steps, 4 iterations)."""
    tmp = Path(tmp)
    cache_dir = tmp / f"cache-{backbone}"
    if cache and not (cache_dir / "index.json").exists():
        tiny_cache(cache_dir, backbone)
    return {
        "run_dir": str(tmp / "run"),
        "seed": 0,
        "backbone": {"name": backbone, "tiny": True, "height": 32, "width": 32, "dtype": "float32"},
        "method": {"name": method, **TINY_METHODS.get(method, {})},
        "reward": {"name": "tiny_conv"},
        "prompts": {"cache": str(cache_dir)},
        "optim": {"lr": 1e-3, "weight_decay": 1e-4, "grad_clip": 1.0, "ema_decay": 0.9},
        "schedule": {"num_steps": 4, "iterations": 4, "global_batch": 4, "micro_batch": 2},
        "train": {"gradient_checkpointing": True, "autocast": False},
        "checkpoint": {"every": 2, "keep": 2},
        "logging": {"progress": False, "tensorboard": False, "grad_parts_every": 1},
    }


def tiny_config(tmp: str | Path, backbone: str = "flux", method: str = "leapalign", overrides: Sequence[str] = (),
                **kwargs: Any) -> RunConfig:
    tree = tiny_tree(tmp, backbone, method, **kwargs)
    for text in overrides:
        apply_override(tree, text)
    return config_from_dict(tree)


# -- a tiny FluxPipeline with real text encoders ----------------------------------------------------------


def clip_tokenizer_files(out: Path) -> tuple[Path, Path]:
    """HF CLIP vocab.json / merges.txt derived from open_clip's BPE file (the ids match open_clip's)."""
    import gzip

    import open_clip.tokenizer as oct

    merges = gzip.open(oct.default_bpe()).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    merges = [tuple(m.split()) for m in merges]
    vocab = list(oct.bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return out / "vocab.json", out / "merges.txt"


def tiny_t5_tokenizer(corpus: Sequence[str] = PROMPTS):
    """A tiny Unigram tokenizer trained on ``corpus`` and wrapped as T5TokenizerFast (pad 0, eos 1, unk 2)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import T5TokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=120, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>")
    tok.train_from_iterator(list(corpus) * 4, trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return T5TokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                           extra_ids=0, model_max_length=512)


def tiny_flux_pipeline(tmp: str | Path, seed: int = 0):
    """A FluxPipeline of tiny random parts (transformer, VAE, CLIP-L, T5) that runs offline."""
    from diffusers import FluxPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel

    from benchmark.core.backbones.tiny import tiny_flux

    tmp = Path(tmp)
    vocab, merges = clip_tokenizer_files(tmp / "clip-tokenizer")
    clip_tok = CLIPTokenizer(str(vocab), str(merges), model_max_length=77)
    t5_tok = tiny_t5_tokenizer()
    torch.manual_seed(seed)
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=len(clip_tok), hidden_size=POOLED_DIM, intermediate_size=64,
                                        num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77,
                                        eos_token_id=clip_tok.eos_token_id, bos_token_id=clip_tok.bos_token_id,
                                        pad_token_id=clip_tok.pad_token_id))
    t5 = T5EncoderModel(T5Config(vocab_size=len(t5_tok), d_model=TEXT_DIM, d_kv=8, d_ff=64, num_layers=1,
                                 num_heads=2, pad_token_id=0, eos_token_id=1))
    backbone = tiny_flux(height=32, width=32, seed=seed)
    return FluxPipeline(scheduler=backbone.scheduler, vae=backbone.vae, text_encoder=clip.eval(), tokenizer=clip_tok,
                        text_encoder_2=t5.eval(), tokenizer_2=t5_tok, transformer=backbone.transformer)
