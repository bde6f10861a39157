"""GenEval's detector checkpoint in transformers: mmdet's Mask2Former (Swin backbone) state dict mapped onto
``Mask2FormerForUniversalSegmentation`` by a key map LeapBench owns.

GenEval (evaluation/download_models.sh) downloads mmdet 2.x's
``mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco_20220504_001756-743b7d99.pth``. Its names are mmdet 2.x's
modules: ``backbone.*`` (mmdet/models/backbones/swin.py), ``panoptic_head.pixel_decoder.*``
(mmdet/models/plugins/msdeformattn_pixel_decoder.py) and ``panoptic_head.*`` (mmdet/models/dense_heads/
mask2former_head.py), whose transformer layers are mmcv 1.x ``BaseTransformerLayer``s: ``attentions.{i}``,
``norms.{i}``, ``ffns.0`` in ``operation_order`` (decoder: cross_attn, norm, self_attn, norm, ffn, norm; pixel
decoder: self_attn, norm, ffn, norm). mmdet 3.x's copy of the same weights (the v3.0 download) names those
layers ``cross_attn``/``self_attn``/``ffn``; ``read_checkpoint`` accepts both.

Three entries change layout on the way (everything else is copied):
- Swin's fused ``qkv`` (rows q, k, v: mmdet WindowMSA.forward reshapes to (B, N, 3, heads, d)) and the decoder
  self-attention's ``in_proj`` (nn.MultiheadAttention: q, k, v) split into q/k/v projections;
- Swin's patch merging: mmdet's PatchMerging uses nn.Unfold, whose channels are c * 4 + (2 * row + col), while
  transformers' SwinPatchMerging concatenates the 2 x 2 neighbours as (row, col) = (0,0), (1,0), (0,1), (1,1):
  the inverse of mmdet's correct_unfold_reduction_order / correct_unfold_norm_order (mmdet/models/backbones/
  swin.py's swin_converter), permutation [0, 2, 1, 3].
The architecture (depths, widths, heads, window, queries, layers) is read off the tensor shapes; the attention
head count of the pixel decoder and the transformer decoder (8), the deformable attention's levels (3) and
points (4) are Mask2Former's config values (configs/mask2former/mask2former_r50_lsj_8x2_50e_coco.py).
"""

from __future__ import annotations

import math
import os
import pickle
import re
from pathlib import Path

import torch
from torch import Tensor
from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig

from benchmark.core.errors import ConfigError
from evaluators.geneval.vocab import CLASSES

FIELD = "geneval.detector"
HEADS, LEVELS, POINTS = 8, 3, 4
UNFOLD = [0, 2, 1, 3]  # transformers' neighbour g is mmdet's unfold position UNFOLD[g]
SWIN, PIXEL = "model.pixel_level_module.encoder.", "model.pixel_level_module.decoder."
DECODER = "model.transformer_module."
# transformers parameters no mmdet weight feeds: SwinModel's final norm (the backbone returns the stage outputs
# through hidden_states_norms instead) and the training loss's class weights.
UNUSED = (SWIN + "swin.layernorm.weight", SWIN + "swin.layernorm.bias", "criterion.empty_weight")
# mmdet 3.x names of the transformer layers -> mmdet 2.x names (the checkpoint GenEval downloads)
MMDET3 = (
    (re.compile(r"(transformer_decoder\.layers\.\d+\.)cross_attn\."), r"\1attentions.0."),
    (re.compile(r"(transformer_decoder\.layers\.\d+\.)self_attn\."), r"\1attentions.1."),
    (re.compile(r"(pixel_decoder\.encoder\.layers\.\d+\.)self_attn\."), r"\1attentions.0."),
    (re.compile(r"(\.layers\.\d+\.)ffn\."), r"\1ffns.0."),
)


def from_mmdet3(name: str) -> str:
    for pattern, replacement in MMDET3:
        name = pattern.sub(replacement, name)
    return name


def read_checkpoint(path: str | os.PathLike) -> dict[str, Tensor]:
    """The checkpoint's ``state_dict`` under mmdet 2.x names (CPU tensors)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(FIELD, "GenEval's mmdet checkpoint file (mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.pth)",
                          str(path))
    try:
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:  # mmdet's "meta" may hold Python objects beyond tensors (as mmengine loads it)
            checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ConfigError(FIELD, f"a torch checkpoint ({type(err).__name__}: {err})", str(path)) from None
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or "backbone.patch_embed.projection.weight" not in state:
        raise ConfigError(FIELD, "an mmdet Mask2Former checkpoint with a Swin backbone (backbone.patch_embed...)",
                          str(path))
    return {from_mmdet3(k): v for k, v in state.items()}


def _count(state: dict, pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m.group(1) for k in state if (m := regex.match(k))})


def architecture(state: dict[str, Tensor]) -> Mask2FormerConfig:
    """The transformers config of the checkpoint's model, from its tensor shapes (see the module docstring)."""
    def shape(name):
        if name not in state:
            raise ConfigError(FIELD, f"an mmdet Mask2Former Swin checkpoint (no {name})", sorted(state)[:5])
        return tuple(state[name].shape)

    embed_dim, _, patch, _ = shape("backbone.patch_embed.projection.weight")
    stages = _count(state, r"backbone\.stages\.(\d+)\.")
    depths = [_count(state, rf"backbone\.stages\.{s}\.blocks\.(\d+)\.") for s in range(stages)]
    heads = [shape(f"backbone.stages.{s}.blocks.0.attn.w_msa.relative_position_bias_table")[1] for s in range(stages)]
    window = (math.isqrt(shape("backbone.stages.0.blocks.0.attn.w_msa.relative_position_bias_table")[0]) + 1) // 2
    mlp = shape("backbone.stages.0.blocks.0.ffn.layers.0.0.weight")[0] / embed_dim
    queries, hidden = shape("panoptic_head.query_feat.weight")
    labels = shape("panoptic_head.cls_embed.weight")[0] - 1
    if labels != len(CLASSES):
        raise ConfigError(FIELD, f"a COCO detector ({len(CLASSES)} classes + no-object)", labels)
    offsets = shape("panoptic_head.pixel_decoder.encoder.layers.0.attentions.0.sampling_offsets.weight")[0]
    if offsets != HEADS * LEVELS * POINTS * 2 or stages != 4:
        raise ConfigError(FIELD, f"Mask2Former's {HEADS} heads x {LEVELS} levels x {POINTS} points over 4 Swin stages",
                          {"sampling offsets": offsets, "stages": stages})
    swin = SwinConfig(embed_dim=embed_dim, patch_size=patch, depths=depths, num_heads=heads, window_size=window,
                      mlp_ratio=mlp, qkv_bias="backbone.stages.0.blocks.0.attn.w_msa.qkv.bias" in state,
                      drop_path_rate=0.0, out_features=["stage1", "stage2", "stage3", "stage4"])
    return Mask2FormerConfig(
        backbone_config=swin, use_pretrained_backbone=False, num_queries=queries, hidden_dim=hidden,
        feature_size=shape("panoptic_head.pixel_decoder.input_convs.0.conv.weight")[0],
        mask_feature_size=shape("panoptic_head.pixel_decoder.mask_feature.weight")[0],
        encoder_layers=_count(state, r"panoptic_head\.pixel_decoder\.encoder\.layers\.(\d+)\."),
        encoder_feedforward_dim=shape("panoptic_head.pixel_decoder.encoder.layers.0.ffns.0.layers.0.0.weight")[0],
        decoder_layers=_count(state, r"panoptic_head\.transformer_decoder\.layers\.(\d+)\.") + 1,
        dim_feedforward=shape("panoptic_head.transformer_decoder.layers.0.ffns.0.layers.0.0.weight")[0],
        num_attention_heads=HEADS, common_stride=4, feature_strides=[4, 8, 16, 32], pre_norm=False,
        enforce_input_projection=False, id2label=dict(enumerate(CLASSES)),
        label2id={c: i for i, c in enumerate(CLASSES)},
    )


def key_map(config: Mask2FormerConfig) -> list[tuple[str, str, str]]:
    """(mmdet 2.x name, transformers name, op) for every weight; op is "copy", "q"/"k"/"v" (a third of a fused
    projection's rows) or "unfold" (patch merging's input channels reordered)."""
    pairs = []

    def add(src, dst, op="copy", params=("weight", "bias")):
        pairs.extend((f"{src}.{p}", f"{dst}.{p}", op) for p in params)

    def qkv(src, dst):  # rows q, k, v of a fused projection (src = its weight and bias) -> dst{q,k,v}_proj
        for part in "qkv":
            pairs.extend((name, f"{dst}{part}_proj.{p}", part) for name, p in zip(src, ("weight", "bias")))

    swin, depths = SWIN + "swin.", config.backbone_config.depths
    add("backbone.patch_embed.projection", swin + "embeddings.patch_embeddings.projection")
    add("backbone.patch_embed.norm", swin + "embeddings.norm")
    for s, depth in enumerate(depths):
        for b in range(depth):
            src, dst = f"backbone.stages.{s}.blocks.{b}.", f"{swin}encoder.layers.{s}.blocks.{b}."
            add(src + "norm1", dst + "layernorm_before")
            qkv((src + "attn.w_msa.qkv.weight", src + "attn.w_msa.qkv.bias"), dst + "attention.")
            add(src + "attn.w_msa.proj", dst + "attention.o_proj")
            add(src + "attn.w_msa", dst + "attention.relative_position_bias", params=("relative_position_bias_table",))
            add(src + "norm2", dst + "layernorm_after")
            add(src + "ffn.layers.0.0", dst + "mlp.fc1")
            add(src + "ffn.layers.1", dst + "mlp.fc2")
        if s < len(depths) - 1:
            add(f"backbone.stages.{s}.downsample.reduction", f"{swin}encoder.layers.{s}.downsample.reduction",
                "unfold", ("weight",))
            add(f"backbone.stages.{s}.downsample.norm", f"{swin}encoder.layers.{s}.downsample.norm", "unfold")
        add(f"backbone.norm{s}", f"{SWIN}hidden_states_norms.stage{s + 1}")

    pixel = "panoptic_head.pixel_decoder."
    for i in range(LEVELS):  # both from the lowest resolution (Swin stage 4) up
        add(f"{pixel}input_convs.{i}.conv", f"{PIXEL}input_projections.{i}.0")
        add(f"{pixel}input_convs.{i}.gn", f"{PIXEL}input_projections.{i}.1")
    pairs.append((f"{pixel}level_encoding.weight", f"{PIXEL}level_embed", "copy"))
    for i in range(config.encoder_layers):
        src, dst = f"{pixel}encoder.layers.{i}.", f"{PIXEL}encoder.layers.{i}."
        for name in ("sampling_offsets", "attention_weights", "value_proj", "output_proj"):
            add(f"{src}attentions.0.{name}", f"{dst}self_attn.{name}")
        add(src + "norms.0", dst + "self_attn_layer_norm")
        add(src + "ffns.0.layers.0.0", dst + "fc1")
        add(src + "ffns.0.layers.1", dst + "fc2")
        add(src + "norms.1", dst + "final_layer_norm")
    add(f"{pixel}lateral_convs.0.conv", f"{PIXEL}adapter_1.0", params=("weight",))
    add(f"{pixel}lateral_convs.0.gn", f"{PIXEL}adapter_1.1")
    add(f"{pixel}output_convs.0.conv", f"{PIXEL}layer_1.0", params=("weight",))
    add(f"{pixel}output_convs.0.gn", f"{PIXEL}layer_1.1")
    add(f"{pixel}mask_feature", f"{PIXEL}mask_projection")

    head = "panoptic_head."
    add(head + "query_embed", DECODER + "queries_embedder", params=("weight",))  # positional queries
    add(head + "query_feat", DECODER + "queries_features", params=("weight",))  # content queries
    add(head + "level_embed", DECODER + "level_embed", params=("weight",))
    for i in range(config.decoder_layers - 1):
        src, dst = f"{head}transformer_decoder.layers.{i}.", f"{DECODER}decoder.layers.{i}."
        add(src + "attentions.0.attn", dst + "cross_attn", params=("in_proj_weight", "in_proj_bias"))
        add(src + "attentions.0.attn.out_proj", dst + "cross_attn.out_proj")
        add(src + "norms.0", dst + "cross_attn_layer_norm")
        qkv((src + "attentions.1.attn.in_proj_weight", src + "attentions.1.attn.in_proj_bias"), dst + "self_attn.")
        add(src + "attentions.1.attn.out_proj", dst + "self_attn.out_proj")
        add(src + "norms.1", dst + "self_attn_layer_norm")
        add(src + "ffns.0.layers.0.0", dst + "fc1")
        add(src + "ffns.0.layers.1", dst + "fc2")
        add(src + "norms.2", dst + "final_layer_norm")
    add(head + "transformer_decoder.post_norm", DECODER + "decoder.layernorm")
    for j, k in enumerate((0, 2, 4)):  # nn.Sequential(Linear, ReLU, Linear, ReLU, Linear)
        add(f"{head}mask_embed.{k}", f"{DECODER}decoder.mask_predictor.mask_embedder.{j}.0")
    add(head + "cls_embed", "class_predictor")
    return pairs


def unfold_to_concat(value: Tensor) -> Tensor:
    """Patch merging's 4C input channels from mmdet's unfold order (c * 4 + p) to transformers' (g * C + c)."""
    rows = value.reshape(-1, value.shape[-1] // 4, 4)[:, :, UNFOLD].transpose(1, 2)
    return rows.reshape(value.shape)


def convert(state: dict[str, Tensor], config: Mask2FormerConfig) -> dict[str, Tensor]:
    """The transformers state dict of an mmdet 2.x-named one; ConfigError naming missing or unused weights."""
    pairs = key_map(config)
    needed = {src for src, _, _ in pairs}
    missing = sorted(needed - set(state))
    unused = sorted(k for k in set(state) - needed if not k.endswith("relative_position_index"))
    if missing or unused:
        raise ConfigError(FIELD, "exactly the weights of mmdet's Mask2Former Swin checkpoint",
                          {"missing": missing[:5], "unexpected": unused[:5], "counts": (len(missing), len(unused))})
    out = {}
    for src, dst, op in pairs:
        value = state[src].float()
        if op in ("q", "k", "v"):
            value = value.chunk(3, dim=0)["qkv".index(op)]
        elif op == "unfold":
            value = unfold_to_concat(value)
        out[dst] = value.contiguous()
    return out


def load_model(path: str | os.PathLike) -> Mask2FormerForUniversalSegmentation:
    """GenEval's mmdet checkpoint as a transformers Mask2Former (float32, eval mode, on the CPU)."""
    state = read_checkpoint(path)
    config = architecture(state)
    model = Mask2FormerForUniversalSegmentation(config)
    missing, unexpected = model.load_state_dict(convert(state, config), strict=False)
    if unexpected or set(missing) - set(UNUSED):
        raise RuntimeError(f"key map out of date with transformers: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval()


def mmdet_shapes(config: Mask2FormerConfig) -> dict[str, tuple[int, ...]]:
    """The mmdet 2.x names and shapes of the checkpoint ``config`` describes (the key map run backwards; built on
    the meta device, so free): what GenEval's file holds besides Swin's relative_position_index buffers."""
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in Mask2FormerForUniversalSegmentation(config).state_dict().items()}
    out = {}
    for src, dst, op in key_map(config):
        shape = shapes[dst]
        out[src] = (3 * shape[0], *shape[1:]) if op in ("q", "k", "v") else shape
    return out
