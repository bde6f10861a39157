"""The official scorers' environments: one virtual environment per scorer, with the versions its official package
needs, installed from PyPI by pip.

Each environment borrows torch and torchvision from the running interpreter (``--torch-from``, default: this
one) through a ``.pth`` file that points at links to those packages only: the official packages accept any
torch >= 1.9 / 2.0, the CUDA build of torch weighs 6 GB, and every other package (transformers, timm, the
official package itself) is the environment's own, at the pinned version.

| scorer | official package | pinned because |
|---|---|---|
| hpsv2 | ``hpsv2==1.2.0`` (its open_clip fork) | the wheel lacks ``bpe_simple_vocab_16e6.txt.gz``: copied from open_clip (the same file) |
| imagereward | ``image-reward==1.5`` | needs transformers 4.36 (removed helpers in 5), timm 0.6.13, fairscale 0.4.13 (built without build isolation), openai CLIP |
| pickscore | PickScore's README code on ``transformers==4.27.3`` | the version PickScore's README installs |
| hpsv3 | ``hpsv3==1.0.0`` | requires transformers 4.45.2; installed without deepspeed / flash-attn (training only) |
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

TORCH_PACKAGES = ("torch", "torchgen", "functorch", "torchvision", "triton", "nvidia", "cuda")
BASE = ["numpy<2", "pillow", "filelock", "typing-extensions", "sympy", "networkx", "jinja2", "fsspec", "setuptools<81"]

# scorer -> list of pip install steps (each a list of arguments after ``pip install``)
ENVIRONMENTS: dict[str, list[list[str]]] = {
    "hpsv2": [["hpsv2==1.2.0", "transformers==4.36.2"]],
    "imagereward": [
        ["wheel", "transformers==4.36.2", "timm==0.6.13", "openai-clip==1.0.1", "diffusers==0.25.1",
         "accelerate==0.26.1", "datasets==2.16.1", "huggingface-hub==0.20.3"],
        ["--no-build-isolation", "fairscale==0.4.13"],
        ["--no-deps", "image-reward==1.5"],
        ["setuptools<81"],  # openai CLIP imports pkg_resources, which setuptools 81 removed
    ],
    "pickscore": [["transformers==4.27.3"]],
    "hpsv3": [
        ["transformers==4.45.2", "trl==0.11.4", "peft==0.13.2", "accelerate==1.0.1", "datasets==3.0.1",
         "omegaconf", "fire", "matplotlib", "tensorboard", "pandas", "safetensors", "pyyaml", "einops",
         "requests", "packaging", "timm", "rich"],
        ["--no-deps", "hpsv3==1.0.0"],
    ],
}


def site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def link_torch(env: Path, donor: Path) -> None:
    """Links to the donor's torch family (packages and their dist-info) in ``env/torch-links``, on sys.path."""
    links = env / "torch-links"
    links.mkdir(exist_ok=True)
    for entry in donor.iterdir():
        stem = entry.name.split("-")[0].split(".")[0].lower()
        if any(stem == p or stem.startswith(p + "_") for p in TORCH_PACKAGES):
            target = links / entry.name
            if not target.exists():
                target.symlink_to(entry)
    (site_packages(env / "bin" / "python") / "leapbench_torch.pth").write_text(str(links) + "\n")


def pip(env: Path, args: list[str]) -> None:
    command = [str(env / "bin" / "python"), "-m", "pip", "install", "-q", *args]
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def build(scorer: str, root: Path, donor: Path | None = None) -> Path:
    """Create (or complete) ``root/scorer`` and return its python. A finished environment has ``.done``."""
    env = root / scorer
    python = env / "bin" / "python"
    if (env / ".done").is_file():
        return python
    donor = donor or Path(sysconfig.get_paths()["purelib"])
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    link_torch(env, donor)
    pip(env, BASE)
    for step in ENVIRONMENTS[scorer]:
        pip(env, step)
    if scorer == "hpsv2":
        restore_bpe(env, donor)
    subprocess.run([str(python), "-c", "import torch, torchvision; print('torch', torch.__version__)"], check=True)
    (env / ".done").write_text("\n".join(freeze(python)) + "\n")
    return python


def restore_bpe(env: Path, donor: Path) -> None:
    """hpsv2 1.2.0's wheel omits its tokenizer's BPE file; open_clip ships the same file."""
    target = site_packages(env / "bin" / "python") / "hpsv2" / "src" / "open_clip" / "bpe_simple_vocab_16e6.txt.gz"
    if not target.exists():
        shutil.copyfile(donor / "open_clip" / "bpe_simple_vocab_16e6.txt.gz", target)


def freeze(python: Path) -> list[str]:
    out = subprocess.run([str(python), "-m", "pip", "freeze"], check=True, capture_output=True, text=True)
    return out.stdout.split()


def versions(python: Path, names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of ``names`` in the environment of ``python`` (torch through the links)."""
    code = ("import importlib.metadata as m, json, sys; "
            "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))")
    out = subprocess.run([str(python), "-c", code, *names], check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONNOUSERSITE": "1"})
    return json.loads(out.stdout)
