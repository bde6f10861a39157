"""Key mapping between the original ImageReward checkpoint (BLIP names) and our transformers modules.

Original (THUDM/ImageReward, ``ImageReward.pt``): BLIP's timm-style ViT under ``blip.visual_encoder.*``, BLIP's
med.py BERT under ``blip.text_encoder.*`` and the head under ``mlp.layers.*``. Ours: ``vision.*``
(transformers ``BlipVisionModel``), ``text.*`` (``BlipTextModel``, which keeps med.py's names) and
``mlp.layers.*``. The ViT's fused ``attn.qkv`` maps onto ``BlipAttention.qkv``, fused in the same
(3, heads, head_dim) order, so no tensor is split or permuted. Every key must match a rule or be listed in
``UNUSED``; the strict ``load_state_dict`` afterwards catches anything missing or misnamed.
"""

from __future__ import annotations

import re

from torch import Tensor

# (original prefix, our prefix); "{n}" is a block index; a prefix without a trailing dot is a whole key.
PREFIXES: tuple[tuple[str, str], ...] = (
    ("blip.visual_encoder.cls_token", "vision.embeddings.class_embedding"),
    ("blip.visual_encoder.pos_embed", "vision.embeddings.position_embedding"),
    ("blip.visual_encoder.patch_embed.proj.", "vision.embeddings.patch_embedding."),
    ("blip.visual_encoder.blocks.{n}.norm1.", "vision.encoder.layers.{n}.layer_norm1."),
    ("blip.visual_encoder.blocks.{n}.attn.qkv.", "vision.encoder.layers.{n}.self_attn.qkv."),
    ("blip.visual_encoder.blocks.{n}.attn.proj.", "vision.encoder.layers.{n}.self_attn.projection."),
    ("blip.visual_encoder.blocks.{n}.norm2.", "vision.encoder.layers.{n}.layer_norm2."),
    ("blip.visual_encoder.blocks.{n}.mlp.", "vision.encoder.layers.{n}.mlp."),
    ("blip.visual_encoder.norm.", "vision.post_layernorm."),
    ("blip.text_encoder.", "text."),
    ("mlp.layers.", "mlp.layers."),
)

# In the checkpoint but not used by the score: BLIP's contrastive projections and med.py's position_ids buffer.
UNUSED = ("blip.vision_proj.", "blip.text_proj.", "blip.text_encoder.embeddings.position_ids")


def original_to_ours(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename an original ImageReward state dict to ours, dropping ``UNUSED``; KeyError on unknown keys."""
    kept = {k: v for k, v in state.items() if not k.startswith(UNUSED)}
    return _rename(kept, PREFIXES)


def ours_to_original(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Our state dict under the original names (to write checkpoints in the original format)."""
    return _rename(state, tuple((ours, original) for original, ours in PREFIXES))


def _rename(state: dict[str, Tensor], table: tuple[tuple[str, str], ...]) -> dict[str, Tensor]:
    rules = []
    for src, dst in table:
        pattern = re.escape(src).replace(re.escape("{n}"), r"(?P<n>\d+)")
        rules.append((re.compile(pattern + ("(?P<rest>.+)" if src.endswith(".") else "")), dst))
    out, unknown = {}, []
    for key, value in state.items():
        for pattern, dst in rules:
            if match := pattern.fullmatch(key):
                groups = match.groupdict()
                out[dst.format(n=groups.get("n")) + (groups.get("rest") or "")] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise KeyError(f"{len(unknown)} ImageReward keys match no mapping rule, e.g. {unknown[:5]}")
    return out
