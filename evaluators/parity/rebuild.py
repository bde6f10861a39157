"""LeapBench's side of a parity reference: rebuild the official checkpoint the reference was recorded on (from
its weight layout and seed) in the official file format, and load it through LeapBench's own loaders."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import torch
from safetensors.torch import save_file

from evaluators.parity import seeded
from evaluators.parity.record import REFERENCES, write_bert_vocab, write_laion_processor
from evaluators.rewards import HPSv2, HPSv3, ImageReward, PickScore, Reward
from evaluators.rewards.imagereward import vision_config


def load_reference(scorer: str) -> dict:
    return json.loads((REFERENCES / f"{scorer}.json").read_text(encoding="utf-8"))


def reference_images(reference: dict) -> list:
    """The reference's images, regenerated; ValueError if one differs from the recorded digest."""
    out = []
    for *spec, digest in reference["images"]:
        image = seeded.image(*spec)
        if seeded.image_digest(image) != digest:
            raise ValueError(f"test image {spec} no longer matches the reference (digest {digest})")
        out.append(image)
    return out


def build(scorer: str, reference: dict, work: Path) -> Reward:
    """The reference's checkpoint written to ``work`` in the official format and loaded as a LeapBench reward."""
    state = seeded.rebuild(reference["layout"], reference["seed"])
    work.mkdir(parents=True, exist_ok=True)
    if scorer == "hpsv2":
        (work / f"{seeded.HPSV2_MODEL}.json").write_text(json.dumps(seeded.HPSV2_CONFIG))
        open_clip.add_model_config(work / f"{seeded.HPSV2_MODEL}.json")
        torch.save({"state_dict": state}, work / "HPS_v2.1_compressed.pt")
        return HPSv2.from_checkpoint(work / "HPS_v2.1_compressed.pt", model_name=seeded.HPSV2_MODEL)
    if scorer == "pickscore":
        (work / "PickScore_v1").mkdir(exist_ok=True)
        (work / "PickScore_v1" / "config.json").write_text(reference["config"])
        save_file({k: v.contiguous() for k, v in state.items()}, work / "PickScore_v1" / "model.safetensors")
        return PickScore.from_pretrained(work / "PickScore_v1", write_laion_processor(work / "laion-processor"))
    if scorer == "imagereward":
        write_bert_vocab(work)
        (work / "med_config.json").write_text(json.dumps(reference["med_config"]))
        torch.save(state, work / "ImageReward.pt")
        vit = seeded.IMAGEREWARD_VIT
        return ImageReward.from_checkpoint(work, vision_config(
            hidden_size=vit["embed_dim"], intermediate_size=4 * vit["embed_dim"], num_hidden_layers=vit["depth"],
            num_attention_heads=vit["num_heads"], patch_size=vit["patch_size"]))
    if scorer == "hpsv3":
        base = work / "Qwen2-VL-tiny"
        seeded.write_qwen2vl_tokenizer(base)
        (base / "config.json").write_text(reference["config"])
        save_file({k: v.contiguous() for k, v in state.items()}, work / "HPSv3.safetensors")
        return HPSv3.from_checkpoint(work, base, dtype=torch.float32)
    raise ValueError(f"no parity reference for {scorer!r}")


def geneval_checkpoint(reference: dict, work: Path) -> Path:
    """The reference's seeded Mask2Former written as GenEval's checkpoint file ({"meta", "state_dict"}, mmdet 2.x
    names) for ``evaluators.geneval.OfficialDetector``."""
    work.mkdir(parents=True, exist_ok=True)
    path = work / "mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.pth"
    state = seeded.rebuild(reference["layout"], reference["seed"], reference["scales"])
    torch.save({"meta": {"CLASSES": list(range(80))}, "state_dict": state}, path)
    return path
