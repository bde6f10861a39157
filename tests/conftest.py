"""Test-wide settings (no hub access: a missing file fails at once; deterministic CPU threads) and the fixtures
several packages' tests share: GenEval's tiny random detector and CLIP checkpoint."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import json  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))

GENEVAL_LABELS = ["person", "dog", "wall-other-merged", "mouse"]  # a stuff label (dropped) and an alias


@pytest.fixture(scope="module")
def mask2former_dir(tmp_path_factory):
    from transformers import (
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
        Mask2FormerImageProcessor,
        SwinConfig,
    )

    swin = SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                      window_size=4, out_features=["stage1", "stage2", "stage3", "stage4"])
    config = Mask2FormerConfig(
        backbone_config=swin, use_pretrained_backbone=False, num_queries=8, hidden_dim=32, feature_size=32,
        mask_feature_size=32, encoder_feedforward_dim=64, dim_feedforward=64, encoder_layers=1, decoder_layers=2,
        num_attention_heads=2, id2label=dict(enumerate(GENEVAL_LABELS)), label2id={n: i for i, n in enumerate(GENEVAL_LABELS)},
    )
    torch.manual_seed(0)
    model = Mask2FormerForUniversalSegmentation(config)
    with torch.no_grad():  # every query says "dog" with probability ~1, so scores are ~ mean mask probability
        model.class_predictor.weight.zero_()
        model.class_predictor.bias.fill_(-10.0)
        model.class_predictor.bias[GENEVAL_LABELS.index("dog")] = 10.0
    path = tmp_path_factory.mktemp("m2f")
    model.save_pretrained(path)
    Mask2FormerImageProcessor(size={"shortest_edge": 64, "longest_edge": 128}).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def clip_checkpoint(tmp_path_factory):
    import open_clip

    root = tmp_path_factory.mktemp("clip")
    cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (root / "geneval-tiny-clip.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(root / "geneval-tiny-clip.json")
    torch.manual_seed(0)
    model = open_clip.create_model("geneval-tiny-clip", pretrained=None, force_quick_gelu=True)
    torch.save(model.state_dict(), root / "tiny_clip.pt")
    return root / "tiny_clip.pt"
