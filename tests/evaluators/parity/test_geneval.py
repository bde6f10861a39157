"""GenEval's detector against mmdet itself: evaluators/parity/references/geneval.json was recorded by
``python -m evaluators.parity.record --scorers geneval`` running mmdet 3.3.0 (mmcv 2.1.0 with its CPU ops) on
GenEval's Mask2Former Swin-S at full size with seeded weights saved as an mmdet 2.x-named checkpoint, through
mmdet 2.x's test pipeline (runners/run_geneval.py), on 4 images (64 x 64, 48 x 80, a 20 x 160 strip, 1024 x 1024).

Here the same checkpoint file is rebuilt from the recorded layout and loaded by ``OfficialDetector`` (the key map
in evaluators/geneval/mmdet_checkpoint.py, transformers' Mask2Former, mmdet_pipeline.py): no mmdet at test time.
Tolerances: both sides compute in float32 with different kernels and summation orders (transformers' Swin and
deformable attention against mmdet's and mmcv's) through 50 Swin blocks, 6 deformable encoder and 9 decoder layers,
so they agree to float noise, not bit for bit. mmdet's own noise, measured: two recordings on the same weights
(numpy 2.2 / cv2 5.1 and numpy 1.26 / cv2 4.10 in the environment) differ by up to 3.4e-5 in a score and 20 mask
pixels on the 1024 px image. Hence
- the top-100 (query, class) pairs are the same set;
- scores (class probability x mean mask probability) agree within SCORE_ATOL, where masks are recorded with our
  mask probabilities averaged over mmdet's mask: a pixel whose logit is ~0 and lands on the other side of the
  threshold moves the mean by about 1 / area (1e-4 measured on a 3367 px mask); that pixel is checked next;
- a mask pixel may differ only where our upsampled mask logit is within LOGIT_ATOL of the threshold 0, at most
  MASK_FLIPS pixels per image in all, and a box only through such a pixel (by at most 1 px);
- mask areas of the 1024 px image (its masks are too large to record) agree within MASK_FLIPS pixels in all.
"""

import base64
import zlib

import numpy as np
import pytest
import torch

from evaluators.geneval import OfficialDetector
from evaluators.geneval.mmdet_checkpoint import architecture, mmdet_shapes, read_checkpoint
from evaluators.geneval.mmdet_pipeline import instances, preprocess, upsample
from evaluators.parity.rebuild import geneval_checkpoint, load_reference, reference_images
from evaluators.parity.record import REFERENCES

SCORE_ATOL = 5e-5
LOGIT_ATOL = 1e-3
MASK_FLIPS = 50

pytestmark = pytest.mark.skipif(
    not (REFERENCES / "geneval.json").is_file(),
    reason="evaluators/parity/references/geneval.json is not recorded: it needs the mmdet 3.3.0 / mmcv 2.1.0 "
           "environment (python -m evaluators.parity.record --scorers geneval, docs/rewards.md)")


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    reference = load_reference("geneval")
    path = geneval_checkpoint(reference, tmp_path_factory.mktemp("geneval"))
    detector = OfficialDetector(path)
    images = reference_images(reference)
    found = []
    with torch.no_grad():
        for image in images:
            rgb = np.asarray(image.convert("RGB"))
            pixels, resized = preprocess(rgb)
            out = detector.model(pixel_values=pixels)
            sizes = (tuple(pixels.shape[-2:]), resized, rgb.shape[:2])
            found.append((instances(out.class_queries_logits[0], out.masks_queries_logits[0], *sizes),
                          out.masks_queries_logits[0], sizes, out.class_queries_logits[0]))
    return reference, path, detector, images, found


def test_the_key_map_names_every_weight_mmdet_has(case):
    """mmdet's module tree (the recorded layout, 2.x names) has exactly the names and shapes the key map expects."""
    reference, path = case[:2]
    recorded = {name: tuple(shape) for name, shape, *_ in reference["layout"]}
    assert mmdet_shapes(architecture(read_checkpoint(path))) == recorded
    ours = case[2].model.model.pixel_level_module.encoder.swin.encoder.layers[0].blocks[0].attention
    assert ours.relative_position_bias.relative_position_index.tolist() == reference["relative_position_index"]


def test_inputs_have_mmdets_sizes(case):
    reference, found = case[0], case[4]
    for expected, (_, _, (padded, resized, original), _) in zip(reference["detections"], found):
        ours = [list(padded), list(resized), list(original)]
        assert ours == [expected["input"], expected["resized"], expected["shape"]]


def test_detections_equal_mmdets(case):
    reference, found = case[0], case[4]
    for index, (expected, (ours, logits, sizes, class_logits)) in enumerate(zip(reference["detections"], found)):
        pairs = {(q, c): k for k, (q, c) in enumerate(zip(expected["queries"], expected["labels"]))}
        mine = list(zip(ours["queries"].tolist(), ours["labels"].tolist()))
        assert set(mine) == set(pairs), f"image {index}: other (query, class) pairs than mmdet's " \
                                        f"(gap at the cut {expected['cut_gap']:.2g})"
        order = [pairs[p] for p in mine]
        scores = torch.tensor(expected["scores"])[order]
        areas = torch.tensor(expected["areas"])[order]
        assert (ours["masks"].flatten(1).sum(1) - areas).abs().sum().item() <= MASK_FLIPS, f"image {index}"
        boxes = torch.tensor(expected["boxes"])[order]
        if "masks" not in expected:
            assert (ours["scores"] - scores).abs().max().item() <= SCORE_ATOL, f"image {index}"
            assert (ours["boxes"] - boxes).abs().max().item() <= 1, f"image {index}"
            continue
        bits = np.unpackbits(np.frombuffer(zlib.decompress(base64.b64decode(expected["masks"])), np.uint8))
        theirs = torch.from_numpy(bits[: ours["masks"].numel()].reshape(-1, *sizes[2]).astype(bool))[order]
        probability = torch.softmax(class_logits, -1)[ours["queries"], ours["labels"]]
        mask_probability = upsample(logits[ours["queries"]], *sizes).sigmoid()
        on_theirs = (mask_probability * theirs).flatten(1).sum(1) / (theirs.flatten(1).sum(1) + 1e-6)
        assert (probability * on_theirs - scores).abs().max().item() <= SCORE_ATOL, f"image {index}"
        flips = ours["masks"] != theirs
        assert flips.sum().item() <= MASK_FLIPS, f"image {index}: {flips.sum().item()} mask pixels differ"
        for k in flips.flatten(1).any(1).nonzero().flatten().tolist():
            near_zero = upsample(logits[ours["queries"][k]][None], *sizes)[0][flips[k]].abs()
            assert near_zero.max().item() <= LOGIT_ATOL, f"image {index}, instance {k}"
        same = ~flips.flatten(1).any(1)
        assert torch.equal(ours["boxes"][same], boxes[same])
        assert (ours["boxes"] - boxes).abs().max().item() <= 1


def test_detect_returns_these_instances(case):
    _, _, detector, images, found = case
    detections = detector.detect(images[0])
    ours = found[0][0]
    assert [(d.score, d.box) for d in detections] == [(s, tuple(b)) for s, b in
                                                      zip(ours["scores"].tolist(), ours["boxes"].tolist())]


def test_reference_names_mmdets_version():
    reference = load_reference("geneval")
    assert reference["versions"]["mmdet"] == "3.3.0" and reference["versions"]["mmcv"] == "2.1.0"
    assert len(reference["detections"]) == len(reference["images"]) == 4
