"""GenEval prompt generation: official templates, paper ratios, exclusion of the evaluation set."""

import json
import os
from collections import Counter
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmark.core.errors import ConfigError
from evaluators.geneval.metadata import check_row, load_evaluation_metadata, load_metadata, write_metadata
from evaluators.geneval.prompts import PAPER_RATIOS, allocate, generate_suite, generate_training_prompts
from evaluators.geneval.vocab import CLASSES, EVALUATION_METADATA_PATH, OBJECT_NAMES_PATH, make_plural, with_article

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "geneval"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/geneval not beside the repo")


@needs_shared
def test_packaged_copies_match_the_official_files():
    assert EVALUATION_METADATA_PATH.read_bytes() == (SHARED / "evaluation_metadata.jsonl").read_bytes()
    assert OBJECT_NAMES_PATH.read_bytes() == (SHARED / "object_names.txt").read_bytes()


@needs_shared
def test_seed_43_reproduces_the_official_evaluation_file_byte_for_byte():
    # Same rng calls as GenEval's create_prompts.py: checks every template, article, plural and key order.
    text = "".join(json.dumps(row) + "\n" for row in generate_suite(seed=43, n=100))
    assert text == (SHARED / "evaluation_metadata.jsonl").read_text()
    prompts = [row["prompt"] for row in generate_suite(seed=43, n=100)]
    assert prompts == (SHARED / "generation_prompts.txt").read_text().splitlines()


def test_article_and_plural_rules():
    assert with_article("apple") == "an apple" and with_article("umbrella") == "an umbrella"
    assert with_article("hot dog") == "a hot dog" and with_article("orange") == "an orange"
    assert make_plural("bus") == "buses" and make_plural("skis") == "skises"  # GenEval's literal rule
    assert make_plural("bench") == "benchs" and make_plural("clock") == "clocks"


def test_largest_remainder_allocation_is_exact():
    assert allocate(170, PAPER_RATIOS) == {
        "single_object": 0, "two_object": 10, "counting": 50, "colors": 10, "position": 70, "color_attr": 30
    }
    # 100 * (7, 5, 3, 1, 1) / 17 = 41.18, 29.41, 17.65, 5.88, 5.88: floors 97, then +1 to the three largest remainders.
    assert allocate(100, PAPER_RATIOS) == {
        "single_object": 0, "two_object": 6, "counting": 29, "colors": 6, "position": 41, "color_attr": 18
    }
    for n in (1, 7, 99, 333, 544):
        counts = allocate(n, PAPER_RATIOS)
        assert sum(counts.values()) == n
        assert all(abs(counts[t] - n * w / 17) < 1 for t, w in PAPER_RATIOS.items())


def test_paper_ratios_hold_exactly_with_no_evaluation_prompt_and_no_duplicate():
    rows = generate_training_prompts(544, PAPER_RATIOS, seed=1)
    assert Counter(row["tag"] for row in rows) == Counter(allocate(544, PAPER_RATIOS))
    prompts = [row["prompt"] for row in rows]
    assert len(set(prompts)) == len(prompts) == 544
    assert not set(prompts) & {row["prompt"] for row in load_evaluation_metadata()}
    for row in rows:
        check_row(row)
        keys = ["tag", "include", "exclude", "prompt"] if row["tag"] == "counting" else ["tag", "include", "prompt"]
        assert list(row) == keys
        if row["tag"] == "counting":
            n = row["include"][0]["count"]
            assert 2 <= n <= 4 and row["exclude"] == [{"class": row["include"][0]["class"], "count": n + 1}]
        if row["tag"] in ("colors", "color_attr"):
            assert "person" not in [c["class"] for c in row["include"]]
        if row["tag"] == "position":
            b, a = row["include"]
            assert row["prompt"] == f"a photo of {with_article(a['class'])} {a['position'][0]} {with_article(b['class'])}"
            assert a["position"][1] == 0 and a["class"] != b["class"]


def test_seeded_and_deterministic():
    assert generate_training_prompts(50, seed=3) == generate_training_prompts(50, seed=3)
    assert generate_training_prompts(50, seed=3) != generate_training_prompts(50, seed=4)


def test_capacity_error_and_exclusion_override():
    # Counting has 80 classes x 3 counts = 240 prompts, 80 of them in the evaluation set: 160 are left.
    assert Counter(r["tag"] for r in generate_training_prompts(160, {"counting": 1}, seed=0))["counting"] == 160
    with pytest.raises(ConfigError, match="at most 160 distinct new counting"):
        generate_training_prompts(161, {"counting": 1})
    with pytest.raises(ConfigError, match="at most 0 distinct new single_object"):
        generate_training_prompts(1, {"single_object": 1})
    rows = generate_training_prompts(80, {"single_object": 1}, exclude=())
    assert sorted(r["include"][0]["class"] for r in rows) == sorted(CLASSES)
    with pytest.raises(ConfigError, match="ratios"):
        generate_training_prompts(10, {"colour": 1})
    with pytest.raises(ConfigError, match="n"):
        generate_training_prompts(0)


def test_write_metadata_round_trips_atomically(tmp_path):
    rows = generate_training_prompts(40, seed=0)
    path = tmp_path / "train.jsonl"
    write_metadata(path, rows)
    assert load_metadata(path) == rows
    assert path.read_text() == "".join(json.dumps(r) + "\n" for r in rows)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="row 1: unknown tag"):
        write_metadata(path, [rows[0], {**rows[1], "tag": "shape"}])
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["train.jsonl"]


def test_repeats_reach_the_papers_size_without_evaluation_prompts():
    from evaluators.geneval import allocate, generate_training_prompts, load_evaluation_metadata

    rows = generate_training_prompts(5000, seed=3, unique=False)
    tags = [r["tag"] for r in rows]
    assert {t: tags.count(t) for t in set(tags)} == {t: c for t, c in allocate(5000, PAPER_RATIOS).items() if c}
    prompts = [r["prompt"] for r in rows]
    assert not set(prompts) & {r["prompt"] for r in load_evaluation_metadata()}
    assert len(set(prompts)) < len(prompts)  # repeats happen (counting has only 160 distinct prompts left)
    with pytest.raises(ConfigError, match="at most"):
        generate_training_prompts(5000, seed=3)  # distinct prompts run out
