"""GenEval's detector through mmdet itself (mmdet 3.3.0, mmcv 2.1.0 with its CPU ops): the Mask2Former Swin-S
instance model of the config mmdet ships (mask2former_swin-s-p4-w7-224_8xb2-lsj-50e_coco.py, the 3.x name of
GenEval's mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.py) on seeded weights saved under mmdet 2.x names, the
format of the checkpoint GenEval downloads.

The 2.x names are the 3.x ones with mmcv 1.x's BaseTransformerLayer module lists: ``attentions.{i}``, ``norms.{i}``,
``ffns.0`` in operation order (decoder: cross_attn, norm, self_attn, norm, ffn, norm, from mmdet 2.x's
configs/mask2former/mask2former_r50_lsj_8x2_50e_coco-panoptic.py; pixel decoder: self_attn, norm, ffn, norm).
The checkpoint is read back, renamed to 3.x and loaded strictly (Swin's relative_position_index buffers, a function
of the window size, are the model's own and left out of the file).

Each image goes through mmdet 2.x's test pipeline (GenEval calls mmdet 2.x's ``inference_detector``) with mmcv's own
functions: imread (BGR uint8), imrescale to (1333, 800) with cv2 bilinear, impad_to_multiple(32, pad_val=128),
imnormalize(to_rgb=True); then ``Mask2Former.predict(rescale=True)``: the head upsamples to the padded input, the
fusion head crops, resizes to the original image and runs instance_postprocess. Recorded per image: every
instance (label, score, box, mask area, and the query it came from: instance_postprocess's own topk repeated on
the class logits it received), the masks themselves for the small images, and the gap between the 100th and
101st class probability (how far the top-100 cut is from a tie).
"""

import base64
import re
import zlib
from pathlib import Path

import mmcv
import mmdet
import numpy as np
import torch
import torch.nn.functional as F
from common import finish, job, seeded
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine.config import Config

CONFIG = "mask2former/mask2former_swin-s-p4-w7-224_8xb2-lsj-50e_coco.py"
MEAN, STD = np.array([123.675, 116.28, 103.53], np.float32), np.array([58.395, 57.12, 57.375], np.float32)
MASK_PIXELS = 160 * 160  # masks are recorded for images up to this many pixels
TO_MMDET2 = (  # mmdet 3.x layer names -> mmdet 2.x
    (re.compile(r"(transformer_decoder\.layers\.\d+\.)cross_attn\."), r"\1attentions.0."),
    (re.compile(r"(transformer_decoder\.layers\.\d+\.)self_attn\."), r"\1attentions.1."),
    (re.compile(r"(pixel_decoder\.encoder\.layers\.\d+\.)self_attn\."), r"\1attentions.0."),
    (re.compile(r"(\.layers\.\d+\.)ffn\."), r"\1ffns.0."),
)


def mmdet2(name: str) -> str:
    for pattern, replacement in TO_MMDET2:
        name = pattern.sub(replacement, name)
    return name


def build_model():
    register_all_modules()
    cfg = Config.fromfile(str(Path(mmdet.__file__).parent / ".mim" / "configs" / CONFIG))
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model).eval()
    return model, cfg


def save_and_load(model, work: Path, seed: int):
    """Seeded weights by mmdet 2.x name -> checkpoint file -> back into the model (strict but for the index buffers)."""
    state = {mmdet2(k): v for k, v in model.state_dict().items() if not k.endswith("relative_position_index")}
    assert len(state) == len([k for k in model.state_dict() if not k.endswith("relative_position_index")])
    state, layout = seeded.fill(state, seed, seeded.GENEVAL_SCALES)
    path = work / "mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.pth"
    torch.save({"meta": {"CLASSES": list(range(80))}, "state_dict": state}, path)
    loaded = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    names = {mmdet2(k): k for k in model.state_dict()}
    missing, unexpected = model.load_state_dict({names[k]: v for k, v in loaded.items()}, strict=False)
    assert not unexpected and all(k.endswith("relative_position_index") for k in missing), (missing, unexpected)
    index = model.backbone.stages[0].blocks[0].attn.w_msa.relative_position_index
    return layout, index.flatten().tolist()


def record_topk(fusion_head, captured: list):
    """Wrap instance_postprocess to keep the class logits it is given (it runs unchanged)."""
    original = fusion_head.instance_postprocess

    def wrapped(mask_cls, mask_pred):
        captured.append(mask_cls.detach().clone())
        return original(mask_cls, mask_pred)

    fusion_head.instance_postprocess = wrapped


def pipeline(path: str):
    """mmdet 2.x's test pipeline with mmcv's functions: the input tensor and the image's metainfo."""
    img = mmcv.imread(path)
    resized, scale = mmcv.imrescale(img, (1333, 800), return_scale=True, interpolation="bilinear", backend="cv2")
    padded = mmcv.impad_to_multiple(resized, 32, pad_val=(128, 128, 128))
    normed = mmcv.imnormalize(padded, MEAN, STD, to_rgb=True)
    meta = {"img_shape": resized.shape[:2], "ori_shape": img.shape[:2], "batch_input_shape": padded.shape[:2],
            "pad_shape": padded.shape[:2], "scale_factor": (scale, scale)}
    return torch.from_numpy(normed.transpose(2, 0, 1).copy())[None], meta


def main() -> None:
    task = job()
    work = Path(task["work"])
    torch.set_grad_enabled(False)
    model, cfg = build_model()
    layout, index = save_and_load(model, work, task["seed"])
    captured = []
    record_topk(model.panoptic_fusion_head, captured)
    num_classes, max_per_image = model.panoptic_fusion_head.num_classes, cfg.model.test_cfg.max_per_image
    results = []
    for path in task["images"]:
        inputs, meta = pipeline(path)
        out = model.predict(inputs, [DetDataSample(metainfo=meta)], rescale=True)[0].pred_instances
        probs = F.softmax(captured[-1], dim=-1)[:, :-1].flatten()
        _, top = probs.topk(max_per_image, sorted=False)  # instance_postprocess's own call on the same input
        assert torch.equal(top % num_classes, out.labels), "the repeated topk disagrees with instance_postprocess"
        ranked = probs.sort(descending=True).values
        masks = out.masks.cpu().numpy().astype(bool)
        entry = {"shape": list(meta["ori_shape"]), "input": list(inputs.shape[-2:]), "resized": list(meta["img_shape"]),
                 "labels": out.labels.tolist(), "queries": (top // num_classes).tolist(), "scores": out.scores.tolist(),
                 "boxes": out.bboxes.tolist(), "areas": masks.reshape(len(masks), -1).sum(1).tolist(),
                 "cut_gap": float(ranked[max_per_image - 1] - ranked[max_per_image])}
        if masks[0].size <= MASK_PIXELS:
            entry["masks"] = base64.b64encode(zlib.compress(np.packbits(masks).tobytes(), 9)).decode()
        results.append(entry)
        print(path, "instances", len(masks), "max score", max(entry["scores"]), flush=True)
    finish(task, [max(r["scores"]) for r in results], layout, detections=results, relative_position_index=index,
           scales=seeded.GENEVAL_SCALES, config=CONFIG)


if __name__ == "__main__":
    main()
