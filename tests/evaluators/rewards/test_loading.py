"""Loading from local checkpoints in the official layouts (written from tiny models), and the key mappings."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from evaluators.rewards import HPSv2, HPSv3, ImageReward, PickScore, tiny_reward
from evaluators.rewards.imagereward_keys import original_to_ours, ours_to_original
from evaluators.rewards.tiny import TINY_OPEN_CLIP, qwen2vl_tokenizer
from tests.evaluators.rewards.reference_imagereward import ReferenceImageReward

PROMPTS = ["a photo of a cat", "a red car"]


def same_scores(a, b, size=224):
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(a(x, PROMPTS), b(x, PROMPTS), rtol=1e-5, atol=1e-6)


def test_hpsv2_loads_state_dict_from_checkpoint_file_or_directory(tmp_path):
    reward = tiny_reward("hpsv2", seed=3)
    torch.save({"state_dict": reward.clip.state_dict(), "epoch": 1}, tmp_path / "HPS_v2.1_compressed.pt")
    for path in (tmp_path, tmp_path / "HPS_v2.1_compressed.pt"):
        same_scores(reward, HPSv2.from_checkpoint(path, model_name=TINY_OPEN_CLIP))


def test_pickscore_loads_a_saved_directory(tmp_path):
    reward = tiny_reward("pickscore", seed=3)
    reward.clip.save_pretrained(tmp_path / "model")
    reward.tokenizer.save_pretrained(tmp_path / "processor")
    loaded = PickScore.from_pretrained(tmp_path / "model", base_path=tmp_path / "processor")
    same_scores(reward, loaded)


def test_imagereward_mapping_covers_every_original_key_both_ways():
    ours = tiny_reward("imagereward")
    reference = ReferenceImageReward.like(ours)
    original = reference.state_dict()
    mapped = original_to_ours(original)
    assert set(mapped) == set(ours.state_dict())  # every parameter of ours, nothing else
    back = ours_to_original(mapped)
    dropped = {k for k in original if k.startswith(("blip.vision_proj.", "blip.text_proj.")) or
               k.endswith("position_ids")}
    assert set(back) == set(original) - dropped
    assert all(torch.equal(back[k], original[k]) for k in back)


def test_imagereward_mapping_fails_loudly():
    ours = tiny_reward("imagereward")
    original = ReferenceImageReward.like(ours).state_dict()
    with pytest.raises(KeyError, match="no mapping"):
        original_to_ours({**original, "blip.visual_encoder.head.weight": torch.zeros(1)})
    missing = dict(original)
    missing.pop("blip.visual_encoder.blocks.0.attn.qkv.weight")
    with pytest.raises(RuntimeError, match="Missing key"):
        ours.load_original_state_dict(missing)


def test_imagereward_loads_the_original_layout(tmp_path):
    ours = tiny_reward("imagereward")
    original = ReferenceImageReward.like(ours).state_dict()
    torch.save(original, tmp_path / "ImageReward.pt")
    ours.tokenizer.save_pretrained(tmp_path / "bert-base-uncased")
    t = ours.text.config
    (tmp_path / "med_config.json").write_text(json.dumps(
        {"vocab_size": t.vocab_size, "hidden_size": t.hidden_size, "num_hidden_layers": t.num_hidden_layers,
         "num_attention_heads": t.num_attention_heads, "intermediate_size": t.intermediate_size,
         "max_position_embeddings": t.max_position_embeddings, "layer_norm_eps": 1e-12, "hidden_act": "gelu",
         "add_cross_attention": True, "encoder_width": 768}))
    loaded = ImageReward.from_checkpoint(tmp_path, vision_cfg=ours.vision.config)
    ours.load_original_state_dict(original)
    assert loaded.text.config.num_hidden_layers == t.num_hidden_layers
    assert loaded.text.config.encoder_hidden_size == ours.vision.config.hidden_size
    same_scores(ours, loaded)


@pytest.mark.parametrize("naming", ["transformers-4.45", "transformers-4.52"])
def test_hpsv3_loads_the_official_checkpoint_layout(tmp_path, naming):
    reward = tiny_reward("hpsv3", seed=3)
    ours = reward.state_dict()
    if naming == "transformers-4.45":
        rename = (("qwen.visual.", "visual."), ("qwen.language_model.", "model."), ("rm_head.", "rm_head."))
    else:
        rename = (("qwen.visual.", "model.visual."), ("qwen.language_model.", "model.language_model."),
                  ("rm_head.", "rm_head."))
    official = {}
    for key, value in ours.items():
        src, dst = next((s, d) for s, d in rename if key.startswith(s))
        official[dst + key[len(src):]] = value.contiguous()
    official["lm_head.weight"] = torch.zeros_like(ours["qwen.language_model.embed_tokens.weight"])
    save_file(official, str(tmp_path / "HPSv3.safetensors"))
    base = tmp_path / "Qwen2-VL-7B-Instruct"
    reward.qwen.config.save_pretrained(base)
    qwen2vl_tokenizer(with_reward_token=False).save_pretrained(base)  # the base model has no <|Reward|>
    loaded = HPSv3.from_checkpoint(tmp_path, dtype=torch.float32)
    assert loaded.reward_token_id == reward.reward_token_id
    same_scores(reward, loaded, size=448)


REGISTER = """
import open_clip.factory
from evaluators.rewards.tiny import TINY_OPEN_CLIP, register_tiny_open_clip
for _ in range(200):
    open_clip.factory._MODEL_CONFIGS.pop(TINY_OPEN_CLIP, None)  # as in a fresh process, every time
    register_tiny_open_clip()
"""


def test_ranks_register_the_tiny_open_clip_at_the_same_time(tmp_path):
    """Two processes (the ranks of a scoring stage) register the tiny HPSv2 model at once: each reads its own
    config file (one shared file, rewritten by one while the other read it, was once read empty)."""
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", REGISTER], env=env, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert list(tmp_path.iterdir()) == []  # nothing left behind
