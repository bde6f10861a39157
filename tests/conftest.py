"""Test-wide settings (no hub access: a missing file fails at once; deterministic CPU threads) and the fixtures
several packages' tests share: GenEval's tiny random detectors (an mmdet-format checkpoint and a transformers
folder) and CLIP checkpoint."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import json  # noqa: E402
import math  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from benchmark.core.testing import single_thread  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))

GENEVAL_LABELS = ["person", "dog", "wall-other-merged", "mouse"]  # a stuff label (dropped) and an alias


@pytest.fixture
def one_thread():
    """One CPU thread for the test (tiny tensors: more threads only spin against other processes); a module
    asks for it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    with single_thread():
        yield


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


def tiny_mmdet_config():
    """A small Mask2Former Swin in transformers' terms (Mask2Former's 8 heads; widths divisible by 32 for GroupNorm)."""
    from transformers import Mask2FormerConfig, SwinConfig

    from evaluators.geneval.vocab import CLASSES

    swin = SwinConfig(embed_dim=32, depths=[1, 2, 1, 1], num_heads=[1, 2, 2, 4], window_size=7,
                      out_features=["stage1", "stage2", "stage3", "stage4"])
    return Mask2FormerConfig(backbone_config=swin, use_pretrained_backbone=False, num_queries=10, hidden_dim=32,
                             feature_size=32, mask_feature_size=32, encoder_layers=1, decoder_layers=3,
                             dim_feedforward=64, encoder_feedforward_dim=48, id2label=dict(enumerate(CLASSES)))


@pytest.fixture(scope="module")
def geneval_checkpoint(tmp_path_factory):
    """A tiny checkpoint in the format of GenEval's (mmdet 2.x names, {"meta", "state_dict"}); every query says
    "dog" with probability ~1."""
    from evaluators.geneval.mmdet_checkpoint import mmdet_shapes
    from evaluators.geneval.vocab import CLASSES

    generator = torch.Generator().manual_seed(0)
    state = {}
    for name, shape in mmdet_shapes(tiny_mmdet_config()).items():
        value = torch.randn(shape, generator=generator)  # norms ~1, biases ~0.1, matrices N(0, 1 / fan_in)
        if len(shape) == 1:
            state[name] = 1 + 0.1 * value if name.endswith("weight") else 0.1 * value
        else:
            state[name] = value / math.prod(shape[1:]) ** 0.5
    state["panoptic_head.cls_embed.weight"].zero_()
    state["panoptic_head.cls_embed.bias"].fill_(-10.0)
    state["panoptic_head.cls_embed.bias"][CLASSES.index("dog")] = 10.0
    path = tmp_path_factory.mktemp("geneval") / "mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.pth"
    torch.save({"meta": {"CLASSES": tuple(CLASSES)}, "state_dict": state}, path)
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
