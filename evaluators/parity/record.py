"""``python -m evaluators.parity.record [--scorers hpsv2 ...] [--envs DIR]``: run each official scorer in its own
environment on seeded tiny weights and the fixed image set, and write the references that CI compares
LeapBench's ``Reward.evaluate`` with (``evaluators/parity/references/<scorer>.json``).

Per scorer: build (or reuse) the official environment (``envs.py``), write the shared inputs LeapBench's side
owns (the PNG images, tokenizer directories), run ``runners/run_<scorer>.py`` there, which builds the official
model at a tiny size, fills it with ``seeded`` weights by official tensor name, saves the official checkpoint
format, loads it through the official API and scores every (image, prompt) pair. The reference keeps the scores,
the token ids the official tokenizer gave, the weight layout (names, shapes) to rebuild the same checkpoint
without the official environment, and the versions that produced it. Slow (minutes per environment).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmark.core.io import atomic_write_text
from benchmark.core.testing import clip_tokenizer_files
from evaluators.parity import envs, seeded

ROOT = Path(__file__).resolve().parent
REFERENCES = ROOT / "references"
REWARDS = ("hpsv2", "pickscore", "imagereward", "hpsv3")  # the scorers with a training path (gaps.py)
SCORERS = (*REWARDS, "geneval")
PACKAGES = {
    "hpsv2": ("hpsv2", "torch", "torchvision", "pillow", "numpy"),
    "pickscore": ("transformers", "tokenizers", "torch", "pillow", "numpy"),
    "imagereward": ("image-reward", "transformers", "timm", "torch", "torchvision", "pillow", "numpy"),
    "hpsv3": ("hpsv3", "transformers", "torch", "torchvision", "pillow", "numpy"),
    "geneval": ("mmdet", "mmcv", "mmengine", "torch", "opencv-python-headless", "numpy"),
}
ENVIRONMENT = {"geneval": "mmdet"}  # scorer -> its environment in envs.ENVIRONMENTS (default: the scorer's name)
SEED = 0

# laion/CLIP-ViT-H-14-laion2B-s32B-b79K's tokenizer and processor settings (its tokenizer_config.json,
# special_tokens_map.json and preprocessor_config.json); vocab.json and merges.txt come from open_clip's BPE file.
LAION_TOKENIZER = {"unk_token": "<|endoftext|>", "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
                   "pad_token": "<|endoftext|>", "add_prefix_space": False, "errors": "replace",
                   "do_lower_case": True, "model_max_length": 77, "tokenizer_class": "CLIPTokenizer"}
LAION_PROCESSOR = {"crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
                   "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": [0.48145466, 0.4578275, 0.40821073],
                   "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224,
                   "processor_class": "CLIPProcessor"}


def write_laion_processor(out: Path) -> Path:
    clip_tokenizer_files(out)
    (out / "tokenizer_config.json").write_text(json.dumps(LAION_TOKENIZER))
    special = {k: LAION_TOKENIZER[k] for k in ("unk_token", "bos_token", "eos_token", "pad_token")}
    (out / "special_tokens_map.json").write_text(json.dumps(special))
    (out / "preprocessor_config.json").write_text(json.dumps(LAION_PROCESSOR))
    return out


def write_bert_vocab(out: Path) -> int:
    """``out/bert-base-uncased/vocab.txt``; returns the model's vocabulary size (BLIP adds [DEC] and [ENC])."""
    vocab = seeded.bert_vocab()
    (out / "bert-base-uncased").mkdir(parents=True, exist_ok=True)
    (out / "bert-base-uncased" / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return len(vocab) + 2


def shared_inputs(scorer: str, work: Path) -> dict:
    """The job's inputs that LeapBench's side writes (the same functions rebuild them in the tests)."""
    paths = []
    (work / "images").mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(seeded.image(*spec) for spec in image_specs(scorer)):
        paths.append(str(work / "images" / f"{i:02d}.png"))
        image.save(paths[-1])
    task = {"work": str(work), "seed": SEED, "images": paths, "prompts": list(seeded.PROMPTS),
            "out": str(work / "result.json")}
    if scorer == "pickscore":
        task["processor"] = str(write_laion_processor(work / "laion-processor"))
    elif scorer == "imagereward":
        task["bert_parent"] = str(work / "bert")
        task["vocab_size"] = write_bert_vocab(work / "bert")
    elif scorer == "hpsv3":
        task["qwen2vl"] = str(work / "Qwen2-VL-tiny")
        task["vocab_size"] = seeded.write_qwen2vl_tokenizer(work / "Qwen2-VL-tiny")
    return task


def image_specs(scorer: str) -> tuple:
    return seeded.GENEVAL_IMAGES if scorer == "geneval" else seeded.IMAGES


def record(scorer: str, env_root: Path) -> Path:
    python = envs.build(ENVIRONMENT.get(scorer, scorer), env_root)
    with tempfile.TemporaryDirectory(prefix=f"parity-{scorer}-") as tmp:
        task = shared_inputs(scorer, Path(tmp))
        (Path(tmp) / "job.json").write_text(json.dumps(task))
        runner = ROOT / "runners" / f"run_{scorer}.py"
        subprocess.run([str(python), str(runner), str(Path(tmp) / "job.json")], check=True,
                       env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin",
                            "HOME": tmp, "PYTHONNOUSERSITE": "1"})
        result = json.loads(Path(task["out"]).read_text())
    reference = {
        "scorer": scorer,
        "versions": {**envs.versions(python, PACKAGES[scorer]), "python": sys.version.split()[0]},
        "seed": SEED,
        "images": [[*spec, seeded.image_digest(seeded.image(*spec))] for spec in image_specs(scorer)],
        **({} if scorer == "geneval" else {"prompts": list(seeded.PROMPTS)}),
        **result,
    }
    out = REFERENCES / f"{scorer}.json"
    atomic_write_text(out, json.dumps(reference, indent=None, ensure_ascii=False) + "\n")
    print(f"{scorer}: {len(result['scores'])} scores -> {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scorers", nargs="+", default=list(SCORERS), choices=SCORERS)
    parser.add_argument("--envs", type=Path, default=Path.home() / ".cache" / "leapbench" / "parity-envs",
                        help="where the official environments are built (reused when complete)")
    args = parser.parse_args(argv)
    for scorer in args.scorers:
        record(scorer, args.envs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
