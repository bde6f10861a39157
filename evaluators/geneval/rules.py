"""GenEval's scoring rules as pure functions over detections (djghosh13/geneval evaluation/evaluate_images.py).

1. Per class: sort by score (descending), keep score > threshold (0.3; 0.9 when the tag is "counting"), keep
   the first 16 (max_objects); greedy per-class NMS only when max_overlap < 1 (default 1.0: none); classes
   never suppress each other.
2. Include clauses are ANDed: found = kept[class][:count]; fewer than count fails. A colour clause classifies
   the top-`count` detections and needs all of them to be the colour. A position clause [rel, g] is checked
   only when the clause itself matched and include group g matched: every (object, target) pair must have
   `rel` among `relative_position(object, target)`.
3. Exclude clauses are ORed: a clause with count c fails the image if at least c detections were kept.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from benchmark.core.errors import ConfigError
from evaluators.geneval.vocab import COLORS, POSITIONS

# colour_fn(detections, classname) -> one colour name (from COLORS) per detection, in order.
ColourFn = Callable[[Sequence["Detection"], str], list[str]]


@dataclass(frozen=True)
class Detection:
    """One detected instance: COCO class name, confidence, box (x1, y1, x2, y2) in pixels, y pointing down,
    and an optional boolean instance mask of the image's (height, width)."""

    cls: str
    score: float
    box: tuple[float, float, float, float]
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class RuleConfig:
    """GenEval's evaluate_images.py options and their defaults."""

    threshold: float = 0.3
    counting_threshold: float = 0.9
    max_objects: int = 16
    max_overlap: float = 1.0
    position_threshold: float = 0.1

    def __post_init__(self):
        for name in ("threshold", "counting_threshold", "max_overlap"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"geneval.{name}", "a number in [0, 1]", getattr(self, name))
        if self.max_objects < 1:
            raise ConfigError("geneval.max_objects", "a positive integer", self.max_objects)
        if self.position_threshold < 0:
            raise ConfigError("geneval.position_threshold", "a non-negative number", self.position_threshold)


def compute_iou(box_a, box_b) -> float:
    """GenEval's IoU, with its inclusive-pixel (+1) box areas."""
    def area(b):
        return max(b[2] - b[0] + 1, 0) * max(b[3] - b[1] + 1, 0)

    inter = area([max(box_a[0], box_b[0]), max(box_a[1], box_b[1]), min(box_a[2], box_b[2]), min(box_a[3], box_b[3])])
    union = area(box_a) + area(box_b) - inter
    return inter / union if union else 0


def select_detections(detections: Sequence[Detection], tag: str, config: RuleConfig = RuleConfig()) -> dict:
    """Rule 1: class name -> kept detections, most confident first (classes with none are absent)."""
    threshold = config.counting_threshold if tag == "counting" else config.threshold
    by_class: dict[str, list[Detection]] = {}
    for det in detections:
        by_class.setdefault(det.cls, []).append(det)
    kept = {}
    for cls, dets in by_class.items():
        order = sorted(dets, key=lambda d: -d.score)
        order = [d for d in order if d.score > threshold][: config.max_objects]
        chosen = []
        while order:
            best = order.pop(0)
            chosen.append(best)
            if config.max_overlap < 1:
                order = [d for d in order if compute_iou(best.box, d.box) < config.max_overlap]
        if chosen:
            kept[cls] = chosen
    return kept


def relative_position(box_a, box_b, position_threshold: float = 0.1) -> set[str]:
    """Relations of A to B. Centres are box midpoints, dims the box sizes, offset = cA - cB, shrunk by
    position_threshold * (dimA + dimB) per axis (sign kept, floored at 0); no relation if both shrunk
    components are below 1e-3; else (dx, dy) = shrunk / ||offset|| and "left of" dx < -0.5, "right of"
    dx > 0.5, "above" dy < -0.5, "below" dy > 0.5 (image y points down)."""
    boxes = np.array([box_a[:4], box_b[:4]], dtype=np.float64).reshape(2, 2, 2)
    center_a, center_b = boxes.mean(axis=-2)
    dim_a, dim_b = np.abs(np.diff(boxes, axis=-2))[..., 0, :]
    offset = center_a - center_b
    revised = np.maximum(np.abs(offset) - position_threshold * (dim_a + dim_b), 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    relations = set()
    if dx < -0.5:
        relations.add("left of")
    if dx > 0.5:
        relations.add("right of")
    if dy < -0.5:
        relations.add("above")
    if dy > 0.5:
        relations.add("below")
    return relations


def evaluate(
    row: dict,
    detections: Sequence[Detection],
    colour_fn: ColourFn | None = None,
    config: RuleConfig = RuleConfig(),
) -> tuple[bool, str]:
    """Score one image's detections against one metadata row: (correct, reasons joined by newlines)."""
    kept = select_detections(detections, row["tag"], config)
    correct, reasons, groups = True, [], []
    for req in row["include"]:
        cls, count = req["class"], req["count"]
        found = kept.get(cls, [])[:count]
        matched = len(found) >= count
        if not matched:
            reasons.append(f"expected {cls}>={count}, found {len(found)}")
        if matched and "color" in req:
            if colour_fn is None:
                raise ValueError(f"a colour clause needs a colour classifier: {req}")
            colours = list(colour_fn(found, cls))
            n_ok = colours.count(req["color"])
            if n_ok < count:
                matched = False
                breakdown = ", ".join(f"{colours.count(c)} {c}" for c in COLORS if c in colours)
                reasons.append(f"expected {req['color']} {cls}>={count}, found {n_ok} {req['color']}; and {breakdown}")
        if matched and "position" in req:
            relation, target = req["position"]
            if groups[target] is None:
                matched = False
                reasons.append(f"no target for {cls} to be {relation}")
            else:
                matched, reason = _check_position(found, groups[target], relation, cls, config.position_threshold)
                if not matched:
                    reasons.append(reason)
        correct &= matched
        groups.append(found if matched else None)
    for req in row.get("exclude", []):
        n_found = len(kept.get(req["class"], []))
        if n_found >= req["count"]:
            correct = False
            reasons.append(f"expected {req['class']}<{req['count']}, found {n_found}")
    return correct, "\n".join(reasons)


def _check_position(found, targets, relation, cls, position_threshold) -> tuple[bool, str]:
    """Every found object must stand in `relation` to every target object; report the first pair that does not."""
    for obj in found:
        for target in targets:
            rels = relative_position(obj.box, target.box, position_threshold)
            if relation not in rels:
                seen = " and ".join(r for r in POSITIONS if r in rels)
                return False, f"expected {cls} {relation} target, found {seen} target"
    return True, ""
