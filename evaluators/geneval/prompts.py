"""GenEval prompt generation: the official suite and de-duplicated training prompts.

Each `sample_*` function draws from a numpy Generator exactly as GenEval's prompts/create_prompts.py does
(same calls in the same order), so `generate_suite(seed=43, n=100)` reproduces the official 553-prompt
evaluation set. Rows are dicts with GenEval's key order: tag, include, [exclude], prompt.
"""

import json
import math
from collections.abc import Iterable, Mapping

import numpy as np

from benchmark.core.errors import ConfigError
from evaluators.geneval.metadata import load_evaluation_metadata
from evaluators.geneval.vocab import CLASSES, COLORS, NUMBERS, POSITIONS, TAGS, make_plural, with_article

# The LeapAlign paper's training mix: position:counting:color_attr:colors:two_object:single_object.
PAPER_RATIOS = {"position": 7, "counting": 5, "color_attr": 3, "colors": 1, "two_object": 1, "single_object": 0}
_PERSON = CLASSES.index("person")


def sample_single_objects(rng: np.random.Generator, size: int) -> list[dict]:
    """`size` distinct classes: "a photo of {a} {obj}", include {class, count 1}."""
    idxs = rng.choice(len(CLASSES), size=min(size, len(CLASSES)), replace=False)
    return [_single(CLASSES[i]) for i in idxs]


def sample_single_object(rng: np.random.Generator) -> dict:
    """One class drawn uniformly (training use; the official suite takes all 80 at once)."""
    return _single(CLASSES[rng.choice(len(CLASSES))])


def _single(name: str) -> dict:
    return {"tag": "single_object", "include": [{"class": name, "count": 1}], "prompt": f"a photo of {with_article(name)}"}


def sample_two_object(rng: np.random.Generator) -> dict:
    """Two different classes A, B: "a photo of {a} {A} and {a} {B}", both count 1."""
    a, b = (CLASSES[i] for i in rng.choice(len(CLASSES), size=2, replace=False))
    include = [{"class": a, "count": 1}, {"class": b, "count": 1}]
    return {"tag": "two_object", "include": include, "prompt": f"a photo of {with_article(a)} and {with_article(b)}"}


def sample_counting(rng: np.random.Generator, max_count: int = 4) -> dict:
    """N uniform in 2..max_count: "a photo of {N as word} {plural}", include count N, exclude count N + 1."""
    name = CLASSES[rng.choice(len(CLASSES))]
    num = int(rng.integers(2, max_count, endpoint=True))
    return {
        "tag": "counting",
        "include": [{"class": name, "count": num}],
        "exclude": [{"class": name, "count": num + 1}],
        "prompt": f"a photo of {NUMBERS[num]} {make_plural(name)}",
    }


def _non_person(idx):
    """GenEval skips "person" for colour prompts: draw from 79 and rotate past person's index."""
    return (idx + 1 + _PERSON) % len(CLASSES)


def sample_colors(rng: np.random.Generator) -> dict:
    """"a photo of {a} {color} {obj}", never person; include {class, count 1, color}."""
    name = CLASSES[_non_person(rng.choice(len(CLASSES) - 1))]
    color = COLORS[rng.choice(len(COLORS))]
    include = [{"class": name, "count": 1, "color": color}]
    return {"tag": "colors", "include": include, "prompt": f"a photo of {with_article(color)} {name}"}


def sample_position(rng: np.random.Generator) -> dict:
    """"a photo of {a} {A} {rel} {a} {B}": include B first, then A with position [rel, 0] (group 0 = B)."""
    idx_a, idx_b = rng.choice(len(CLASSES), size=2, replace=False)
    a, b = CLASSES[idx_a], CLASSES[idx_b]
    rel = POSITIONS[rng.choice(len(POSITIONS))]
    include = [{"class": b, "count": 1}, {"class": a, "count": 1, "position": [rel, 0]}]
    return {"tag": "position", "include": include, "prompt": f"a photo of {with_article(a)} {rel} {with_article(b)}"}


def sample_color_attr(rng: np.random.Generator) -> dict:
    """"a photo of {a} {c1} {A} and {a} {c2} {B}": A != B, c1 != c2, no person; both with colours."""
    idx_a, idx_b = (_non_person(i) for i in rng.choice(len(CLASSES) - 1, size=2, replace=False))
    c_a, c_b = (COLORS[i] for i in rng.choice(len(COLORS), size=2, replace=False))
    a, b = CLASSES[idx_a], CLASSES[idx_b]
    include = [{"class": a, "count": 1, "color": c_a}, {"class": b, "count": 1, "color": c_b}]
    prompt = f"a photo of {with_article(c_a)} {a} and {with_article(c_b)} {b}"
    return {"tag": "color_attr", "include": include, "prompt": prompt}


def generate_suite(seed: int = 43, n: int = 100) -> list[dict]:
    """GenEval's generate_suite: all 80 single objects, then n draws per other task, de-duplicated."""
    rng = np.random.default_rng(seed)
    rows = sample_single_objects(rng, len(CLASSES))
    for draw in (sample_two_object, sample_counting, sample_colors, sample_position, sample_color_attr):
        rows.extend(draw(rng) for _ in range(n))
    seen, unique = set(), []
    for row in rows:
        key = json.dumps(row)
        if key not in seen:
            seen.add(key)
            unique.append(row)
    return unique


def allocate(n: int, ratios: Mapping[str, float]) -> dict[str, int]:
    """Split n over the tasks in proportion to `ratios` by largest remainder (ties go to TAGS order).

    The counts sum to n and each differs from n * r / sum(r) by less than 1.
    """
    unknown = sorted(set(ratios) - set(TAGS))
    if unknown:
        raise ConfigError("ratios", f"keys among {list(TAGS)}", unknown)
    weights = {tag: float(ratios.get(tag, 0)) for tag in TAGS}
    if any(w < 0 or not np.isfinite(w) for w in weights.values()) or sum(weights.values()) <= 0:
        raise ConfigError("ratios", "finite non-negative weights with a positive sum", dict(ratios))
    total = sum(weights.values())
    quotas = {tag: n * w / total for tag, w in weights.items()}
    counts = {tag: int(np.floor(q)) for tag, q in quotas.items()}
    by_remainder = sorted(TAGS, key=lambda t: (-(quotas[t] - counts[t]), TAGS.index(t)))
    for tag in by_remainder[: n - sum(counts.values())]:
        counts[tag] += 1
    return counts


def _space_size(tag: str, max_count: int) -> int:
    """How many distinct prompts a task's template can produce."""
    c = len(CLASSES)
    return {
        "single_object": c,
        "two_object": c * (c - 1),
        "counting": c * (max_count - 1),
        "colors": (c - 1) * len(COLORS),
        "position": c * (c - 1) * len(POSITIONS),
        "color_attr": (c - 1) * (c - 2) * len(COLORS) * (len(COLORS) - 1),
    }[tag]


def generate_training_prompts(
    n: int,
    ratios: Mapping[str, float] = PAPER_RATIOS,
    seed: int = 0,
    exclude: Iterable[dict] | None = None,
    max_count: int = 4,
    unique: bool = True,
) -> list[dict]:
    """n GenEval-style rows, task counts from `allocate(n, ratios)`, shuffled by the same rng.

    Draws use GenEval's templates and rules (numpy default_rng(seed)); a prompt present in `exclude`
    (metadata rows; default: the official 553 evaluation prompts, pass () for none) is redrawn, and with
    `unique` so is one already drawn. Distinct prompts run out early (at 7:5:3:1:1:0 and max_count 4, 544
    in all): the paper's 50,000 training prompts need `unique=False`, which draws with replacement.
    Raises ConfigError when a task asks for more prompts than its template can still produce.
    """
    if not isinstance(n, int) or n <= 0:
        raise ConfigError("n", "a positive integer", n)
    if not isinstance(max_count, int) or not 2 <= max_count <= len(NUMBERS) - 1:
        raise ConfigError("max_count", f"an integer in 2..{len(NUMBERS) - 1}", max_count)
    exclude = load_evaluation_metadata() if exclude is None else list(exclude)
    excluded = {row["prompt"] for row in exclude}
    counts = allocate(n, ratios)
    rng = np.random.default_rng(seed)
    draws = {
        "single_object": sample_single_object,
        "two_object": sample_two_object,
        "counting": lambda r: sample_counting(r, max_count),
        "colors": sample_colors,
        "position": sample_position,
        "color_attr": sample_color_attr,
    }
    rows = []
    for tag in TAGS:
        in_space = {
            row["prompt"] for row in exclude
            if row["tag"] == tag and (tag != "counting" or row["include"][0]["count"] <= max_count)
        }
        left = _space_size(tag, max_count) - len(in_space)
        capacity = left if unique else (math.inf if left else 0)  # with repeats: any number, if any is left
        if counts[tag] > capacity:
            raise ConfigError(
                f"ratios[{tag!r}]",
                f"at most {left} distinct new {tag} prompts (lower n or this ratio"
                + (", or raise max_count)" if tag == "counting" else ")"),
                f"{counts[tag]} for n={n}",
            )
        taken = 0
        while taken < counts[tag]:
            row = draws[tag](rng)
            if row["prompt"] not in excluded:
                if unique:
                    excluded.add(row["prompt"])
                rows.append(row)
                taken += 1
    return [rows[i] for i in rng.permutation(len(rows))]
