"""GenEval's scoring rules on planted detections (evaluation/evaluate_images.py semantics)."""

import pytest

from benchmark.core.errors import ConfigError
from evaluators.geneval.rules import Detection, RuleConfig, evaluate, relative_position, select_detections


def det(cls, score=0.95, box=(0, 0, 10, 10)):
    return Detection(cls, score, box)


COUNT_TWO = {"tag": "counting", "include": [{"class": "clock", "count": 2}], "exclude": [{"class": "clock", "count": 3}],
             "prompt": "a photo of two clocks"}
SINGLE = {"tag": "single_object", "include": [{"class": "cow", "count": 1}], "prompt": "a photo of a cow"}


def position_row(rel, a="dog", b="teddy bear"):
    return {"tag": "position", "include": [{"class": b, "count": 1}, {"class": a, "count": 1, "position": [rel, 0]}],
            "prompt": f"a photo of a {a} {rel} a {b}"}


# --- counting: the 0.9 threshold, the count and the N + 1 exclusion ---------------------------------------

@pytest.mark.parametrize(
    "scores, correct",
    [
        ((0.95, 0.95), True),
        ((0.95, 0.91), True),
        ((0.95, 0.9), False),  # kept only if score > 0.9, strictly
        ((0.95, 0.5), False),  # 0.5 passes the usual 0.3, not the counting 0.9
        ((0.95,), False),
        ((0.95, 0.95, 0.89), True),  # a third clock below 0.9 is not counted
        ((0.95, 0.95, 0.92), False),  # N + 1 detected: the exclude clause fails
    ],
)
def test_counting_threshold_and_count(scores, correct):
    ok, reason = evaluate(COUNT_TWO, [det("clock", s) for s in scores])
    assert ok is correct
    if len([s for s in scores if s > 0.9]) == 3:
        assert reason == "expected clock<3, found 3"
    elif not correct:
        assert reason.startswith("expected clock>=2, found")


def test_threshold_is_0_3_strict_outside_counting():
    assert evaluate(SINGLE, [det("cow", 0.3)]) == (False, "expected cow>=1, found 0")
    assert evaluate(SINGLE, [det("cow", 0.31)]) == (True, "")
    assert evaluate(SINGLE, [det("horse", 0.99)])[0] is False  # other classes never count


def test_max_objects_caps_each_class_at_16():
    many = [det("bird", 0.5 + i / 100) for i in range(20)]
    kept = select_detections(many, "single_object")
    assert len(kept["bird"]) == 16 and [d.score for d in kept["bird"]] == sorted((d.score for d in many), reverse=True)[:16]
    row = lambda inc, exc: {"tag": "counting", "include": [{"class": "bird", "count": inc}],
                            "exclude": [{"class": "bird", "count": exc}], "prompt": "birds"}
    assert evaluate(row(16, 17), [det("bird", 0.95)] * 20) == (True, "")  # only 16 survive: 17 cannot be reached
    assert evaluate(row(17, 18), [det("bird", 0.95)] * 20) == (False, "expected bird>=17, found 16")
    assert evaluate(row(2, 16), [det("bird", 0.95)] * 20) == (False, "expected bird<16, found 16")
    assert len(select_detections(many, "single_object", RuleConfig(max_objects=3))["bird"]) == 3


def test_no_nms_by_default_and_per_class_nms_when_asked():
    same = [det("cup", 0.95), det("cup", 0.94), det("bowl", 0.93)]
    assert [len(v) for v in select_detections(same, "counting").values()] == [2, 1]
    nms = select_detections(same, "counting", RuleConfig(max_overlap=0.5))
    assert len(nms["cup"]) == 1 and len(nms["bowl"]) == 1  # classes never suppress each other


def test_two_object():
    row = {"tag": "two_object", "include": [{"class": "bench", "count": 1}, {"class": "sports ball", "count": 1}],
           "prompt": "a photo of a bench and a sports ball"}
    assert evaluate(row, [det("bench"), det("sports ball", 0.4)]) == (True, "")
    assert evaluate(row, [det("bench"), det("sports ball", 0.2)]) == (False, "expected sports ball>=1, found 0")
    assert evaluate(row, []) == (False, "expected bench>=1, found 0\nexpected sports ball>=1, found 0")


# --- colours: only the top-`count` detections are classified, all must match ---------------------------

class StubColours:
    """Colour by detection score, recording what was asked."""

    def __init__(self, by_score):
        self.by_score, self.calls = by_score, []

    def __call__(self, dets, cls):
        self.calls.append((cls, [d.score for d in dets]))
        return [self.by_score[d.score] for d in dets]


def test_colour_uses_top_detections_and_all_must_match():
    row = {"tag": "colors", "include": [{"class": "apple", "count": 1, "color": "red"}], "prompt": "a photo of a red apple"}
    stub = StubColours({0.9: "red", 0.8: "green"})
    assert evaluate(row, [det("apple", 0.8), det("apple", 0.9)], stub) == (True, "")
    assert stub.calls == [("apple", [0.9])]
    stub = StubColours({0.9: "green", 0.8: "red"})
    assert evaluate(row, [det("apple", 0.8), det("apple", 0.9)], stub) == (
        False, "expected red apple>=1, found 0 red; and 1 green")
    two = {"tag": "colors", "include": [{"class": "apple", "count": 2, "color": "red"}], "prompt": "two red apples"}
    ok, reason = evaluate(two, [det("apple", 0.8), det("apple", 0.9)], StubColours({0.9: "red", 0.8: "green"}))
    assert not ok and reason == "expected red apple>=2, found 1 red; and 1 red, 1 green"
    with pytest.raises(ValueError, match="colour classifier"):
        evaluate(row, [det("apple")])


def test_color_attr_binds_each_colour_to_its_class():
    row = {"tag": "color_attr", "include": [{"class": "cup", "count": 1, "color": "purple"},
                                            {"class": "car", "count": 1, "color": "black"}], "prompt": "p"}
    colours = lambda dets, cls: {"cup": ["purple"], "car": ["black"]}[cls]
    swapped = lambda dets, cls: {"cup": ["black"], "car": ["purple"]}[cls]
    assert evaluate(row, [det("cup"), det("car")], colours)[0] is True
    assert evaluate(row, [det("cup"), det("car")], swapped)[0] is False


# --- position: the 0.1 * (dimA + dimB) margin, 1e-3 no-relation cutoff, 0.5 thresholds, y down -----------

B = (40, 40, 60, 60)  # the reference, 20 x 20 centred at (50, 50)


@pytest.mark.parametrize(
    "box_a, relations",
    [
        ((0, 40, 20, 60), {"left of"}),
        ((80, 40, 100, 60), {"right of"}),
        ((40, 0, 60, 20), {"above"}),  # smaller y is higher in the image
        ((40, 80, 60, 100), {"below"}),
        ((0, 0, 20, 20), {"left of", "above"}),  # diagonal: dx = dy = -0.707
        ((43, 40, 63, 60), set()),  # offset 3 < margin 0.1 * (20 + 20) = 4: no relation
        ((40, 40, 60, 60), set()),  # same place
        ((47, 40, 67, 60), set()),  # offset 7: revised 3, but dx = 3 / 7 = 0.43 (divided by |offset|) < 0.5
        ((49, 40, 69, 60), {"right of"}),  # offset 9: dx = 5 / 9 = 0.56 > 0.5
        ((45, 45, 65, 65), set()),  # offsets (5, 5): revised (1, 1) / 7.07 = 0.14 per axis, below 0.5
    ],
)
def test_relative_position(box_a, relations):
    assert relative_position(box_a, B) == relations


def test_relative_position_margin_scales_with_box_sizes():
    # Same 10-pixel offset; big boxes (dims 100 + 100 -> margin 20) swallow it, small ones (margin 2) do not.
    assert relative_position((0, 0, 100, 100), (10, 0, 110, 100)) == set()
    assert relative_position((0, 0, 10, 10), (10, 0, 20, 10)) == {"left of"}
    assert relative_position((0, 0, 10, 10), (10, 0, 20, 10), position_threshold=0.6) == set()


@pytest.mark.parametrize("rel, box_a", [("left of", (0, 40, 20, 60)), ("right of", (80, 40, 100, 60)),
                                         ("above", (40, 0, 60, 20)), ("below", (40, 80, 60, 100))])
def test_position_clause_each_relation(rel, box_a):
    dets = [det("teddy bear", 0.9, B), det("dog", 0.9, box_a)]
    assert evaluate(position_row(rel), dets) == (True, "")
    wrong = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}[rel]
    assert evaluate(position_row(wrong), dets) == (False, f"expected dog {wrong} target, found {rel} target")


def test_position_no_relation_fails():
    dets = [det("teddy bear", 0.9, B), det("dog", 0.9, (41, 41, 61, 61))]
    assert evaluate(position_row("left of"), dets) == (False, "expected dog left of target, found  target")


def test_position_only_checked_when_reference_matched():
    dets = [det("dog", 0.9, (0, 40, 20, 60))]
    assert evaluate(position_row("left of"), dets) == (
        False, "expected teddy bear>=1, found 0\nno target for dog to be left of")
    # A reference below the threshold is not a match either.
    dets.append(det("teddy bear", 0.2, B))
    assert evaluate(position_row("left of"), dets)[1].endswith("no target for dog to be left of")


def test_position_uses_only_the_most_confident_objects():
    dets = [det("teddy bear", 0.9, B), det("dog", 0.9, (0, 40, 20, 60)), det("dog", 0.5, (80, 40, 100, 60)),
            det("teddy bear", 0.4, (0, 0, 5, 5))]
    assert evaluate(position_row("left of"), dets) == (True, "")


def test_rule_config_validation():
    with pytest.raises(ConfigError, match="geneval.threshold"):
        RuleConfig(threshold=1.5)
    with pytest.raises(ConfigError, match="geneval.max_objects"):
        RuleConfig(max_objects=0)
