"""``hpsv2.img_score.score(image, prompt, cp, hps_version="v2.1")`` of hpsv2 1.2.0 (what ``hpsv2.score`` calls,
with the checkpoint path it cannot pass), unchanged but for the architecture's
size: ``img_score.create_model_and_transforms`` is handed our tiny ViT-H-14-family config (registered in the
fork's model registry) instead of ('ViT-H-14', 'laion2B-s32B-b79K'), which would download 4 GB."""

from pathlib import Path

import torch
from common import finish, job, seeded
from hpsv2 import img_score
from hpsv2.src.open_clip import factory


def main() -> None:
    task = job()
    work = Path(task["work"])
    factory._MODEL_CONFIGS[seeded.HPSV2_MODEL] = seeded.HPSV2_CONFIG
    official = img_score.create_model_and_transforms

    def tiny(model_name, pretrained, **kwargs):
        return official(seeded.HPSV2_MODEL, None, **kwargs)

    img_score.create_model_and_transforms = tiny
    model = tiny("ViT-H-14", "laion2B-s32B-b79K", precision="amp", device="cpu", output_dict=True)[0]
    state, layout = seeded.fill(model.state_dict(), task["seed"])
    checkpoint = work / "HPS_v2.1_compressed.pt"
    torch.save({"state_dict": state}, checkpoint)
    scores = [img_score.score(f, p, cp=str(checkpoint), hps_version="v2.1")[0]
              for f, p in zip(task["images"], task["prompts"])]
    tokens = [img_score.get_tokenizer("ViT-H-14")([p])[0].tolist() for p in task["prompts"]]
    finish(task, scores, layout, tokens=tokens)


if __name__ == "__main__":
    main()
