"""``leapbench score``: per-image parquet from tiny rewards, a stub UnifiedReward server and tiny GenEval models."""

import re

import numpy as np
import pandas as pd
import pytest

from benchmark.cli import main
from evaluators.report import validate_scores
from evaluators.rewards import PickScore, tiny_reward
from evaluators.score import list_samples, load_images, reward_scorer, score_rewards
from tests.benchmark.cli.helpers import GENEVAL_ROWS, PROMPTS, write_samples
from tests.evaluators.chat_stub import ChatStub


@pytest.fixture
def samples(tmp_path):
    return write_samples(tmp_path / "samples", [{"prompt": p} for p in PROMPTS])


@pytest.fixture(scope="module")
def pickscore_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pickscore")
    reward = tiny_reward("pickscore", seed=1)
    reward.clip.save_pretrained(root / "model")
    reward.tokenizer.save_pretrained(root / "processor")
    return root / "model", root / "processor"


def score(*args):
    return main(["score", *map(str, args), "--batch-size", "4", "--no-progress", "--device", "cpu"])


def test_reward_scores_equal_calling_the_reward(samples, pickscore_dirs, tmp_path):
    model, processor = pickscore_dirs
    out = tmp_path / "scores.parquet"
    assert score(samples, "--out", out, "--reward", f"pickscore:{model}:{processor}") == 0
    frame = pd.read_parquet(out)
    assert list(validate_scores(frame).columns) == list(frame.columns)
    assert len(frame) == len(PROMPTS) * 2 and set(frame["metric"]) == {"pickscore"}
    assert set(frame["run"]) == {"flux-refl"} and set(frame["method"]) == {"refl"}
    assert set(frame["prompt_set"]) == {"hpdv2"} and list(frame["tag"].unique()) == [""]
    assert list(zip(frame["prompt_id"], frame["image"])) == [(p, k) for p in range(3) for k in range(2)]
    found = list_samples(samples)
    reward = PickScore.from_pretrained(model, base_path=processor)
    direct = reward.evaluate(load_images(found), [s.prompt for s in found])  # the official preprocessing
    np.testing.assert_allclose(frame["value"].to_numpy(), direct.numpy(), rtol=1e-5, atol=1e-6)
    assert list(frame["prompt"]) == [s.prompt for s in found] and set(frame["protocol"]) == {"official"}


def test_score_rewards_in_batches_equals_one_call(samples):
    # tiny HPSv2 (open_clip) through the Python API: batches of 4 + 2 give the values of one call on all 6
    reward = tiny_reward("hpsv2", seed=2)
    found = list_samples(samples)
    frame = score_rewards(found, [reward_scorer("hpsv2.1", reward)], batch_size=4)
    direct = reward.evaluate(load_images(found), [s.prompt for s in found])
    np.testing.assert_allclose(frame["value"].to_numpy(), direct.numpy(), rtol=1e-5, atol=1e-6)
    assert set(frame["metric"]) == {"hpsv2.1"} and list(frame["image"]) == [0, 1] * 3


def test_rerun_keeps_existing_metrics_and_other_runs(samples, pickscore_dirs, tmp_path, monkeypatch, capsys):
    import evaluators.rewards

    model, processor = pickscore_dirs
    out = tmp_path / "scores.parquet"
    spec = f"pickscore:{model}:{processor}"
    assert score(samples, "--out", out, "--reward", spec) == 0
    assert score(samples, "--out", out, "--reward", spec, "--run", "pretrained", "--method", "pretrained") == 0
    first = pd.read_parquet(out)
    assert sorted(first["run"].unique()) == ["flux-refl", "pretrained"] and len(first) == 12
    mtime = out.stat().st_mtime_ns

    def no_load(*args, **kwargs):
        raise AssertionError("a reward was loaded")

    monkeypatch.setattr(evaluators.rewards, "build_reward", no_load)
    assert score(samples, "--out", out, "--reward", spec) == 0
    assert "already holds pickscore" in capsys.readouterr().out
    assert out.stat().st_mtime_ns == mtime


def judge(body: dict) -> tuple[int, str]:
    """ACS scores that depend only on the caption."""
    caption = re.search(r"Text Caption: \[(.*)\]", body["messages"][0]["content"][1]["text"]).group(1)
    i = PROMPTS.index(caption)
    return 200, f"Alignment Score (1-5): {i + 1}\nCoherence Score (1-5): {i + 2.5}\nStyle Score (1-5): 1"


def test_unified_reward_gives_alignment_and_image_quality_from_one_reply(samples, tmp_path):
    stub = ChatStub(judge)
    try:
        out = tmp_path / "ur.parquet"
        assert score(samples, "--out", out, "--unified-reward", stub.url, "--ur-workers", "3") == 0
    finally:
        stub.close()
    frame = pd.read_parquet(out)
    assert len(stub.requests) == len(PROMPTS) * 2  # one ACS request per image for both metrics
    for metric, offset in (("ur_alignment", 1.0), ("ur_iq", 2.5)):
        rows = frame[frame["metric"] == metric]
        assert list(rows["value"]) == [p + offset for p in rows["prompt_id"]]


def test_geneval_scores_one_row_per_image_with_its_task(tmp_path, mask2former_dir, clip_checkpoint):
    from evaluators.geneval import ClipColourClassifier, Mask2FormerDetector, score_folder

    root = write_samples(tmp_path / "geneval", GENEVAL_ROWS, size=64, labels=False)
    out = tmp_path / "geneval.parquet"
    assert score(root, "--out", out, "--geneval-detector", mask2former_dir, "--geneval-clip", clip_checkpoint,
                 "--geneval-clip-model", "geneval-tiny-clip", "--run", "base", "--method", "pretrained",
                 "--prompt-set", "geneval") == 0
    frame = validate_scores(pd.read_parquet(out))
    assert len(frame) == 4 and set(frame["metric"]) == {"geneval"}
    assert list(frame["tag"]) == ["single_object"] * 2 + ["colors"] * 2
    reference = score_folder(root, Mask2FormerDetector(mask2former_dir),
                             ClipColourClassifier(clip_checkpoint, model_name="geneval-tiny-clip"), progress=False)
    assert list(frame["value"]) == [float(c) for c in reference["correct"]]
    assert set(frame["value"]) <= {0.0, 1.0} and set(frame["protocol"]) == {"hf-mask2former"}


def test_geneval_with_genevals_checkpoint_is_official(tmp_path, geneval_checkpoint, clip_checkpoint):
    from evaluators.geneval import ClipColourClassifier, OfficialDetector, score_folder

    root = write_samples(tmp_path / "geneval", GENEVAL_ROWS, images=1, size=64, labels=False)
    out = tmp_path / "geneval.parquet"
    assert score(root, "--out", out, "--geneval-detector", geneval_checkpoint, "--geneval-clip", clip_checkpoint,
                 "--geneval-clip-model", "geneval-tiny-clip", "--run", "base", "--method", "pretrained",
                 "--prompt-set", "geneval") == 0
    frame = validate_scores(pd.read_parquet(out))
    assert set(frame["protocol"]) == {"official"} and len(frame) == 2
    reference = score_folder(root, OfficialDetector(geneval_checkpoint),
                             ClipColourClassifier(clip_checkpoint, model_name="geneval-tiny-clip"), progress=False)
    assert list(frame["value"]) == [float(c) for c in reference["correct"]]


def test_bad_input_is_one_error_before_loading(samples, pickscore_dirs, tmp_path, capsys, monkeypatch):
    import evaluators.rewards

    monkeypatch.setattr(evaluators.rewards, "build_reward", lambda *a, **k: pytest.fail("a reward was loaded"))
    model, processor = pickscore_dirs
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"not parquet")
    unlabelled = write_samples(tmp_path / "unlabelled", [{"prompt": "x"}], images=1, labels=False)
    geneval = write_samples(tmp_path / "geneval", GENEVAL_ROWS[:1], images=1)
    cases = {
        "missing samples": ([tmp_path / "nope", "--reward", f"pickscore:{model}"], "samples"),
        "unknown reward": ([samples, "--reward", "clipscore:/x"], "--reward"),
        "missing checkpoint": ([samples, "--reward", f"hpsv2:{tmp_path / 'none.pt'}"], "--reward hpsv2.path"),
        "nothing to score": ([samples], "at least one"),
        "geneval on plain prompts": ([samples, "--geneval-detector", tmp_path], "GenEval metadata"),
        "geneval detector neither file nor folder": ([geneval, "--geneval-detector", tmp_path / "no.pth"],
                                                     "--geneval-detector"),
        "bad server url": ([samples, "--unified-reward", "localhost:8000"], "--unified-reward"),
        "no labels": ([unlabelled, "--reward", f"pickscore:{model}:{processor}"], "--run"),
    }
    for name, (args, expected) in cases.items():
        out = tmp_path / "out.parquet"
        assert score(*args, "--out", out) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("leapbench score: ") and expected in err[0], (name, err)
        assert not out.exists(), name
    assert score(samples, "--out", tmp_path / "s.csv", "--reward", f"pickscore:{model}:{processor}") == 2
    assert "--out: expected a .parquet file" in capsys.readouterr().err and not (tmp_path / "s.csv").exists()
    assert score(samples, "--out", corrupt, "--reward", f"pickscore:{model}:{processor}") == 2
    assert "readable scores parquet" in capsys.readouterr().err and corrupt.read_bytes() == b"not parquet"
