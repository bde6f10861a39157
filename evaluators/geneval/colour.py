"""GenEval's colour classifier: CLIP zero-shot over the 10 colours on mask-pasted crops.

Source: djghosh13/geneval evaluation/evaluate_images.py (ImageCrops, color_classification). Each detection is
pasted through its instance mask onto a #999999 grey canvas (the whole image when it has no mask), cropped
to its box, preprocessed with CLIP's evaluation transform, and classified by open_clip ViT-L-14 (OpenAI
weights) against text classifiers built from "a photo of a {c} {cls}", "a photo of a {c}-colored {cls}" and
"a photo of a {c} object" (text embeddings normalised, averaged over templates, renormalised); the colour is
the argmax of 100 * cosine.
"""

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image

from benchmark.core.errors import ConfigError
from evaluators.geneval.rules import Detection
from evaluators.geneval.vocab import COLORS

BACKGROUND = "#999999"


def paste_crop(image: Image.Image, det: Detection, background: str = BACKGROUND) -> Image.Image:
    """The detection's pixels through its mask on a grey canvas, cropped to its box (PIL rounds the box)."""
    image = image.convert("RGB")
    if det.mask is not None:
        mask = np.asarray(det.mask, dtype=bool)
        if mask.shape != (image.height, image.width):
            raise ValueError(f"mask shape {mask.shape} does not match the image (height, width) {image.size[::-1]}")
        image = Image.composite(image, Image.new("RGB", image.size, color=background), Image.fromarray(mask))
    return image.crop(tuple(float(v) for v in det.box[:4]))


def colour_templates(classname: str) -> list:
    """GenEval's three prompt templates for one detected class, as callables of the colour."""
    return [
        lambda c: f"a photo of a {c} {classname}",
        lambda c: f"a photo of a {c}-colored {classname}",
        lambda c: f"a photo of a {c} object",
    ]


class ClipColourClassifier:
    """open_clip model (ViT-L-14 by default) loaded from a local checkpoint file; call it as
    `classifier(image, detections, classname) -> list of colour names`.

    `quick_gelu=True` matches OpenAI's CLIP weights (GenEval loads pretrained="openai", which uses QuickGELU);
    the checkpoint is an open_clip state dict (.safetensors/.bin/.pt), e.g. open_clip_model.safetensors from
    timm/vit_large_patch14_clip_224.openai.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike,
        model_name: str = "ViT-L-14",
        device: str | torch.device = "cpu",
        quick_gelu: bool = True,
        batch_size: int = 16,
    ):
        path = Path(checkpoint)
        if not path.is_file():
            raise ConfigError("geneval.clip_checkpoint", f"an existing open_clip {model_name} checkpoint file", str(path))
        if model_name not in open_clip.list_models():
            raise ConfigError("geneval.clip_model", "an open_clip model name (see open_clip.list_models())", model_name)
        self.device = torch.device(device)
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=str(path), device=self.device, force_quick_gelu=quick_gelu
        )
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.batch_size = batch_size
        self._classifiers: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def text_classifier(self, classname: str) -> torch.Tensor:
        """(embed_dim, 10) zero-shot weights for one class name, cached."""
        if classname not in self._classifiers:
            self._classifiers[classname] = open_clip.build_zero_shot_classifier(
                self.model, self.tokenizer, list(COLORS), colour_templates(classname),
                num_classes_per_batch=None, device=self.device,
            )
        return self._classifiers[classname]

    @torch.no_grad()
    def logits(self, image: Image.Image, detections: Sequence[Detection], classname: str) -> torch.Tensor:
        """(len(detections), 10) logits: 100 * cosine(crop embedding, colour classifier)."""
        weights = self.text_classifier(classname)
        out = []
        for start in range(0, len(detections), self.batch_size):
            batch = [self.preprocess(paste_crop(image, d)) for d in detections[start : start + self.batch_size]]
            features = self.model.encode_image(torch.stack(batch).to(self.device), normalize=True)
            out.append(100.0 * features @ weights)
        return torch.cat(out) if out else torch.zeros(0, len(COLORS))

    def __call__(self, image: Image.Image, detections: Sequence[Detection], classname: str) -> list[str]:
        return [COLORS[i] for i in self.logits(image, detections, classname).argmax(1).tolist()]
