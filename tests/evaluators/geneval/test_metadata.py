"""GenEval metadata loading: the official 553 prompts and clear errors for malformed lines."""

import json
import os
from collections import Counter
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmark.core.errors import ConfigError
from evaluators.geneval.metadata import load_evaluation_metadata, load_metadata, load_prompt_metadata

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "geneval"
OFFICIAL_COUNTS = {"single_object": 80, "two_object": 99, "counting": 80, "colors": 94, "position": 100, "color_attr": 100}
GOOD = {"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"}


@pytest.mark.parametrize("source", ["packaged", "shared"])
def test_official_prompts_load_with_task_counts(source):
    if source == "shared" and not SHARED.is_dir():
        pytest.skip("../shared/data/geneval not beside the repo")
    rows = load_evaluation_metadata() if source == "packaged" else load_metadata(SHARED / "evaluation_metadata.jsonl")
    assert len(rows) == 553
    assert Counter(r["tag"] for r in rows) == OFFICIAL_COUNTS
    assert rows[0]["prompt"] == "a photo of a bench"


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ('{"tag": "single_object", "include": [', "invalid JSON"),
        (json.dumps({"tag": "single_object", "prompt": "x"}), r"missing field\(s\) \['include'\]"),
        (json.dumps({**GOOD, "tag": "shapes"}), "unknown tag 'shapes'"),
        (json.dumps({**GOOD, "include": [{"class": "bench", "count": 1, "colour": "red"}]}), r"unknown key\(s\) \['colour'\]"),
        (json.dumps({**GOOD, "include": [{"class": "unicorn", "count": 1}]}), "not one of the 80 COCO"),
        (json.dumps({**GOOD, "include": [{"class": "bench", "count": 0}]}), "positive integer"),
        (json.dumps({**GOOD, "include": [{"class": "bench", "count": 1, "position": ["left of", 0]}]}), "earlier include"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, bad_line, message):
    path = tmp_path / "meta.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n" + bad_line + "\n" + json.dumps(GOOD) + "\n")
    with pytest.raises(ValueError, match=rf"meta\.jsonl:3: .*{message}"):
        load_metadata(path)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(ConfigError, match="metadata"):
        load_metadata(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="no metadata rows"):
        load_metadata(tmp_path / "empty.jsonl")


def test_prompt_folder_metadata_is_one_object(tmp_path):
    path = tmp_path / "metadata.jsonl"
    path.write_text(json.dumps(GOOD, indent=1))  # GenEval reads it with json.load: pretty-printed is fine
    assert load_prompt_metadata(path) == GOOD
    path.write_text('{"tag": "single_object",\n "include": [}')
    with pytest.raises(ValueError, match=r"metadata\.jsonl:2: invalid JSON"):
        load_prompt_metadata(path)
