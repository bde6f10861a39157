"""``HPSv3RewardInferencer(config, checkpoint, device="cpu").reward(images, prompts)[:, 0]`` of hpsv3 1.0.0,
unchanged. Its YAML is HPSv3_7B.yaml with four values changed: model_name_or_path (our tiny Qwen2-VL
directory), bf16 false and torch_dtype float32 (on a CPU the official rm_head, float32, cannot take bfloat16
hidden states: its autocast is CUDA-only), deepspeed null (training only)."""

from pathlib import Path

import hpsv3
import safetensors.torch
import torch
import yaml
from common import finish, job, seeded
from hpsv3 import HPSv3RewardInferencer
from hpsv3.train import create_model_and_processor
from hpsv3.utils.parser import DataConfig, ModelConfig, PEFTLoraConfig, TrainingConfig, parse_args_with_yaml
from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration


def main() -> None:
    task = job()
    work = Path(task["work"])
    base = Path(task["qwen2vl"])
    config = Qwen2VLConfig(**seeded.qwen2vl_config(task["vocab_size"]))
    Qwen2VLForConditionalGeneration(config).save_pretrained(base)  # the base weights; HPSv3.safetensors replaces all

    settings = yaml.safe_load((Path(hpsv3.__file__).parent / "config" / "HPSv3_7B.yaml").read_text())
    settings.update(model_name_or_path=str(base), bf16=False, torch_dtype="float32", deepspeed=None)
    config_path = work / "HPSv3_tiny.yaml"
    config_path.write_text(yaml.safe_dump(settings))

    (_, training_args, model_config, lora), _ = parse_args_with_yaml(
        (DataConfig, TrainingConfig, ModelConfig, PEFTLoraConfig), str(config_path), is_train=False)
    model, _, _ = create_model_and_processor(model_config, lora, training_args)
    state, layout = seeded.fill(model.state_dict(), task["seed"])
    checkpoint = work / "HPSv3.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, str(checkpoint))

    inferencer = HPSv3RewardInferencer(str(config_path), str(checkpoint), device="cpu")
    with torch.no_grad():
        rewards = inferencer.reward(task["images"], task["prompts"])
    batch = inferencer.prepare_batch(task["images"], task["prompts"])
    tokens = [ids[mask.bool()].tolist() for ids, mask in zip(batch["input_ids"], batch["attention_mask"])]
    finish(task, rewards[:, 0].tolist(), layout, config=(base / "config.json").read_text(),
           vocab_size=len(inferencer.processor.tokenizer), tokens=tokens,
           image_grid_thw=batch["image_grid_thw"].tolist(),
           pixel_sums=[float(batch["pixel_values"].double().sum()), float(batch["pixel_values"].double().abs().sum())])


if __name__ == "__main__":
    main()
