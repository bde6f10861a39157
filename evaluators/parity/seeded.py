"""Seeded inputs shared by the official environments and LeapBench: random weights by tensor name, the image
set and the prompts. Standalone (numpy, PIL, torch only), so the official environments run it as it is.

A weight depends only on (seed, its official name, its shape): N(0, 1) from numpy's PCG64 seeded with the
SHA-256 of "seed:name", scaled like a trained network so that activations keep unit size through random
layers: 1-D ``*weight`` (norms) 1 + 0.1 N, other 1-D 0.1 N, matrices and kernels N / sqrt(fan_in), scalars
(a CLIP logit scale) ln 100. Integer buffers (position ids) keep the value the model gave them. Optional
``scales`` multiply the weights whose names match a pattern (fnmatch), recorded with the reference.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

LOGIT_SCALE = math.log(100.0)


def rng(seed: int, name: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def tensor(seed: int, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The seeded float32 value of weight ``name`` of ``shape``."""
    if len(shape) == 0:
        return torch.tensor(LOGIT_SCALE, dtype=torch.float32)
    z = rng(seed, name).standard_normal(shape)
    if len(shape) == 1:
        z = 1.0 + 0.1 * z if name.endswith("weight") else 0.1 * z
    else:
        z = z / math.sqrt(math.prod(shape[1:]))
    return torch.from_numpy(z.astype(np.float32))


def scale(name: str, scales: dict[str, float] | None) -> float:
    return math.prod(f for pattern, f in (scales or {}).items() if fnmatch.fnmatchcase(name, pattern))


def fill(state: dict[str, torch.Tensor], seed: int,
         scales: dict[str, float] | None = None) -> tuple[dict[str, torch.Tensor], list[list]]:
    """Seeded values for every floating tensor of ``state`` and the layout [[name, shape, dtype], ...] that
    rebuilds them (``rebuild``); integer tensors are kept and recorded with their values."""
    out, layout = {}, []
    for name, value in state.items():
        if value.is_floating_point():
            out[name] = tensor(seed, name, tuple(value.shape)) * scale(name, scales)
            layout.append([name, list(value.shape), "float32"])
        else:
            out[name] = value.clone()
            layout.append([name, list(value.shape), str(value.dtype).replace("torch.", ""), value.flatten().tolist()])
    return out, layout


def rebuild(layout: list[list], seed: int, scales: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
    """The state dict that ``fill`` made, from its layout."""
    out = {}
    for entry in layout:
        name, shape, dtype = entry[0], tuple(entry[1]), entry[2]
        if dtype == "float32":
            out[name] = tensor(seed, name, shape) * scale(name, scales)
        else:
            out[name] = torch.tensor(entry[3], dtype=getattr(torch, dtype)).view(shape)
    return out


# -- images ----------------------------------------------------------------------------------------------------

# (kind, height, width, seed): sizes the models take natively (224, 448), square generator sizes, odd sizes and
# both orientations of non-square ones; smooth textures, sharp edges (saturated blocks, one-pixel lines, a
# checkerboard: where the 8-bit rounding and the clamp matter most) and uniform noise.
IMAGES = (
    ("smooth", 224, 224, 0), ("edges", 224, 224, 1), ("smooth", 512, 512, 2), ("edges", 512, 512, 3),
    ("noise", 720, 720, 4), ("edges", 1024, 1024, 5), ("smooth", 500, 300, 6), ("edges", 300, 500, 7),
    ("noise", 768, 1360, 8), ("edges", 448, 448, 9), ("smooth", 225, 223, 10), ("edges", 1360, 768, 11),
)

# GenEval's detector resizes every image to fit 1333 x 800 and pads it to multiples of 32: a square one (no
# padding), a wide one (padded on the right), a 20 x 160 strip (its last Swin stage is 6 px high, below the 7 px
# window: padded, not shrunk) and the 1024 px of FLUX's samples (input downscaled, masks upscaled; too large to record).
GENEVAL_IMAGES = (("smooth", 64, 64, 30), ("edges", 48, 80, 31), ("edges", 20, 160, 33), ("smooth", 1024, 1024, 35))

# Random transformer decoders collapse their queries (self-attention averages them): every query then says the
# same class with the same mask, and the top-100 cut falls among near-ties. Unit-size queries, a sharper class
# head and smaller residual branches in the decoder keep them apart (80 queries and 16 classes among the top 100).
GENEVAL_SCALES = {
    "panoptic_head.query_feat.weight": 16.0, "panoptic_head.query_embed.weight": 16.0,
    "panoptic_head.cls_embed.weight": 4.0, "panoptic_head.transformer_decoder.layers.*.out_proj.weight": 0.2,
    "panoptic_head.transformer_decoder.layers.*.ffns.0.layers.1.weight": 0.2,
}

PROMPTS = (
    "a photo of a cat",
    "A RED CAR parked on the street, at night!",
    "an astronaut riding a horse on the moon, highly detailed, 8k, trending on artstation, dramatic lighting, "
    "volumetric fog, cinematic composition, octane render, ultra realistic, sharp focus, intricate details, "
    "golden hour, wide angle lens, bokeh, masterpiece, award winning photograph, hyperrealistic, vivid colours, "
    "by a famous photographer, in the style of a renaissance painting, with a city skyline in the background",
    "two dogs &amp; a cat   sitting\non a sofa",
    "café au lait on a wooden table, naïve style",
    "a bowl of ramen 🍜 with chopsticks",
    "a photo of a bench",
    "a watercolour painting of a lighthouse on a cliff with waves crashing below and seagulls flying above",
    "a photo of three apples and two oranges on a plate",
    "Tokyo street at night, neon signs, rain reflections, people with umbrellas",
    "a photo of a blue clock",
    "an old man reading a newspaper in a park, black and white photograph, 35mm film grain",
)


def image(kind: str, height: int, width: int, seed: int) -> Image.Image:
    """One RGB test image (deterministic in its arguments)."""
    g = np.random.default_rng(seed)
    if kind == "noise":
        array = g.integers(0, 256, (height, width, 3), dtype=np.uint8)
    elif kind == "smooth":
        low = g.random((max(height // 16, 2), max(width // 16, 2), 3))
        small = Image.fromarray((low * 255).round().astype(np.uint8))
        array = np.asarray(small.resize((width, height), Image.Resampling.BILINEAR))
    elif kind == "edges":
        array = np.zeros((height, width, 3), dtype=np.uint8)
        array[:] = g.integers(0, 2, 3) * 255
        for _ in range(12):
            y0, x0 = g.integers(0, height), g.integers(0, width)
            y1, x1 = y0 + g.integers(4, height // 2), x0 + g.integers(4, width // 2)
            array[y0:y1, x0:x1] = g.integers(0, 2, 3) * 255
        for _ in range(6):
            array[g.integers(0, height), :] = 255 - array[g.integers(0, height), :]
            array[:, g.integers(0, width)] = g.integers(0, 256, 3)
        cell = 3
        yy, xx = np.mgrid[:height // 3, :width // 3]
        board = (((yy // cell) + (xx // cell)) % 2 * 255).astype(np.uint8)
        array[-(height // 3):, -(width // 3):] = board[..., None]
    else:
        raise ValueError(f"unknown image kind {kind!r}")
    return Image.fromarray(np.ascontiguousarray(array), "RGB")


def images() -> list[Image.Image]:
    return [image(*spec) for spec in IMAGES]


def image_digest(img: Image.Image) -> str:
    return hashlib.sha256(np.asarray(img).tobytes()).hexdigest()[:16]


# -- tiny architectures (the real ones' structure, small widths) -------------------------------------------------

# open_clip config of the ViT-H-14 family (ViT-H-14.json's keys), registered under this name on both sides.
HPSV2_MODEL = "parity-tiny-ViT-H-14"
HPSV2_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 32, "patch_size": 14},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
# transformers CLIPConfig arguments of PickScore_v1's family (CLIP ViT-H/14 layout, 77 tokens, 224 px).
PICKSCORE_CONFIG = {
    "text_config": {"vocab_size": 49408, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                    "num_attention_heads": 2, "max_position_embeddings": 77, "hidden_act": "gelu",
                    "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 49407},
    "vision_config": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                      "image_size": 224, "patch_size": 14, "hidden_act": "gelu"},
    "projection_dim": 32,
}
# ImageReward: BLIP's VisionTransformer (patch 16 at 224, as create_vit builds it) at a small width; the text
# encoder keeps BERT-base's width 768 because ImageReward's head is MLP(768); one layer.
IMAGEREWARD_VIT = {"patch_size": 16, "embed_dim": 64, "depth": 2, "num_heads": 2}
BERT_WORDS = ["a", "an", "the", "of", "on", "in", "and", "with", "at", "by", "to", "for", "is", "photo", "cat", "dog", "car", "red", "blue", "green", "white", "black", "two", "three", "sitting", "table", "street", "night", "parked", "sofa", "astronaut", "riding", "horse", "moon", "detailed", "lighting", "style", "city", "painting", "old", "man", "park", "bowl", "plate", "clock", "bench", "tokyo", "rain", "people", "café", "au", "lait", "wooden", "naïve"]


def imagereward_med_config(vocab_size: int) -> dict:
    """ImageReward's med_config.json (BERT-base with cross-attention) with one layer and our vocabulary."""
    return {"architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 256,
            "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "model_type": "bert",
            "num_attention_heads": 12, "num_hidden_layers": 1, "pad_token_id": 0, "type_vocab_size": 2,
            "vocab_size": vocab_size, "encoder_width": 64, "add_cross_attention": True}


def bert_vocab() -> list[str]:
    """A bert-base-uncased-style WordPiece vocabulary: [PAD], [unused0], [UNK], [CLS], [SEP], [MASK], words,
    characters and ## characters (every prompt tokenizes; most words split into pieces)."""
    chars = "abcdefghijklmnopqrstuvwxyz0123456789"
    punctuation = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    return ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *BERT_WORDS, *chars, *punctuation,
            *[f"##{c}" for c in chars]]


# Qwen2-VL: byte-level BPE over the 256 byte symbols (no merges), Qwen2-VL's special tokens and chat template.
QWEN2VL_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                   "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
QWEN2VL_CHAT_TEMPLATE = (  # Qwen/Qwen2-VL-7B-Instruct's chat_template.json
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
QWEN2VL_TEXT = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2, "max_position_embeddings": 4096, "rope_theta": 10000.0,
                "mrope_section": [2, 3, 3], "rms_norm_eps": 1e-6}
QWEN2VL_VISION = {"depth": 2, "embed_dim": 32, "hidden_size": 64, "num_heads": 2, "mlp_ratio": 2, "patch_size": 14,
                  "spatial_merge_size": 2, "temporal_patch_size": 2, "in_chans": 3}
QWEN2VL_PREPROCESSOR = {  # Qwen/Qwen2-VL-7B-Instruct's preprocessor_config.json
    "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
    "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2VLProcessor",
}


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (the alphabet of byte-level BPE)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def write_qwen2vl_tokenizer(out) -> int:
    """vocab.json, merges.txt, tokenizer_config.json (special tokens, chat template), chat_template.json and
    preprocessor_config.json of a tiny Qwen2-VL in ``out``; returns the vocabulary size with the specials."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    alphabet = list(bytes_to_unicode().values())
    (out / "vocab.json").write_text(json.dumps({c: i for i, c in enumerate(alphabet)}))
    (out / "merges.txt").write_text("#version: 0.2\n")
    added = {str(len(alphabet) + i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                      "single_word": False, "special": True} for i, t in enumerate(QWEN2VL_SPECIAL)}
    config = {"added_tokens_decoder": added, "additional_special_tokens": list(QWEN2VL_SPECIAL[1:]),
              "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "unk_token": None,
              "clean_up_tokenization_spaces": False, "errors": "replace", "model_max_length": 32768,
              "split_special_tokens": False, "tokenizer_class": "Qwen2Tokenizer", "padding_side": "left",
              "chat_template": QWEN2VL_CHAT_TEMPLATE}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
    (out / "chat_template.json").write_text(json.dumps({"chat_template": QWEN2VL_CHAT_TEMPLATE}))
    (out / "preprocessor_config.json").write_text(json.dumps(QWEN2VL_PREPROCESSOR, indent=1))
    return len(alphabet) + len(QWEN2VL_SPECIAL)


def qwen2vl_config(vocab_size: int) -> dict:
    """Qwen2VLConfig arguments in transformers 4.45's flat layout (ids: the specials after the 256 bytes)."""
    ids = {t: 256 + i for i, t in enumerate(QWEN2VL_SPECIAL)}
    text = {k: v for k, v in QWEN2VL_TEXT.items() if k != "mrope_section"}
    return {"vocab_size": vocab_size, **text, "rope_scaling": {"type": "mrope", "mrope_section": QWEN2VL_TEXT["mrope_section"]},
            "vision_config": QWEN2VL_VISION, "image_token_id": ids["<|image_pad|>"],
            "video_token_id": ids["<|video_pad|>"], "vision_start_token_id": ids["<|vision_start|>"],
            "vision_end_token_id": ids["<|vision_end|>"], "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"], "tie_word_embeddings": False}
