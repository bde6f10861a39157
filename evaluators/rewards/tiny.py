"""Tiny randomly initialised rewards of the real architectures, built offline (for tests and smoke runs).

Each keeps the real preprocessing (224 or 448 pixel inputs, the same tokenizers' rules) and shrinks only the
widths and depths, so a forward + backward takes milliseconds to a second on a CPU.
"""

from __future__ import annotations

import json
import tempfile
from functools import lru_cache
from pathlib import Path

import open_clip
import torch
from open_clip.tokenizer import bytes_to_unicode
from tokenizers import AddedToken
from transformers import BertTokenizer, CLIPConfig, CLIPTokenizer, Qwen2Tokenizer, Qwen2VLConfig

from benchmark.core.testing import clip_bpe
from evaluators.rewards.base import Reward
from evaluators.rewards.hpsv2 import HPSv2
from evaluators.rewards.hpsv3 import HPSv3
from evaluators.rewards.imagereward import ImageReward, text_config, vision_config
from evaluators.rewards.pickscore import PickScore

TINY_OPEN_CLIP = "leapbench-tiny-ViT-H-14"
QWEN2VL_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                   "<|image_pad|>", "<|video_pad|>")
# The chat template shipped with Qwen/Qwen2-VL-7B-Instruct.
QWEN2VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
    "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content "
    "%}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)


def register_tiny_open_clip() -> str:
    """Register a 1-layer, width-32 open_clip CLIP (ViT-H-14 family, 224 px, real 49408-token vocabulary)."""
    config = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 224, "layers": 1, "width": 32, "head_width": 16, "patch_size": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    if TINY_OPEN_CLIP not in open_clip.list_models():  # once per process
        # a folder of this process's own (open_clip reads it at once): ranks register at the same time, and a
        # shared file rewritten by one while another reads it was read empty
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"{TINY_OPEN_CLIP}.json"
            path.write_text(json.dumps(config))
            open_clip.add_model_config(path)
    return TINY_OPEN_CLIP


@lru_cache(maxsize=1)
def clip_tokenizer() -> CLIPTokenizer:
    """CLIP's tokenizer (49408 ids, same as open_clip's), built from open_clip's BPE file; cached (immutable use)."""
    vocab, merges = clip_bpe()
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=77)


def bert_tokenizer() -> BertTokenizer:
    """A bert-base-uncased-style WordPiece tokenizer over a few dozen words (ids 0..4 are the specials)."""
    words = "a an the of and photo cat dog red blue green on in with sitting table tree car man woman".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *[f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"],
             *"abcdefghijklmnopqrstuvwxyz,.!?"]
    return BertTokenizer(vocab={t: i for i, t in enumerate(vocab)})


def qwen2vl_tokenizer(with_reward_token: bool = True) -> Qwen2Tokenizer:
    """A byte-level BPE tokenizer with no merges, Qwen2-VL's special tokens and chat template, then <|Reward|>
    (added last, as HPSv3 adds it to Qwen2-VL's tokenizer)."""
    alphabet = list(bytes_to_unicode().values())
    tokenizer = Qwen2Tokenizer(vocab={c: i for i, c in enumerate(alphabet)}, merges=[])
    tokenizer.add_tokens([AddedToken(t, special=True) for t in QWEN2VL_SPECIAL], special_tokens=True)
    if with_reward_token:
        tokenizer.add_tokens([AddedToken("<|Reward|>", special=True)], special_tokens=True)
    tokenizer.chat_template = QWEN2VL_CHAT_TEMPLATE
    return tokenizer


def tiny_qwen2vl_config(tokenizer: Qwen2Tokenizer) -> Qwen2VLConfig:
    ids = tokenizer.convert_tokens_to_ids
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2]},
                pad_token_id=ids("<|endoftext|>"), bos_token_id=None, eos_token_id=None)
    vision = dict(depth=1, embed_dim=16, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=14,
                  spatial_merge_size=2, temporal_patch_size=2)
    return Qwen2VLConfig(text_config=text, vision_config=vision, image_token_id=ids("<|image_pad|>"),
                         video_token_id=ids("<|video_pad|>"), vision_start_token_id=ids("<|vision_start|>"),
                         vision_end_token_id=ids("<|vision_end|>"))


def tiny_reward(name: str, seed: int = 0) -> Reward:
    """A tiny random ``hpsv2``, ``pickscore``, ``imagereward`` or ``hpsv3`` (same code path as the real one)."""
    torch.manual_seed(seed)
    if name == "hpsv2":
        return HPSv2.from_config(register_tiny_open_clip())
    if name == "pickscore":
        config = CLIPConfig(
            text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                             num_attention_heads=2, max_position_embeddings=77),
            vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                               image_size=224, patch_size=32),
            projection_dim=16, logit_scale_init_value=4.6052,
        )
        return PickScore.from_config(config, clip_tokenizer())
    if name == "imagereward":
        tokenizer = bert_tokenizer()
        vision = vision_config(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                               patch_size=32, initializer_range=0.02)
        text = text_config(32, vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                           bos_token_id=None, sep_token_id=None, eos_token_id=None)
        return ImageReward.from_config(vision, text, tokenizer)
    if name == "hpsv3":
        tokenizer = qwen2vl_tokenizer()
        return HPSv3.from_config(tiny_qwen2vl_config(tokenizer), tokenizer, head_hidden=(16, 8))
    raise ValueError(f"no tiny version of reward {name!r}")
