"""``ImageReward.load(checkpoint, med_config=...).score(prompt, image)`` of image-reward 1.5, unchanged but for
the vision tower's size: ``blip_pretrain.create_vit`` builds BLIP's own ``VisionTransformer`` at a small width
instead of ViT-L (the text encoder's size comes from med_config.json; ``bert-base-uncased`` resolves to the
directory of that name in the working directory, our tiny WordPiece vocabulary)."""

import json
import os
from pathlib import Path

import ImageReward as RM
import torch
from common import finish, job, seeded
from ImageReward.ImageReward import ImageReward
from ImageReward.models.BLIP import blip_pretrain
from ImageReward.models.BLIP.vit import VisionTransformer


def tiny_vit(vit, image_size, use_grad_checkpointing=False, ckpt_layer=0, drop_path_rate=0):
    cfg = seeded.IMAGEREWARD_VIT
    return VisionTransformer(img_size=image_size, patch_size=cfg["patch_size"], embed_dim=cfg["embed_dim"],
                             depth=cfg["depth"], num_heads=cfg["num_heads"]), cfg["embed_dim"]


def main() -> None:
    task = job()
    work = Path(task["work"])
    os.chdir(task["bert_parent"])  # BertTokenizer.from_pretrained('bert-base-uncased') finds ./bert-base-uncased
    blip_pretrain.create_vit = tiny_vit
    med_config = work / "med_config.json"
    med_config.write_text(json.dumps(seeded.imagereward_med_config(task["vocab_size"])))
    model = ImageReward(med_config=str(med_config))
    state, layout = seeded.fill(model.state_dict(), task["seed"])
    checkpoint = work / "ImageReward.pt"
    torch.save(state, checkpoint)
    model = RM.load(str(checkpoint), device="cpu", med_config=str(med_config))
    with torch.no_grad():
        scores = [model.score(p, f) for f, p in zip(task["images"], task["prompts"])]
    tokens = [model.blip.tokenizer(p, padding="max_length", truncation=True, max_length=35).input_ids
              for p in task["prompts"]]
    finish(task, scores, layout, tokens=tokens, med_config=seeded.imagereward_med_config(task["vocab_size"]))


if __name__ == "__main__":
    main()
