"""GenEval's model-backed parts on tiny random models: Mask2Former detector, CLIP colours, folder scoring."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmark.core.errors import ConfigError
from evaluators.geneval.colour import ClipColourClassifier, colour_templates, paste_crop
from evaluators.geneval.detectors import Mask2FormerDetector, coco_label_map, mask_to_box
from evaluators.geneval.rules import Detection, evaluate
from evaluators.geneval.score import score_folder, summarize, write_prompt_folder, write_results
from evaluators.geneval.vocab import CLASSES, COLORS
from tests.conftest import GENEVAL_LABELS as LABELS


def noise_image(h=48, w=80, seed=0):
    return Image.fromarray((np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8))


# --- detector backends ---------------------------------------------------------------------------------

def test_mask2former_detects_coco_names_with_mask_boxes(mask2former_dir):
    detector = Mask2FormerDetector(mask2former_dir)
    assert detector.label_map == {0: "person", 1: "dog", 3: "computer mouse"}
    image = noise_image()  # not square: exercises the padding crop
    dets = detector.detect(image)
    assert dets and all(d.cls == "dog" for d in dets)
    for d in dets:
        assert d.mask.shape == (48, 80) and d.mask.dtype == bool and d.mask.any()
        assert d.box == mask_to_box(d.mask)
        assert 0.5 < d.score <= 1.0  # class prob ~1 times mean sigmoid over mask pixels (> 0.5 by definition)
    with torch.no_grad():  # dog and person at probability 0.5 each: scores fall to (0.25, 0.5], all still returned
        detector.model.class_predictor.bias[LABELS.index("person")] = 10.0
    split = detector.detect(image)
    assert {d.cls for d in split} == {"dog", "person"} and all(0.25 < d.score <= 0.5 for d in split)


def test_mask2former_bad_path():
    with pytest.raises(ConfigError, match="geneval.detector_path"):
        Mask2FormerDetector("/nonexistent/mask2former")


def test_mask_to_box_is_mmdet_mask2bbox():
    mask = np.zeros((10, 20), bool)
    mask[2:5, 3:9] = True
    assert mask_to_box(mask) == (3.0, 2.0, 9.0, 5.0)
    assert mask_to_box(np.zeros((4, 4), bool)) == (0.0, 0.0, 0.0, 0.0)


def test_coco_label_map():
    names = {0: "person", 1: "TV", 2: "Potted_Plant", 3: "sky-other"}
    assert coco_label_map(names) == {0: "person", 1: "tv", 2: "potted plant"}
    assert coco_label_map({i: f"LABEL_{i}" for i in range(80)}) == dict(enumerate(CLASSES))
    with pytest.raises(ConfigError, match="detector labels"):
        coco_label_map({0: "LABEL_0", 1: "LABEL_1"})
    with pytest.raises(ConfigError, match="'hairdryer'"):  # 79 COCO names and a typo: refuse to drop a class
        coco_label_map({**dict(enumerate(CLASSES)), 78: "hairdryer"})


# --- colour classifier -----------------------------------------------------------------------------------

def test_paste_crop_is_grey_outside_the_mask():
    pixels = np.zeros((30, 40, 3), np.uint8)
    pixels[..., 0] = 255  # a red image
    mask = np.zeros((30, 40), bool)
    mask[10:20, 5:15] = True
    crop = np.asarray(paste_crop(Image.fromarray(pixels), Detection("apple", 0.9, (5, 10, 25, 25), mask)))
    assert crop.shape == (15, 20, 3)
    inside = mask[10:25, 5:25]
    assert (crop[inside] == [255, 0, 0]).all() and (crop[~inside] == [153, 153, 153]).all()
    no_mask = np.asarray(paste_crop(Image.fromarray(pixels), Detection("apple", 0.9, (5, 10, 25, 25))))
    assert (no_mask == [255, 0, 0]).all()
    with pytest.raises(ValueError, match="mask shape"):
        paste_crop(Image.fromarray(pixels), Detection("apple", 0.9, (0, 0, 5, 5), np.ones((5, 5), bool)))


def test_clip_colour_logits_follow_genevals_recipe(clip_checkpoint):
    clf = ClipColourClassifier(clip_checkpoint, model_name="geneval-tiny-clip")
    image = noise_image(40, 60)
    mask = np.zeros((40, 60), bool)
    mask[5:20, 10:30] = True
    dets = [Detection("apple", 0.9, (10, 5, 30, 20), mask), Detection("apple", 0.8, (0, 0, 60, 40))]
    # Reference: per colour, normalised text embeddings of the 3 templates averaged and renormalised;
    # normalised image embedding of the grey-pasted crop; 100 * cosine.
    with torch.no_grad():
        weights = []
        for colour in COLORS:
            text = [t(colour) for t in colour_templates("apple")]
            assert text == [
                f"a photo of a {colour} apple", f"a photo of a {colour}-colored apple", f"a photo of a {colour} object"
            ]
            emb = torch.nn.functional.normalize(clf.model.encode_text(clf.tokenizer(text)), dim=-1).mean(0)
            weights.append(emb / emb.norm())
        crops = torch.stack([clf.preprocess(paste_crop(image, d)) for d in dets])
        feats = torch.nn.functional.normalize(clf.model.encode_image(crops), dim=-1)
        expected = 100 * feats @ torch.stack(weights).T
    logits = clf.logits(image, dets, "apple")
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    predicted = clf(image, dets, "apple")
    assert predicted == [COLORS[i] for i in expected.argmax(1)]
    # Through the rules: the requested colour passes exactly when CLIP predicts it for the top detection.
    colour_fn = lambda ds, cls: clf(image, ds, cls)
    for colour in (predicted[0], next(c for c in COLORS if c != predicted[0])):
        row = {"tag": "colors", "include": [{"class": "apple", "count": 1, "color": colour}], "prompt": "p"}
        assert evaluate(row, dets, colour_fn)[0] is (colour == predicted[0])


def test_clip_bad_checkpoint(tmp_path):
    with pytest.raises(ConfigError, match="geneval.clip_checkpoint"):
        ClipColourClassifier(tmp_path / "missing.pt")


# --- folder scoring ----------------------------------------------------------------------------------------

def test_score_folder_end_to_end(tmp_path, mask2former_dir, clip_checkpoint):
    detector = Mask2FormerDetector(mask2former_dir)
    colours = ClipColourClassifier(clip_checkpoint, model_name="geneval-tiny-clip")
    image = noise_image(64, 64)
    colour = colours(image, [max(detector.detect(image), key=lambda d: d.score)], "dog")[0]
    rows = [
        {"tag": "single_object", "include": [{"class": "dog", "count": 1}], "prompt": "a photo of a dog"},
        {"tag": "single_object", "include": [{"class": "cat", "count": 1}], "prompt": "a photo of a cat"},
        {"tag": "colors", "include": [{"class": "dog", "count": 1, "color": colour}], "prompt": f"a photo of a {colour} dog"},
    ]
    root = tmp_path / "images"
    for i, row in enumerate(rows):
        folder = write_prompt_folder(root, i, row)
        for k in range(2):
            image.save(folder / "samples" / f"{k}.png")
    (root / "00000" / "samples" / "grid.png").write_bytes(b"")  # not <k>.png: ignored, as in GenEval
    df = score_folder(root, detector, colours, progress=False)
    assert list(df["prompt_index"]) == [0, 0, 1, 1, 2, 2] and list(df["image_index"]) == [0, 1] * 3
    shards = [score_folder(root, detector, colours, progress=False, rank=r, world_size=4) for r in range(4)]
    assert [len(s) for s in shards] == [2, 2, 1, 1]  # images 0, 4 | 1, 5 | 2 | 3 of the sorted list
    merged = pd.concat(shards).sort_values(["prompt_index", "image_index"], kind="stable", ignore_index=True)
    pd.testing.assert_frame_equal(merged, df, check_exact=True)
    assert list(df["correct"]) == [True, True, False, False, True, True]
    assert df.loc[2, "reason"] == "expected cat>=1, found 0"
    assert set(json.loads(df.loc[0, "details"])) == {"dog"}
    summary = summarize(df)
    assert summary["single_object"] == 0.5 and summary["colors"] == 1.0 and np.isnan(summary["counting"])
    assert summary["overall"] == 0.75 and summary["images"] == 6 and summary["correct_prompts"] == pytest.approx(2 / 3)
    write_results(df, tmp_path / "out" / "results.jsonl")
    back = pd.read_json(tmp_path / "out" / "results.jsonl", orient="records", lines=True)
    assert list(back["correct"]) == list(df["correct"]) and len(list((tmp_path / "out").iterdir())) == 1


def test_summary_overall_is_the_unweighted_task_mean():
    tags = ["position"] * 4 + ["counting"]
    df = pd.DataFrame({"prompt_index": range(5), "tag": tags, "correct": [True, False, False, False, True]})
    summary = summarize(df)
    assert summary["position"] == 0.25 and summary["counting"] == 1.0
    assert summary["overall"] == pytest.approx(0.625) and summary["correct_images"] == pytest.approx(0.4)


def test_score_folder_bad_inputs(tmp_path):
    with pytest.raises(ConfigError, match="geneval.image_dir"):
        score_folder(tmp_path / "missing", detector=None)
    (tmp_path / "00000" / "samples").mkdir(parents=True)
    bad = {"tag": "single_object", "include": [{"class": "cow"}], "prompt": "x"}
    (tmp_path / "00000" / "metadata.jsonl").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"00000/metadata\.jsonl:1: include\[0\]"):
        score_folder(tmp_path, detector=None)
    row = {"tag": "colors", "include": [{"class": "cow", "count": 1, "color": "red"}], "prompt": "a photo of a red cow"}
    write_prompt_folder(tmp_path, 0, row)
    (tmp_path / "00000" / "samples" / "0.png").write_bytes(b"")
    with pytest.raises(ConfigError, match="geneval.colour_classifier"):
        score_folder(tmp_path, detector=None)
