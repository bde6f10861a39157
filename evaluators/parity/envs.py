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
| mmdet | ``mmdet==3.3.0``, ``mmcv==2.1.0`` | GenEval's detector; mmcv has source releases only: built with its CPU ops |
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
    # mmdet 3.3.0 needs mmcv >= 2.0.0rc4, < 2.2.0, built here (build_mmcv); mmengine, mmcv and mmdet are installed
    # without their dependencies (all in the first step): they ask for opencv-python, whose newest build (GUI,
    # numpy 2) would replace the headless cv2 and numpy < 2.
    "mmdet": [
        ["numpy<2", "opencv-python-headless==4.10.0.84", "addict", "yapf", "termcolor", "rich", "packaging", "pyyaml",
         "scipy<1.14", "shapely", "terminaltables", "pycocotools", "matplotlib", "six", "tqdm", "wheel", "ninja"],
        ["--no-deps", "mmengine==0.10.7"],
        ["mmcv==2.1.0"],
        ["--no-deps", "mmdet==3.3.0"],
    ],
}
MMCV_CXX = ("'-std=c++17'", "'-std=c++20', '-O0'")  # see build_mmcv
# what torch's BuildExtension adds after each op file's own flags (MMCV_CXX, then the extension's macros)
MMCV_POST_FLAGS = ("-std=c++20", "-O0", "-DTORCH_API_INCLUDE_EXTENSION_H", "-DTORCH_EXTENSION_NAME=_ext")
FLAGS = ("import sys, sysconfig; from torch.utils.cpp_extension import include_paths; c = sysconfig.get_config_var; "
         "print(*c('CFLAGS').split(), c('CCSHARED'), *('-I' + p for p in include_paths()), '-I' + sys.prefix + '/include', "
         "'-I' + sysconfig.get_paths()['include'])")


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
        build_mmcv(env, step[0]) if step[0].startswith("mmcv==") else pip(env, step)
    if scorer == "hpsv2":
        restore_bpe(env, donor)
    subprocess.run([str(python), "-c", "import torch, torchvision; print('torch', torch.__version__)"], check=True)
    (env / ".done").write_text("\n".join(freeze(python)) + "\n")
    return python


def build_mmcv(env: Path, requirement: str) -> None:
    """mmcv with its compiled ops, from its source release. The sdist's setup.py imports torch and pkg_resources
    (hence no build isolation, setuptools < 81) and compiles with ``-std=c++17``, which torch 2.14's headers
    reject: raised to C++20, and to ``-O0`` (``MMCV_CXX``) because no compiled op is on Mask2Former's CPU path (mmcv's
    MultiScaleDeformableAttention runs ``multi_scale_deformable_attn_pytorch`` off CUDA): mmdet only imports them.
    ``build_ext --inplace`` keeps its objects in the source tree, so an interrupted build continues where it
    stopped; pip then packs the built tree. 77 files, most of them quick after ``precompile_header`` (``MAX_JOBS``,
    default 2)."""
    python = str(env / "bin" / "python")
    if subprocess.run([python, "-c", "import mmcv.ops"], capture_output=True, check=False).returncode == 0:
        return
    source = env / "src"
    archive = next(source.glob("mmcv-*.tar.gz"), None)
    if archive is None:
        subprocess.run([python, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                        "--no-build-isolation", requirement, "-d", str(source)], check=True)
        archive = next(source.glob("mmcv-*.tar.gz"))
    tree = source / archive.name.removesuffix(".tar.gz")
    if not tree.is_dir():
        subprocess.run(["tar", "-xzf", str(archive), "-C", str(source)], check=True)
    setup = tree / "setup.py"
    text = setup.read_text()
    if MMCV_CXX[1] not in text:
        if MMCV_CXX[0] not in text:
            raise RuntimeError(f"{setup}: expected the C++ standard flag {MMCV_CXX[0]}")
        setup.write_text(text.replace(*MMCV_CXX))
    precompile_header(python, tree)
    environment = {**os.environ, "MMCV_WITH_OPS": "1", "FORCE_CUDA": "0", "MAX_JOBS": os.environ.get("MAX_JOBS", "2")}
    print(f"+ building {tree.name} with its ops (MAX_JOBS={environment['MAX_JOBS']})", flush=True)
    subprocess.run([python, "setup.py", "-q", "build_ext", "--inplace"], cwd=tree, check=True, env=environment)
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps", str(tree)], check=True,
                   env=environment)


def precompile_header(python: str, tree: Path) -> None:
    """gcc's precompiled ``pytorch_cpp_helper.hpp`` (ATen, through torch/types.h), which 63 of the 77 op files include
    first: ATen is then parsed once, not once per file (measured: 50 s of CPU to precompile, 4.5 s for a file). Built
    with the flags torch's BuildExtension gives every op file (the environment python's CFLAGS and CCSHARED, the
    include paths, then ``MMCV_POST_FLAGS``); gcc checks them and compiles without it where they differ. About
    550 MB; not packaged (MANIFEST.in takes ``*.hpp``)."""
    common = tree / "mmcv" / "ops" / "csrc" / "common"
    header = common / "pytorch_cpp_helper.hpp"
    pch = common / (header.name + ".gch")
    if pch.is_file():
        return
    flags = subprocess.run([python, "-c", FLAGS], check=True, capture_output=True, text=True).stdout.split()
    print(f"+ precompiling {header.name}", flush=True)
    partial = common / (header.name + ".gch.partial")
    subprocess.run(["c++", *flags, f"-I{common}", "-x", "c++-header", str(header), "-o", str(partial),
                    *MMCV_POST_FLAGS], check=True)
    partial.replace(pch)


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
