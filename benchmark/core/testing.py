"""Tiny fixtures for tests and CPU demos: prompts, a random embedding cache, CLIP's tokenizer built offline and a
tiny FluxPipeline with real (tiny) CLIP-L and T5 text encoders and local tokenizers. Nothing downloads.
(Run-level fixtures, a tiny run config and frozen rewards for training, are in ``benchmark.training.testing``.)
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import torch
from diffusers import FluxPipeline
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from torch import Tensor
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5TokenizerFast

from benchmark.core.backbones.tiny import POOLED_DIM, TEXT_DIM, tiny_flux
from benchmark.core.cache import write_cache

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


# -- a tiny FluxPipeline with real text encoders ----------------------------------------------------------


@lru_cache(maxsize=1)
def clip_bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """HF CLIP vocab and merges derived from open_clip's BPE file (the ids match open_clip's tokenizer)."""
    import open_clip.tokenizer as oct  # heavy (about 3 s); only tests that build tiny text encoders need it

    lines = gzip.open(oct.default_bpe()).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    merges = [tuple(line.split()) for line in lines]
    alphabet = list(oct.bytes_to_unicode().values())
    tokens = alphabet + [t + "</w>" for t in alphabet] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def clip_tokenizer_files(out: Path) -> tuple[Path, Path]:
    """HF CLIP vocab.json / merges.txt of ``clip_bpe`` written to ``out``."""
    vocab, merges = clip_bpe()
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return out / "vocab.json", out / "merges.txt"


def tiny_t5_tokenizer(corpus: Sequence[str] = PROMPTS):
    """A tiny Unigram tokenizer trained on ``corpus`` and wrapped as T5TokenizerFast (pad 0, eos 1, unk 2)."""
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
