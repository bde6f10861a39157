"""The sample and score stages with two ranks (torchrun, gloo on CPU) write the same files as with one: every
image bitwise, the scores parquet exactly (the same rows in the same order with the same float values)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from sweeps.spec import load_spec
from tests.benchmark.training.helpers import two_ranks
from tests.sweeps import tiny_stages
from tests.sweeps.helpers import tiny_spec

pytestmark = pytest.mark.slow

WORKER = """
import json, sys
from pathlib import Path
from sweeps.jobs import StageJob
run_config, run_dir = json.loads(Path(sys.argv[1]).read_text()), sys.argv[2]
StageJob([(s, f"tests.sweeps.tiny_stages:{s}") for s in ("sample", "score")], run_config, run_dir)()
"""


def files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_two_ranks_sample_and_score_the_same_files_as_one(tmp_path):
    tree = tiny_spec(tmp_path, methods=())  # the pretrained run alone: both sample the same base model
    # 5 prompts x 4 images: prompts split 3 / 2 over the ranks, 20 images = 3 scoring batches of 8, 8 and 4
    tree["eval"].update(limit=5, images=4, batch_size=2)
    (run,) = load_spec(tree).runs
    one, two = run.run_dir(tmp_path / "one"), run.run_dir(tmp_path / "two")
    config = tmp_path / "run_config.json"
    config.write_text(json.dumps(run.job_config(tmp_path / "two")))
    (tmp_path / "worker.py").write_text(WORKER)
    two_ranks(tmp_path / "worker.py", config, two)

    run_config = run.job_config(tmp_path / "one")
    tiny_stages.sample(run_config, one)
    tiny_stages.score(run_config, one)

    samples_one, samples_two = files(one / "samples"), files(two / "samples")
    assert len([k for k in samples_one if k.endswith(".png")]) == 20
    assert samples_one.keys() == samples_two.keys()
    assert [k for k in samples_one if samples_one[k] != samples_two[k]] == []
    scores_one, scores_two = pd.read_parquet(one / "scores.parquet"), pd.read_parquet(two / "scores.parquet")
    assert len(scores_one) == 20 and scores_one["value"].nunique() > 1
    pd.testing.assert_frame_equal(scores_one, scores_two, check_exact=True)
