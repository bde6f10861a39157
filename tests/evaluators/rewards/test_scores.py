"""Each reward on a tiny random model of its real architecture: our score (torch preprocessing of a tensor)
against the official formula computed the official way (PIL preprocessing of the same image).

Tolerances. Native size (no resize anywhere): the two paths do the same float operations up to summation
order, so scores agree to 1e-5 relative. After a resize, PIL's uint8 rounding (see test_rewards_transforms)
perturbs the model input by about 0.004 on average; we allow 1e-2 of the score's spread over the two images
(measured: 0.0006 to 0.0043 of the spread across the four rewards; replacing the pad by a stretch gives 0.25).
Tiny random models barely tell bicubic from bilinear, so the filter itself is pinned by test_rewards_transforms.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from evaluators.rewards import tiny_reward
from evaluators.rewards.hpsv3 import INSTRUCTION, PIXELS, REWARD_SUFFIX
from evaluators.rewards.imagereward import REWARD_MEAN, REWARD_STD
from evaluators.rewards.official import hpsv2_pixels, imagereward_pixels, pickscore_pixels
from tests.evaluators.rewards.official import as_tensor, smooth_image
from tests.evaluators.rewards.reference_imagereward import ReferenceImageReward

PROMPTS = ["a photo of a cat", "a red car on the table sitting in a tree"]
NATIVE_RTOL = 1e-5
RESIZED_SPREAD_FRACTION = 1e-2


def images_of(size: tuple[int, int]):
    pils = [smooth_image(*size, seed=s) for s in (10, 11)]
    return pils, torch.cat([as_tensor(p) for p in pils])


def assert_scores_match(ours: torch.Tensor, official: torch.Tensor, resized: bool) -> None:
    assert ours.dtype == torch.float32 and ours.shape == official.shape
    if resized:
        spread = (official.max() - official.min()).abs().item()
        assert spread > 0
        assert (ours - official).abs().max().item() <= RESIZED_SPREAD_FRACTION * spread, (ours, official)
    else:
        torch.testing.assert_close(ours, official, rtol=NATIVE_RTOL, atol=1e-6)


def assert_image_gradient(reward, size=(256, 320)) -> None:
    _, x = images_of(size)
    x.requires_grad_(True)
    reward(x, PROMPTS).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum().item() > 1e-6
    assert all(p.grad is None and not p.requires_grad for p in reward.parameters())


@pytest.mark.parametrize("size", [(224, 224), (256, 320)])
def test_hpsv2_matches_official(size):
    reward = tiny_reward("hpsv2")
    pils, x = images_of(size)
    with torch.no_grad():
        f_img = reward.clip.encode_image(hpsv2_pixels(pils))
        f_txt = reward.clip.encode_text(reward.tokenizer(PROMPTS))
        f_img = f_img / f_img.norm(dim=-1, keepdim=True)
        f_txt = f_txt / f_txt.norm(dim=-1, keepdim=True)
        official = torch.diagonal(f_img @ f_txt.T)
        ours = reward(x, PROMPTS)
    assert_scores_match(ours, official, resized=size != (224, 224))


@pytest.mark.parametrize("size", [(224, 224), (256, 323)])
def test_pickscore_matches_official(size):
    reward = tiny_reward("pickscore")
    pils, x = images_of(size)
    clip, tokenizer = reward.clip, reward.tokenizer
    with torch.no_grad():
        official = []
        for pil, prompt in zip(pils, PROMPTS):
            tokens = tokenizer(prompt, padding=True, truncation=True, max_length=77, return_tensors="pt")
            f_img = clip.get_image_features(pixel_values=pickscore_pixels([pil])).pooler_output
            f_txt = clip.get_text_features(**tokens).pooler_output
            f_img = f_img / f_img.norm(dim=-1, keepdim=True)
            f_txt = f_txt / f_txt.norm(dim=-1, keepdim=True)
            official.append(clip.logit_scale.exp() * (f_txt @ f_img.T)[0, 0])
        ours = reward(x, PROMPTS)
    assert_scores_match(ours, torch.stack(official), resized=size != (224, 224))


@pytest.mark.parametrize("size", [(224, 224), (256, 323)])
def test_imagereward_matches_reference_blip_with_original_checkpoint(size):
    """The reference is BLIP's original module tree (plain torch, original names); its state dict, extras
    included, is loaded into ours through the key mapping."""
    reward = tiny_reward("imagereward")
    torch.manual_seed(1)
    reference = ReferenceImageReward.like(reward).eval()
    state = reference.state_dict()
    assert any(k.endswith("position_ids") for k in state) and "blip.vision_proj.weight" in state
    reward.load_original_state_dict(state)
    pils, x = images_of(size)
    with torch.no_grad():
        official = []
        for pil, prompt in zip(pils, PROMPTS):
            tokens = reward.tokenizer(prompt, padding="max_length", truncation=True, max_length=35,
                                      return_tensors="pt")
            r = reference(imagereward_pixels([pil]), tokens.input_ids, tokens.attention_mask)
            official.append(((r - REWARD_MEAN) / REWARD_STD)[0, 0])
        ours = reward(x, PROMPTS)
    assert_scores_match(ours, torch.stack(official), resized=size != (224, 224))


@pytest.mark.parametrize("size", [(448, 448), (512, 512)])
def test_hpsv3_matches_official_processor_path(size):
    """Official: the chat through Qwen2VLProcessor (PIL image processor, image-token expansion, right padding),
    then Qwen2VLRewardModelBT.forward: masked_scatter of the visual tokens, the text model with no position
    ids, rm_head on every token and the row at <|Reward|>, mu = column 0."""
    from transformers import Qwen2VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    reward = tiny_reward("hpsv3")
    tokenizer, qwen = reward.tokenizer, reward.qwen
    processor = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessorPil(min_pixels=PIXELS, max_pixels=PIXELS),
                                 tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor(),
                                 chat_template=tokenizer.chat_template)
    pils, x = images_of(size)
    fetched = [p.resize((448, 448)) for p in pils]  # process_vision_info: PIL resize (bicubic) to smart_resize
    messages = [[{"role": "user", "content": [{"type": "image", "image": p},
                                              {"type": "text", "text": INSTRUCTION.format(text_prompt=t)
                                               + REWARD_SUFFIX}]}] for p, t in zip(fetched, PROMPTS)]
    chats = [processor.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in messages]
    batch = processor(text=chats, images=fetched, padding=True, return_tensors="pt")
    ids = batch.input_ids
    assert batch.attention_mask[1].sum() > batch.attention_mask[0].sum()  # right padding is exercised
    with torch.no_grad():
        embeds = qwen.get_input_embeddings()(ids)
        image_embeds = qwen.visual(batch.pixel_values, grid_thw=batch.image_grid_thw).pooler_output
        mask = (ids == qwen.config.image_token_id).unsqueeze(-1).expand_as(embeds)
        embeds = embeds.masked_scatter(mask, image_embeds)
        h = qwen.language_model(inputs_embeds=embeds, attention_mask=batch.attention_mask).last_hidden_state
        logits = reward.rm_head(h)
        official = logits[ids == reward.reward_token_id].view(len(PROMPTS), -1)[:, 0]
        ours = reward(x, PROMPTS)
    assert_scores_match(ours, official, resized=size != (448, 448))


@pytest.mark.parametrize("name", ["hpsv2", "pickscore", "imagereward", "hpsv3"])
def test_gradient_with_respect_to_the_image_is_finite_and_nonzero(name):
    reward = tiny_reward(name)
    assert reward.differentiable and not reward.training
    reward.train()  # a parent's .train() must not switch dropout on
    assert not reward.training
    assert_image_gradient(reward, size=(256, 320))


def test_scores_depend_on_the_prompt_and_the_image():
    reward = tiny_reward("imagereward")
    torch.manual_seed(0)
    for p in reward.parameters():
        p.data.normal_(0, 0.2)
    _, x = images_of((224, 224))
    with torch.no_grad():
        a = reward(x, PROMPTS)
        b = reward(x, PROMPTS[::-1])
        c = reward(x.flip(0), PROMPTS)
    assert not torch.allclose(a, b) and not torch.allclose(a, c)


def test_bad_inputs_raise():
    reward = tiny_reward("hpsv2")
    with pytest.raises(ValueError, match="prompts"):
        reward(torch.rand(2, 3, 64, 64), ["one"])
    with pytest.raises(ValueError, match="B, 3, H, W"):
        reward(torch.rand(3, 64, 64), ["one"])
