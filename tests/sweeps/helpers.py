"""Shared by the sweep tests: a tiny 4-run sweep spec (tiny FLUX, CPU, a few steps) and model/cache layouts that
pass every path check of the paper's specs without holding any weights."""

from __future__ import annotations

import json
from pathlib import Path

from benchmark.core.testing import PROMPTS, tiny_cache
from benchmark.training.testing import TINY_METHODS, tiny_tree

TINY_STAGES = {s: f"tests.sweeps.tiny_stages:{s}" for s in ("train", "sample", "score")}


def tiny_spec(tmp: Path, name: str = "tiny", methods=("refl", "drtune", "leapalign"), iterations: int = 4,
              pretrained: bool = True) -> dict:
    base = tiny_tree(tmp)
    base.pop("run_dir")
    base["schedule"]["iterations"] = iterations
    base["logging"]["grad_parts_every"] = 0
    runs = ([{"name": "pretrained", "train": False}] if pretrained else []) + [
        {"name": m, "method": {"name": m, **TINY_METHODS[m]}} for m in methods]
    return {
        "name": name, "base": base, "runs": runs,
        "eval": {"cache": base["prompts"]["cache"], "steps": 2, "images": 2, "batch_size": 2, "limit": 2,
                 "prompt_set": "tiny"},
        "stages": TINY_STAGES,
        "slurm": {"gpus_per_node": 0, "cpus_per_task": 1, "time": 20, "signal_delay_s": 30},
        "collect": {"layout": "rewards", "reference": None, "baseline": "pretrained", "resamples": 50},
    }


def make_dummy_paths(root: Path) -> dict[str, str]:
    """Directory layouts that pass every path check without holding any weights."""
    def touch(*parts):
        path = root.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
        return path

    for model in ("flux", "sd3"):
        for part in ("transformer/config.json", "vae/config.json", "scheduler/scheduler_config.json"):
            touch(model, part)
    touch("hps", "HPS_v2.1_compressed.pt")
    touch("pickscore", "config.json"), touch("pickscore", "model.safetensors"), touch("pickscore", "tokenizer.json")
    touch("hpsv3", "HPSv3.safetensors"), touch("hpsv3", "Qwen2-VL-7B-Instruct", "config.json")
    touch("hpsv3", "Qwen2-VL-7B-Instruct", "tokenizer.json")
    touch("imagereward", "ImageReward.pt"), touch("imagereward", "bert-base-uncased", "vocab.txt")
    touch("geneval", "mask2former", "config.json"), touch("geneval", "clip.safetensors")
    for name in ("hpdv2-train-flux", "hpdv2-test-flux", "geneval-train-flux", "geneval-test-flux"):
        tiny_cache(root / "cache" / name, "flux")
    for name in ("hpdv2-train-sd3", "hpdv2-test-sd3"):
        tiny_cache(root / "cache" / name, "sd3")
    (root / "prompts").mkdir()
    (root / "prompts" / "hpdv2_test.txt").write_text("\n".join(PROMPTS[:4]) + "\n")
    (root / "prompts" / "geneval_evaluation_metadata.jsonl").write_text(
        "".join(json.dumps({"tag": "colors", "include": [], "prompt": p}) + "\n" for p in PROMPTS[:4]))
    return {"FLUX_DIR": str(root / "flux"), "SD35M_DIR": str(root / "sd3"), "HPS_CKPT": str(root / "hps"),
            "PICKSCORE_DIR": str(root / "pickscore"), "HPSV3_DIR": str(root / "hpsv3"),
            "IMAGEREWARD_DIR": str(root / "imagereward"), "UNIFIED_REWARD_URL": "http://127.0.0.1:8000",
            "CACHE_DIR": str(root / "cache"), "PROMPTS_DIR": str(root / "prompts"),
            "GENEVAL_DETECTOR": str(root / "geneval" / "mask2former"), "GENEVAL_CLIP": str(root / "geneval" / "clip.safetensors")}
