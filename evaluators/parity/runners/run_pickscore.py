"""PickScore's README ``calc_probs`` on transformers 4.27.3 (the version its README installs), on a seeded tiny
CLIPModel saved with ``save_pretrained`` and the laion processor directory LeapBench's side wrote."""

from pathlib import Path

import torch
from common import finish, job, seeded
from PIL import Image
from transformers import AutoModel, AutoProcessor, CLIPConfig, CLIPModel


def main() -> None:
    task = job()
    work = Path(task["work"])
    model = CLIPModel(CLIPConfig(**seeded.PICKSCORE_CONFIG))
    state, layout = seeded.fill(model.state_dict(), task["seed"])
    model.load_state_dict(state)
    model.save_pretrained(work / "PickScore_v1")

    # -- from here on, PickScore's README (device "cpu") --
    device = "cpu"
    processor = AutoProcessor.from_pretrained(task["processor"])
    model = AutoModel.from_pretrained(work / "PickScore_v1").eval().to(device)

    def calc_scores(prompt, images):
        image_inputs = processor(images=images, padding=True, truncation=True, max_length=77,
                                 return_tensors="pt").to(device)
        text_inputs = processor(text=prompt, padding=True, truncation=True, max_length=77,
                                return_tensors="pt").to(device)
        with torch.no_grad():
            image_embs = model.get_image_features(**image_inputs)
            image_embs = image_embs / torch.norm(image_embs, dim=-1, keepdim=True)
            text_embs = model.get_text_features(**text_inputs)
            text_embs = text_embs / torch.norm(text_embs, dim=-1, keepdim=True)
            return model.logit_scale.exp() * (text_embs @ image_embs.T)[0]  # README: scores, before softmax

    scores = [calc_scores(p, [Image.open(f)])[0].item() for f, p in zip(task["images"], task["prompts"])]
    tokens = [processor(text=p, truncation=True, max_length=77).input_ids for p in task["prompts"]]
    config = (work / "PickScore_v1" / "config.json").read_text()
    finish(task, scores, layout, tokens=tokens, config=config)


if __name__ == "__main__":
    main()
