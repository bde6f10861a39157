"""HPSv3 (MizzenAI/HPSv3): Qwen2-VL-7B-Instruct with a ``<|Reward|>`` token and an MLP head to (mu, sigma).

score = mu = rm_head(h_L[<|Reward|>])[0] (about 10 for SD3.5-M), where h_L is the last hidden state of the
Qwen2-VL language model over the chat ``<image> INSTRUCTION(prompt) + "Please provide the overall ratings of
this image: <|Reward|>\\n\\nEND"`` and rm_head = Linear(D, 1024) ReLU Dropout Linear(1024, 16) ReLU
Linear(16, 2) in fp32. The image is resized (bicubic) to Qwen2-VL's ``smart_resize`` with
min_pixels = max_pixels = 256 * 28 * 28 (448 x 448 for a square image, 256 visual tokens), normalised with
the OpenAI CLIP mean/std and patchified exactly as ``Qwen2VLImageProcessor`` lays out ``pixel_values``
(whose own smart_resize, with Qwen2-VL-7B-Instruct's min_pixels 3136 and max_pixels 12845056, keeps that
size). ``forward`` (training) resizes the image tensor; ``evaluate`` resizes the decoded image with PIL and
runs the PIL processor, as the official ``HPSv3RewardInferencer.reward`` does, in the loaded dtype (bfloat16
by default, the official inferencer's; its rm_head runs in float32 as here).
The official model (transformers 4.45) calls the text model with no position ids, so all three M-RoPE
sections use plain 1D positions 0..L-1; we do the same by calling ``language_model`` without position ids.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file
from tokenizers import AddedToken
from torch import Tensor, nn
from transformers import AutoTokenizer, Qwen2VLConfig, Qwen2VLModel
from transformers.initialization import no_init_weights
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

from benchmark.core.dtypes import DTYPES
from benchmark.core.errors import ConfigError
from evaluators.rewards.base import Reward, require_dir
from evaluators.rewards.official import hpsv3_pixels
from evaluators.rewards.transforms import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, normalize, resize

CHECKPOINT_NAME = "HPSv3.safetensors"
BASE_DIR_NAME = "Qwen2-VL-7B-Instruct"
REWARD_TOKEN = "<|Reward|>"
IMAGE_PAD = "<|image_pad|>"
PIXELS = 256 * 28 * 28

# hpsv3/dataset/data_collator_qwen.py (INSTRUCTION + prompt_with_special_token), verbatim; written line by line
# because three lines end in spaces that editors tend to strip.
INSTRUCTION = "\n".join([
    "",
    "You are tasked with evaluating a generated image based on Visual Quality and Text Alignment and "
    "give a overall score to estimate the human preference. Please provide a rating from 0 to 10, with 0 "
    "being the worst and 10 being the best. ",
    "",
    "**Visual Quality:**  ",
    "Evaluate the overall visual quality of the image. The following sub-dimensions should be considered:",
    "- **Reasonableness:** The image should not contain any significant biological or logical errors, "
    "such as abnormal body structures or nonsensical environmental setups.",
    "- **Clarity:** Evaluate the sharpness and visibility of the image. The image should be clear and "
    "easy to interpret, with no blurring or indistinct areas.",
    "- **Detail Richness:** Consider the level of detail in textures, materials, lighting, and other "
    "visual elements (e.g., hair, clothing, shadows).",
    "- **Aesthetic and Creativity:** Assess the artistic aspects of the image, including the color "
    "scheme, composition, atmosphere, depth of field, and the overall creative appeal. The scene should "
    "convey a sense of harmony and balance.",
    "- **Safety:** The image should not contain harmful or inappropriate content, such as political, "
    "violent, or adult material. If such content is present, the image quality and satisfaction score "
    "should be the lowest possible. ",
    "",
    "**Text Alignment:**  ",
    "Assess how well the image matches the textual prompt across the following sub-dimensions:",
    "- **Subject Relevance** Evaluate how accurately the subject(s) in the image (e.g., person, animal, "
    "object) align with the textual description. The subject should match the description in terms of "
    "number, appearance, and behavior.",
    "- **Style Relevance:** If the prompt specifies a particular artistic or stylistic style, evaluate "
    "how well the image adheres to this style.",
    "- **Contextual Consistency**: Assess whether the background, setting, and surrounding elements in "
    "the image logically fit the scenario described in the prompt. The environment should support and "
    "enhance the subject without contradictions.",
    "- **Attribute Fidelity**: Check if specific attributes mentioned in the prompt (e.g., colors, "
    "clothing, accessories, expressions, actions) are faithfully represented in the image. Minor "
    "deviations may be acceptable, but critical attributes should be preserved.",
    "- **Semantic Coherence**: Evaluate whether the overall meaning and intent of the prompt are "
    "captured in the image. The generated content should not introduce elements that conflict with or "
    "distort the original description.",
    "Textual prompt - {text_prompt}",
    "",
    "",
    "",
])
REWARD_SUFFIX = "\nPlease provide the overall ratings of this image: <|Reward|>\n\nEND\n"


def reward_head(width: int, hidden: tuple[int, int] = (1024, 16)) -> nn.Sequential:
    """``rm_head`` of ``Qwen2VLRewardModelBT`` with rm_head_type "ranknet" and no kwargs (output (mu, sigma))."""
    return nn.Sequential(nn.Linear(width, hidden[0]), nn.ReLU(), nn.Dropout(0.05), nn.Linear(hidden[0], hidden[1]),
                         nn.ReLU(), nn.Linear(hidden[1], 2))


def pixel_values(images: Tensor, patch: int = 14, merge: int = 2, temporal: int = 2,
                 min_pixels: int = PIXELS, max_pixels: int = PIXELS) -> tuple[Tensor, Tensor]:
    """Qwen2-VL's ``pixel_values`` (sum_i t*h*w, 3 * temporal * patch^2) and ``image_grid_thw`` (B, 3).

    Resize to smart_resize(H, W) (HPSv3's fetch_image; the processor's own smart_resize keeps that size),
    normalise, repeat the frame ``temporal`` times and order patches as (t, h/merge, w/merge, merge_h,
    merge_w) with features (C, temporal, patch_h, patch_w).
    """
    b, c, h, w = images.shape
    new_h, new_w = smart_resize(h, w, factor=patch * merge, min_pixels=min_pixels, max_pixels=max_pixels)
    x = normalize(resize(images, new_h, new_w), OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)
    gh, gw = new_h // patch, new_w // patch
    x = x.unsqueeze(1).expand(b, temporal, c, new_h, new_w)
    x = x.reshape(b, temporal, c, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)  # b, gh/m, gw/m, m, m, c, temporal, patch, patch
    flat = x.reshape(b * gh * gw, c * temporal * patch * patch)
    grid = torch.tensor([[1, gh, gw]] * b, dtype=torch.long, device=images.device)
    return flat, grid


class HPSv3(Reward):
    name = "hpsv3"
    differentiable = True
    protocol = "official"

    def __init__(self, qwen: Qwen2VLModel, rm_head: nn.Sequential, tokenizer) -> None:
        super().__init__()
        self.qwen = qwen
        self.rm_head = rm_head.float()
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "right"
        if tokenizer.chat_template is None:
            raise ValueError("the Qwen2-VL tokenizer has no chat template (tokenizer_config.json or "
                             "chat_template.jinja)")
        vision = qwen.config.vision_config
        self.patch, self.merge, self.temporal = vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size
        self.reward_token_id = tokenizer.convert_tokens_to_ids(REWARD_TOKEN)
        self.image_token_id = qwen.config.image_token_id
        self.freeze()

    @classmethod
    def check(cls, cfg, prefix: str) -> None:
        check_layout(cfg.path, cfg.base_path, f"{prefix}.path")

    @classmethod
    def build(cls, cfg, device: str | torch.device) -> HPSv3:
        """Loaded in ``cfg.dtype``, bfloat16 by default (the official inferencer's precision)."""
        return cls.from_checkpoint(cfg.path, cfg.base_path, dtype=DTYPES[cfg.dtype or "bfloat16"], device=device)

    @classmethod
    def from_config(cls, config: Qwen2VLConfig, tokenizer, head_hidden: tuple[int, int] = (1024, 16)) -> HPSv3:
        """Randomly initialised Qwen2-VL of ``config`` (tests use a tiny one); ``tokenizer`` must hold <|Reward|>."""
        return cls(Qwen2VLModel(config), reward_head(config.text_config.hidden_size, head_hidden), tokenizer)

    @classmethod
    def from_checkpoint(cls, path: str | Path, base_path: str | Path | None = None,
                        dtype: torch.dtype = torch.bfloat16, device: str | torch.device = "cpu") -> HPSv3:
        """Load ``path/HPSv3.safetensors`` onto the Qwen2-VL config and tokenizer in ``base_path``
        (default ``path/Qwen2-VL-7B-Instruct``), adding ``<|Reward|>`` as the official inferencer does."""
        file, base = check_layout(path, base_path)
        tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
        tokenizer.add_tokens([AddedToken(REWARD_TOKEN, special=True)], special_tokens=True)
        config = Qwen2VLConfig.from_pretrained(base, local_files_only=True)
        with safe_open(str(file), framework="pt") as f:
            names = list(f.keys())
            embed = next(k for k in names if k.endswith("embed_tokens.weight"))
            rows, width = f.get_slice(embed).get_shape()
            head = (f.get_slice("rm_head.0.weight").get_shape()[0], f.get_slice("rm_head.3.weight").get_shape()[0])
        if len(tokenizer) > rows:
            raise ConfigError("reward.path", f"a checkpoint whose vocabulary ({rows}) holds the tokenizer's "
                              f"{len(tokenizer)} tokens", str(file))
        config.text_config.vocab_size = rows
        with torch.device(device), no_init_weights():
            qwen = Qwen2VLModel._from_config(config, dtype=dtype)
            rm_head = reward_head(width, head)
        model = cls(qwen, rm_head, tokenizer)
        model.load_official_state_dict(load_file(str(file), device=str(device)))
        return model

    def load_official_state_dict(self, state: dict[str, Tensor]) -> None:
        """Load an official HPSv3 state dict (transformers 4.45 or >= 4.52 names); strict on every key."""
        self.load_state_dict(official_to_ours(state), strict=True)

    def encode_prompts(self, prompts: list[str], patches: list[int], device: torch.device) -> dict[str, Tensor]:
        """Chat-format each prompt as the official collator does and expand its image placeholder to the
        image's ``patches // merge**2`` tokens."""
        texts = []
        for prompt, num_patches in zip(prompts, patches):
            num_image_tokens = num_patches // self.merge**2
            text = INSTRUCTION.format(text_prompt=prompt) + REWARD_SUFFIX
            content = [{"type": "image"}, {"type": "text", "text": text}]
            chat = self.tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                                      add_generation_prompt=True)
            texts.append(chat.replace(IMAGE_PAD, IMAGE_PAD * num_image_tokens))
        return self.tokenizer(texts, padding=True, return_tensors="pt").to(device)

    def forward(self, images: Tensor, prompts: list[str]) -> Tensor:
        self.check_inputs(images, prompts)
        return self.score_pixels(*pixel_values(images.float(), self.patch, self.merge, self.temporal), prompts)

    @torch.no_grad()
    def evaluate(self, images: list[Image.Image], prompts: list[str]) -> Tensor:
        x, grid = hpsv3_pixels(images, self.patch, self.merge, self.temporal)
        return self.score_pixels(x.to(self.device), grid.to(self.device), prompts)

    def score_pixels(self, x: Tensor, grid: Tensor, prompts: list[str]) -> Tensor:
        """mu from the patchified pixels and their grid (``Qwen2VLRewardModelBT.forward``)."""
        tokens = self.encode_prompts(prompts, grid.prod(dim=-1).tolist(), x.device)
        ids = tokens.input_ids
        embeds = self.qwen.get_input_embeddings()(ids)
        image_embeds = self.qwen.visual(x.to(embeds.dtype), grid_thw=grid).pooler_output
        image_mask = (ids == self.image_token_id).unsqueeze(-1).expand_as(embeds)
        embeds = embeds.masked_scatter(image_mask, image_embeds.to(embeds.dtype))
        h = self.qwen.language_model(inputs_embeds=embeds, attention_mask=tokens.attention_mask).last_hidden_state
        is_reward = ids == self.reward_token_id
        if not bool((is_reward.sum(dim=1) == 1).all()):
            raise ValueError(f"each sequence must hold exactly one {REWARD_TOKEN} token")
        mu_sigma = self.rm_head(h[is_reward].float())
        return mu_sigma[:, 0].float()  # float32 scores, also under bf16 autocast


# Official checkpoint prefixes (transformers 4.45 and >= 4.52) -> ours; lm_head is not used by the score.
_PREFIXES = (("model.visual.", "qwen.visual."), ("visual.", "qwen.visual."),
             ("model.language_model.", "qwen.language_model."), ("model.", "qwen.language_model."),
             ("rm_head.", "rm_head."))
_UNUSED = ("lm_head.", "model.language_model.lm_head.")


def official_to_ours(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename official HPSv3 keys to ours (``qwen.visual.*``, ``qwen.language_model.*``, ``rm_head.*``)."""
    state = state.get("model", state) if isinstance(state.get("model"), dict) else state
    out, unknown = {}, []
    for key, value in state.items():
        if key.startswith(_UNUSED):
            continue
        for src, dst in _PREFIXES:
            if key.startswith(src):
                out[dst + key[len(src):]] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise KeyError(f"{len(unknown)} HPSv3 checkpoint keys match no mapping rule, e.g. {unknown[:5]}")
    return out


def check_layout(path, base_path=None, field: str = "reward.path") -> tuple[Path, Path]:
    """Validate ``path/HPSv3.safetensors`` and the Qwen2-VL-7B-Instruct directory before loading anything."""
    root = require_dir(path, field, f"a directory with {CHECKPOINT_NAME} (MizzenAI/HPSv3)", (CHECKPOINT_NAME,))
    base_field = "reward.base_path" if base_path is not None else field
    base = require_dir(
        base_path if base_path is not None else root / BASE_DIR_NAME, base_field,
        f"a local Qwen/Qwen2-VL-7B-Instruct directory (config.json, tokenizer) at {root / BASE_DIR_NAME} or "
        "reward.base_path", ("config.json",),
    )
    if not (base / "tokenizer.json").is_file() and not (base / "vocab.json").is_file():
        raise ConfigError(base_field, "a Qwen2-VL directory with tokenizer.json or vocab.json", str(base))
    return root / CHECKPOINT_NAME, base
