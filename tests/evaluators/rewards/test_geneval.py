"""GenEval correctness as a (non-differentiable) reward, built from config like every other reward."""

import pytest
import torch

from benchmark.core.errors import ConfigError
from evaluators.geneval import ClipColourClassifier, load_detector, load_evaluation_metadata, write_metadata
from evaluators.geneval.score import score_pil
from evaluators.rewards import RewardConfig, build_reward


@pytest.fixture()
def metadata(tmp_path):
    # the tiny detector sees a dog in everything: "a photo of a dog" passes, a cat or two dogs do not
    wanted = ("a photo of a dog", "a photo of a cat", "a photo of four dogs")
    rows = [r for r in load_evaluation_metadata() if r["prompt"] in wanted]
    assert len(rows) == 3
    path = tmp_path / "train.jsonl"
    write_metadata(path, rows)
    return path, rows


@pytest.mark.parametrize("detector_fixture, protocol", [("geneval_checkpoint", "official"),
                                                        ("mask2former_dir", "hf-mask2former")])
def test_geneval_reward_equals_the_scorer(request, detector_fixture, protocol, clip_checkpoint, metadata):
    path, rows = metadata
    detector_path = request.getfixturevalue(detector_fixture)
    reward = build_reward(RewardConfig(name="geneval", path=str(detector_path), base_path=str(clip_checkpoint),
                                       metadata=str(path), clip_model="geneval-tiny-clip"))
    assert reward.differentiable is False and reward.protocol == protocol
    images = torch.rand(3, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    prompts = [r["prompt"] for r in rows]
    values = reward(images, prompts)
    detector, colour = load_detector(detector_path), ClipColourClassifier(clip_checkpoint, "geneval-tiny-clip")
    from PIL import Image

    expected = []
    for image, row in zip(images, rows):
        pil = Image.fromarray((image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())
        expected.append(float(score_pil(pil, row, detector, colour)[0]))
    assert values.tolist() == expected
    assert {row["prompt"]: v for row, v in zip(rows, expected)}["a photo of a dog"] == 1.0 and 0.0 in expected
    with pytest.raises(KeyError, match="no metadata row"):
        reward(images[:1], ["a photo of something unknown"])


def test_geneval_reward_config_errors(tmp_path, mask2former_dir, clip_checkpoint, metadata):
    path, _ = metadata
    good = dict(name="geneval", path=str(mask2former_dir), base_path=str(clip_checkpoint), metadata=str(path))
    for field, change in (("reward.path", {"path": str(tmp_path / "none")}),
                          ("reward.base_path", {"base_path": None}),
                          ("reward.metadata", {"metadata": str(tmp_path / "missing.jsonl")})):
        with pytest.raises(ConfigError, match=field):
            build_reward(RewardConfig(**{**good, **change}))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a photo of a cat"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        build_reward(RewardConfig(**{**good, "metadata": str(bad)}))
