"""GenEval's checkpoint in transformers (mmdet_checkpoint) and mmdet 2.x's test-time steps (mmdet_pipeline), on a
tiny checkpoint in GenEval's format. Parity with mmdet's own forward at GenEval's size: tests/evaluators/parity."""

import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers.models.swin.modeling_swin import SwinPatchMerging

from benchmark.core.errors import ConfigError
from evaluators.geneval import OfficialDetector, load_detector
from evaluators.geneval.detectors import Mask2FormerDetector, mask_to_box
from evaluators.geneval.mmdet_checkpoint import (
    architecture,
    from_mmdet3,
    key_map,
    read_checkpoint,
    unfold_to_concat,
)
from evaluators.geneval.mmdet_pipeline import MEAN, STD, instances, mask_boxes, preprocess, rescale_size
from tests.conftest import tiny_mmdet_config


def test_patch_merging_matches_mmdets_unfold():
    """mmdet's PatchMerging: nn.Unfold(2, stride 2) -> LayerNorm(4C) -> Linear(4C, 2C), channels c * 4 + p; with the
    converted weights transformers' SwinPatchMerging gives the same output on the same (odd-sized) feature map."""
    torch.manual_seed(0)
    batch, height, width, channels = 2, 6, 10, 8
    x = torch.randn(batch, height * width, channels)
    norm, reduction = torch.nn.LayerNorm(4 * channels), torch.nn.Linear(4 * channels, 2 * channels, bias=False)
    torch.nn.init.normal_(norm.weight), torch.nn.init.normal_(norm.bias)
    unfolded = F.unfold(x.view(batch, height, width, channels).permute(0, 3, 1, 2), kernel_size=2, stride=2)
    mmdet = reduction(norm(unfolded.transpose(1, 2)))
    merging = SwinPatchMerging(channels)
    with torch.no_grad():
        merging.norm.weight.copy_(unfold_to_concat(norm.weight))
        merging.norm.bias.copy_(unfold_to_concat(norm.bias))
        merging.reduction.weight.copy_(unfold_to_concat(reduction.weight))
    torch.testing.assert_close(merging(x, (height, width)), mmdet, rtol=1e-5, atol=1e-5)


def test_key_map_is_a_bijection_onto_the_transformers_model():
    config = tiny_mmdet_config()
    pairs = key_map(config)
    targets = [dst for _, dst, _ in pairs]
    assert len(targets) == len(set(targets))
    from transformers import Mask2FormerForUniversalSegmentation

    with torch.device("meta"):
        names = set(Mask2FormerForUniversalSegmentation(config).state_dict())
    assert names - set(targets) == {"model.pixel_level_module.encoder.swin.layernorm.weight",
                                    "model.pixel_level_module.encoder.swin.layernorm.bias", "criterion.empty_weight"}
    assert set(targets) <= names
    fused = sum(config.backbone_config.depths) + config.decoder_layers - 1  # Swin blocks, decoder self-attentions
    assert sum(op in "qkv" for _, _, op in pairs) == 6 * fused


def test_architecture_is_read_off_the_shapes(geneval_checkpoint):
    config, found = tiny_mmdet_config(), architecture(read_checkpoint(geneval_checkpoint))
    for key in ("num_queries", "hidden_dim", "feature_size", "mask_feature_size", "encoder_layers", "decoder_layers",
                "dim_feedforward", "encoder_feedforward_dim", "num_attention_heads"):
        assert getattr(found, key) == getattr(config, key), key
    for key in ("embed_dim", "depths", "num_heads", "window_size", "mlp_ratio", "patch_size", "qkv_bias"):
        assert getattr(found.backbone_config, key) == getattr(config.backbone_config, key), key
    assert found.id2label[16] == "dog" and len(found.id2label) == 80


def test_mmdet3_names_and_index_buffers_load_the_same(geneval_checkpoint, tmp_path):
    state = torch.load(geneval_checkpoint, weights_only=True)["state_dict"]
    first_attention = {True: "cross_attn.", False: "self_attn."}  # the decoder's is cross-attention
    to3 = {k.replace("attentions.0.", first_attention["transformer_decoder" in k]): v for k, v in state.items()}
    to3 = {k.replace("attentions.1.", "self_attn.").replace("ffns.0.", "ffn."): v for k, v in to3.items()}
    assert any(".cross_attn." in k for k in to3) and all(from_mmdet3(k) in state for k in to3)
    to3["backbone.stages.0.blocks.0.attn.w_msa.relative_position_index"] = torch.zeros(49, 49, dtype=torch.long)
    torch.save({"state_dict": to3}, tmp_path / "v3.pth")
    again = read_checkpoint(tmp_path / "v3.pth")
    assert set(again) - set(state) == {"backbone.stages.0.blocks.0.attn.w_msa.relative_position_index"}
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8))
    first, second = (OfficialDetector(p).detect(image) for p in (geneval_checkpoint, tmp_path / "v3.pth"))
    assert [(d.cls, d.score, d.box) for d in first] == [(d.cls, d.score, d.box) for d in second]


def test_bad_checkpoints_are_config_errors(geneval_checkpoint, tmp_path):
    with pytest.raises(ConfigError, match="geneval.detector"):
        read_checkpoint(tmp_path / "missing.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(ConfigError, match="a torch checkpoint"):
        read_checkpoint(tmp_path / "text.pth")
    torch.save({"state_dict": {"backbone.conv1.weight": torch.zeros(1)}}, tmp_path / "resnet.pth")
    with pytest.raises(ConfigError, match="Swin backbone"):
        read_checkpoint(tmp_path / "resnet.pth")
    state = torch.load(geneval_checkpoint, weights_only=True)["state_dict"]
    state["panoptic_head.extra.weight"] = torch.zeros(1)
    del state["panoptic_head.transformer_decoder.post_norm.bias"]
    torch.save({"state_dict": state}, tmp_path / "edited.pth")
    with pytest.raises(ConfigError, match="post_norm.bias.*extra.weight"):
        OfficialDetector(tmp_path / "edited.pth")
    with pytest.raises(ConfigError, match="geneval.detector.*transformers Mask2Former folder"):
        load_detector(tmp_path)


def test_rescale_size_is_mmcvs():
    """mmcv.rescale_size((w, h), (1333, 800)): factor min(1333 / long side, 800 / short side), int(x * f + 0.5)."""
    assert rescale_size(512, 512) == (800, 800) and rescale_size(1024, 1024) == (800, 800)
    assert rescale_size(48, 80) == (800, 1333) and rescale_size(96, 40) == (1333, 555)
    assert rescale_size(20, 160) == (167, 1333) and rescale_size(123, 77) == (1278, 800)


def test_preprocess_resizes_pads_with_128_and_normalises():
    rgb = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    pixels, resized = preprocess(rgb)
    assert resized == (800, 1333) and pixels.shape == (1, 3, 800, 1344) and pixels.dtype == torch.float32
    inside = cv2.resize(rgb, (1333, 800), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    expected = (inside - MEAN) / STD
    np.testing.assert_allclose(pixels[0, :, :, :1333].permute(1, 2, 0).numpy(), expected, rtol=0, atol=2e-6)
    padding = pixels[0, :, :, 1333:]
    torch.testing.assert_close(padding, torch.from_numpy((128 - MEAN) / STD)[:, None, None].expand_as(padding))


def test_instances_follow_mmdet_instance_postprocess():
    """Top-100 (query, class) pairs of softmax without the no-object column; score = probability x mean sigmoid over
    the mask; masks upsampled to the padded input, cropped, resized to the image; chunking changes nothing."""
    torch.manual_seed(0)
    queries, classes = 30, 80
    class_logits, mask_logits = torch.randn(queries, classes + 1) * 3, torch.randn(queries, 16, 24) * 4
    found = instances(class_logits, mask_logits, (64, 96), (60, 90), (30, 45))
    probs = class_logits.softmax(-1)[:, :-1]
    expected = set(probs.flatten().topk(100).indices.tolist())
    assert {q * classes + c for q, c in zip(found["queries"].tolist(), found["labels"].tolist())} == expected
    for k in (0, 57):
        q, c = found["queries"][k], found["labels"][k]
        logits = F.interpolate(mask_logits[q][None, None], size=(64, 96), mode="bilinear", align_corners=False)
        logits = F.interpolate(logits[:, :, :60, :90], size=(30, 45), mode="bilinear", align_corners=False)[0, 0]
        assert torch.equal(found["masks"][k], logits > 0)
        score = probs[q, c] * logits.sigmoid()[logits > 0].sum() / ((logits > 0).sum() + 1e-6)
        assert math.isclose(found["scores"][k].item(), score.item(), rel_tol=1e-6)
        assert tuple(found["boxes"][k].tolist()) == mask_to_box(found["masks"][k].numpy())
    again = instances(class_logits, mask_logits, (64, 96), (60, 90), (30, 45), chunk=1)
    assert all(torch.equal(found[key], again[key]) for key in found)


def test_mask_boxes_of_empty_masks_are_zero():
    masks = torch.zeros(2, 5, 6, dtype=torch.bool)
    masks[1, 1:3, 2:5] = True
    assert mask_boxes(masks).tolist() == [[0, 0, 0, 0], [2, 1, 5, 3]]


def test_official_detector_returns_mmdets_instances(geneval_checkpoint, mask2former_dir):
    detector = load_detector(geneval_checkpoint)
    assert isinstance(detector, OfficialDetector) and detector.protocol == "official"
    assert isinstance(load_detector(mask2former_dir), Mask2FormerDetector)
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (36, 52, 3), dtype=np.uint8))
    found = detector.detect(image)
    assert len(found) == 100  # 10 queries x 80 classes, top 100
    dogs = [d for d in found if d.cls == "dog"]
    assert len(dogs) == 10 and all(d.score > 0.5 for d in dogs)  # probability ~1 x mean sigmoid over the mask (> 0.5)
    assert all(d.score < 1e-6 for d in found if d.cls != "dog")
    for d in found:
        assert d.mask.shape == (36, 52) and d.mask.dtype == bool and d.box == mask_to_box(d.mask)
