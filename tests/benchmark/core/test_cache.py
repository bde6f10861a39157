"""Prompt sets and the embedding cache: formats, sharded atomic resumable writes, reads as backbone conditioning,
and `leapbench embed` through a real (tiny) FluxPipeline's CLIP-L + T5 encoders, loaded offline."""

import json

import pytest
import torch
import yaml

from benchmark.cli import main
from benchmark.core.backbones.flux import FluxCond
from benchmark.core.backbones.sd3 import SD3Cond
from benchmark.core.cache import EmbeddingCache, prompt_key, write_cache
from benchmark.core.errors import ConfigError
from benchmark.core.prompts import load_prompts
from benchmark.core.testing import PROMPTS, fake_encoder, tiny_flux_pipeline

pytestmark = pytest.mark.usefixtures("one_thread")


def test_prompt_formats(tmp_path):
    (tmp_path / "p.txt").write_text("a cat\n\n  a dog  \n")
    (tmp_path / "p.json").write_text(json.dumps(["a cat", "a dog"]))
    (tmp_path / "p.jsonl").write_text('{"tag": "single_object", "include": [], "prompt": "a cat"}\n{"prompt": "a dog"}\n')
    for name in ("p.txt", "p.json", "p.jsonl"):
        assert load_prompts(tmp_path / name) == ["a cat", "a dog"]
    (tmp_path / "bad.jsonl").write_text('{"text": "a cat"}\n')
    with pytest.raises(ConfigError, match="prompts.file"):
        load_prompts(tmp_path / "bad.jsonl")
    with pytest.raises(ConfigError, match="prompts.file"):
        load_prompts(tmp_path / "missing.txt")


def test_cache_is_sharded_resumable_and_reads_as_cond(tmp_path):
    calls = []
    encode = fake_encoder("flux")

    def counting(prompts):
        calls.append(list(prompts))
        return encode(prompts)

    write_cache(tmp_path, PROMPTS[:5], counting, "flux", batch_size=2, shard_size=3)
    assert sorted(p.name for p in tmp_path.glob("shard-*")) == ["shard-00000.safetensors", "shard-00001.safetensors"]
    assert sum(map(len, calls)) == 5
    calls.clear()
    index = write_cache(tmp_path, PROMPTS, counting, "flux", batch_size=2, shard_size=3)  # resumes
    assert sum(calls, []) == PROMPTS[5:]  # only the new prompts are encoded
    assert len(index["prompts"]) == len(PROMPTS) and not list(tmp_path.glob(".*tmp"))
    cache = EmbeddingCache.open(tmp_path)
    assert cache.prompt_set() == PROMPTS and cache.backbone == "flux"
    cond = cache.cond([PROMPTS[6], PROMPTS[0]])
    assert isinstance(cond, FluxCond) and cond.prompt_embeds.shape == (2, 8, 32)
    assert torch.equal(cond.prompt_embeds, encode([PROMPTS[6], PROMPTS[0]])["prompt_embeds"])
    assert index["prompts"][prompt_key(PROMPTS[0])]["prompt"] == PROMPTS[0]


def test_interrupted_write_leaves_a_valid_cache(tmp_path):
    encode = fake_encoder("flux")

    def dies_on_second_shard(prompts):
        if PROMPTS[3] in prompts:
            raise KeyboardInterrupt
        return encode(prompts)

    with pytest.raises(KeyboardInterrupt):
        write_cache(tmp_path, PROMPTS, dies_on_second_shard, "flux", batch_size=1, shard_size=3)
    assert EmbeddingCache.open(tmp_path).prompt_set() is not None
    assert len(json.loads((tmp_path / "index.json").read_text())["prompts"]) == 3  # the first shard only
    write_cache(tmp_path, PROMPTS, encode, "flux", batch_size=4, shard_size=3)
    assert len(EmbeddingCache.open(tmp_path).prompt_set()) == len(PROMPTS)


def test_sd3_cache_carries_the_empty_negative_prompt(tmp_path):
    write_cache(tmp_path, PROMPTS[:3], fake_encoder("sd3"), "sd3")
    cache = EmbeddingCache.open(tmp_path)
    cond = cache.cond(PROMPTS[:2])
    assert isinstance(cond, SD3Cond) and cond.negative_prompt_embeds.shape == cond.prompt_embeds.shape
    assert torch.equal(cond.negative_pooled_prompt_embeds[0], fake_encoder("sd3")([""])["pooled_prompt_embeds"][0])
    assert cache.prompt_set() == PROMPTS[:3]  # the negative is not a training prompt


def test_embed_cli_with_a_tiny_flux_pipeline(tmp_path):
    pipe = tiny_flux_pipeline(tmp_path)
    pipe.save_pretrained(tmp_path / "flux")
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS[:3]))
    config = {"backbone": {"name": "flux", "path": str(tmp_path / "flux"), "dtype": "float32"},
              "prompts": {"file": str(tmp_path / "prompts.jsonl"), "cache": str(tmp_path / "cache")}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    assert main(["embed", "--config", str(tmp_path / "run.yaml"), "--batch-size", "2",
                 "--max-sequence-length", "16"]) == 0
    cache = EmbeddingCache.open(tmp_path / "cache")
    cond = cache.cond(PROMPTS[:3])
    with torch.no_grad():
        embeds, pooled, _ = pipe.encode_prompt(PROMPTS[:3], None, max_sequence_length=16)
    torch.testing.assert_close(cond.prompt_embeds, embeds)  # T5 tokens (B, 16, 32)
    torch.testing.assert_close(cond.pooled_prompt_embeds, pooled)  # CLIP-L pooled (B, 32)
    # a second run with one more prompt encodes only that one
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS[:4]))
    assert main(["embed", "--config", str(tmp_path / "run.yaml"), "--max-sequence-length", "16"]) == 0
    assert len(EmbeddingCache.open(tmp_path / "cache")) == 4


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_a_damaged_shard_is_refused_and_embed_repairs_it(tmp_path, damage):
    from benchmark.core.cache import EmbeddingCache, shard_problem
    from benchmark.core.errors import ConfigError
    from benchmark.core.testing import PROMPTS, fake_encoder, tiny_cache

    root = tiny_cache(tmp_path / "cache", "flux", PROMPTS)
    expected = EmbeddingCache.open(root).tensors(PROMPTS)
    shard = sorted(root.glob("shard-*.safetensors"))[1]
    data = shard.read_bytes()
    if damage == "truncate":
        shard.write_bytes(data[:-64])
    elif damage == "flip":  # same size, same header: only the checksum sees it
        shard.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    else:
        shard.unlink()
    if damage != "flip":
        with pytest.raises(ConfigError, match=shard.name):
            EmbeddingCache.open(root)
    calls = []
    encode = fake_encoder("flux")
    write_cache(root, PROMPTS, lambda batch: calls.append(batch) or encode(batch), "flux", batch_size=4, shard_size=4)
    assert sum(len(c) for c in calls) == 4  # only the damaged shard's prompts were encoded again
    repaired = EmbeddingCache.open(root)
    assert all(shard_problem(root / s, r, checksum=True) is None for s, r in repaired.index["shards"].items())
    got = repaired.tensors(PROMPTS)
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    assert not [p for p in root.iterdir() if p.name.startswith(".")]
