"""Per-image scores of a samples directory (GenEval's layout, as ``leapbench sample`` writes it).

Rewards give one row per (image, metric) with the metric names of the report format (``hpsv2.1``,
``pickscore``, ``imagereward``, ``hpsv3``, ``ur_alignment``, ``ur_iq``); GenEval gives metric ``geneval``
with the prompt's task in ``tag`` and 1.0 / 0.0 per image. Rewards score the decoded PNG files through
``Reward.evaluate`` (the official preprocessing and precision: protocol ``official``), each image at its own
size; every row carries its protocol. Rows are labelled with run, method and prompt set
(``evaluators.report.scores`` has the format) and merged into the output parquet, which is rewritten
atomically: (run, prompt set, metric) groups already there are kept, so an interrupted or extended scoring
run only computes what is missing.
"""

from __future__ import annotations

import json
import re
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import Tensor

from benchmark.core.configs import read_yaml
from benchmark.core.errors import ConfigError
from evaluators.geneval import score_folder
from evaluators.report import read_scores, write_scores
from evaluators.rewards.config import RewardConfig, reward_config
from evaluators.rewards.unified_reward import DIMENSIONS, UnifiedReward, UnifiedRewardError

METRICS = {"hpsv2": "hpsv2.1", "pickscore": "pickscore", "imagereward": "imagereward", "hpsv3": "hpsv3",
           "tiny_conv": "tiny_conv"}  # tiny_conv: the built-in seeded conv net of the CPU walk-through (no file)
LABELS = ("run", "method", "prompt_set")
# decoded RGB images, prompts -> {metric: [B]}; a scorer's ``protocols`` attribute maps its metrics to protocols
Scorer = Callable[[list[Image.Image], list[str]], dict[str, Tensor]]
JUDGE = "vlm-judge"


@dataclass(frozen=True)
class Sample:
    prompt_id: int
    row: dict  # the prompt's metadata row
    image: int
    path: Path

    @property
    def prompt(self) -> str:
        return self.row["prompt"]


def list_samples(root: str | Path) -> list[Sample]:
    """Every ``<NNNNN>/samples/<k>.png`` under ``root`` with its metadata row, by (prompt id, image)."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError("samples", "a samples directory in GenEval's layout (leapbench sample)", str(root))
    found = []
    for folder in (p for p in root.iterdir() if p.is_dir() and p.name.isdigit()):
        meta = folder / "metadata.jsonl"
        try:
            row = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:  # missing, not UTF-8, not JSON
            raise ConfigError("samples", f"a readable metadata.jsonl in every prompt folder ({err})",
                              str(meta)) from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
            raise ConfigError("samples", 'metadata rows with a "prompt" string', str(meta))
        for path in (folder / "samples").glob("*.png"):
            if path.stem.isdigit():
                found.append(Sample(int(folder.name), row, int(path.stem), path))
    if not found:
        raise ConfigError("samples", "<NNNNN>/metadata.jsonl + <NNNNN>/samples/<k>.png images", str(root))
    return sorted(found, key=lambda s: (s.prompt_id, s.image))


def is_geneval(samples: list[Sample]) -> bool:
    return all("tag" in s.row and "include" in s.row for s in samples)


def sampling_labels(root: str | Path) -> dict:
    """Default labels (run, method, prompt_set) from the directory's sampling.json, if any."""
    file = Path(root) / "sampling.json"
    try:
        settings = json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError("samples", f"a readable sampling.json ({err})", str(file)) from None
    if not isinstance(settings, dict):
        raise ConfigError("samples", "a sampling.json holding a JSON object", str(file))
    return {k: str(settings[k]) for k in LABELS if settings.get(k)}


def check_images(paths: Iterable[Path], same_size: bool = True) -> None:
    """Every image is a whole PNG (PIL's verify: chunk structure and checksums, no decoding) and, with
    ``same_size``, all of one size; checked before any model is loaded, ConfigError naming the first bad file."""
    sizes: dict[tuple[int, int], Path] = {}
    for path in paths:
        try:
            with Image.open(path) as image:
                image.verify()
                sizes.setdefault(image.size, path)
        except (OSError, SyntaxError, ValueError) as err:  # PIL reports a damaged PNG with any of these
            raise ConfigError("samples", f"readable PNG images ({type(err).__name__}: {err})", str(path)) from None
    if same_size and len(sizes) > 1:
        (a, first), (b, other) = list(sizes.items())[:2]
        raise ConfigError("samples", f"images of one size ({first.name} is {a[0]}x{a[1]}, {other} is "
                          f"{b[0]}x{b[1]})", str(other.parent.parent.parent))


# -- rewards -------------------------------------------------------------------------------------------


def reward_spec(text: str) -> RewardConfig:
    """``NAME:PATH[:BASE_PATH]`` (e.g. ``hpsv2:/ckpt/HPS_v2.1_compressed.pt``) as a checked RewardConfig."""
    name, _, rest = text.partition(":")
    path, _, base = rest.partition(":")
    if name not in METRICS:
        raise ConfigError("--reward", f"NAME:PATH[:BASE_PATH] with NAME one of {', '.join(METRICS)}", text)
    cfg = RewardConfig(name=name, path=path or None, base_path=base or None)
    cfg.check_paths("--reward " + name)
    return cfg


def reward_section(file: str) -> list[RewardConfig]:
    """The ``reward`` section of a YAML file (or the file itself); a weighted reward's parts are scored apart."""
    tree = read_yaml(file, "--reward-config")
    cfg = reward_config(tree.get("reward", tree))
    parts = cfg.parts if cfg.name == "weighted" else [cfg]
    for part in parts:
        if part.name not in METRICS:
            raise ConfigError("reward.name", f"one of {', '.join(METRICS)} (UnifiedReward: --unified-reward)",
                              part.name)
    return parts


def check_unified(url: str, dimensions: Mapping[str, str], reachable: bool = False) -> None:
    """The server URL's form and the scored dimensions; ``reachable``: also that the server accepts a
    connection (no request is sent)."""
    RewardConfig(name="unifiedreward", path=url).check_paths("--unified-reward")
    for metric, dimension in dimensions.items():
        if dimension not in DIMENSIONS:
            raise ConfigError(f"{metric} dimension", f"one of {', '.join(DIMENSIONS)}", dimension)
    if reachable:
        parts = urlparse(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            socket.create_connection((parts.hostname, port), timeout=10).close()
        except OSError as err:
            raise ConfigError("--unified-reward", f"a server that answers at {parts.hostname}:{port} "
                              f"({err.strerror or err})", url) from None


def unified_reward(url: str, dimensions: Mapping[str, str], workers: int = 8) -> Scorer:
    """UnifiedReward metrics from one server: ``{metric: dimension}``; dimensions sharing a prompt template
    (alignment, coherence and style all come from the ACS answer) are read from one reply per image."""
    check_unified(url, dimensions)
    client = UnifiedReward(url)
    templates = {DIMENSIONS[d][0] for d in dimensions.values()}

    def one(image: Tensor, prompt: str) -> dict[str, float]:
        answers = {t: client.ask(image, t.format(prompt=prompt)) for t in templates}
        scores = {}
        for metric, dimension in dimensions.items():
            template, pattern = DIMENSIONS[dimension]
            match = re.search(pattern, answers[template])
            if match is None:
                raise UnifiedRewardError(
                    f"UnifiedReward reply has no '{dimension}' score: {answers[template][:300]!r}")
            scores[metric] = float(match.group(1))
        return scores

    def score(images: list[Image.Image], prompts: list[str]) -> dict[str, Tensor]:
        tensors = [torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255 for image in images]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            rows = list(pool.map(one, tensors, prompts))
        return {m: torch.tensor([r[m] for r in rows]) for m in dimensions}

    score.protocols = {m: JUDGE for m in dimensions}
    return score


def reward_scorer(metric: str, reward) -> Scorer:
    """``reward.evaluate`` (the official scorer's path where the reward has one) under the name ``metric``."""
    def score(images: list[Image.Image], prompts: list[str]) -> dict[str, Tensor]:
        return {metric: reward.evaluate(images, prompts)}

    score.protocols = {metric: reward.protocol}
    return score


def load_images(samples: list[Sample]) -> list[Image.Image]:
    """The samples' PNG files decoded to RGB (any sizes); ConfigError naming a file that is not a readable image."""
    images = []
    for s in samples:
        try:
            with Image.open(s.path) as image:
                images.append(image.convert("RGB"))
        except (OSError, SyntaxError, ValueError) as err:
            raise ConfigError("samples", f"readable PNG images ({type(err).__name__}: {err})", str(s.path)) from None
    return images


@torch.no_grad()
def score_rewards(samples: list[Sample], scorers: list[Scorer], batch_size: int = 8,
                  device: torch.device | str = "cpu", progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """Rows (prompt_id, prompt, image, metric, tag, value, protocol) of every scorer on every sample, in batches
    (``device`` is where the scorers' models are: each moves its own inputs)."""
    records = []
    for start in range(0, len(samples), batch_size):
        batch = samples[start : start + batch_size]
        images, prompts = load_images(batch), [s.prompt for s in batch]
        for scorer in scorers:
            protocols = getattr(scorer, "protocols", {})
            for metric, values in scorer(images, prompts).items():
                records += [(s.prompt_id, s.prompt, s.image, metric, "", float(v), protocols.get(metric, ""))
                            for s, v in zip(batch, values.float().cpu().tolist())]
        if progress is not None:
            progress(len(batch))
    return pd.DataFrame(records, columns=["prompt_id", "prompt", "image", "metric", "tag", "value", "protocol"])


def shard(samples: list[Sample], batch_size: int, rank: int, world_size: int) -> list[Sample]:
    """This rank's share of ``samples`` for ``score_rewards(..., batch_size)``: the batches rank, rank + world_size,
    ... of the one-task batching, so every image is scored in the same batch, with the same numbers, as with
    one task."""
    return [s for start in range(rank * batch_size, len(samples), world_size * batch_size)
            for s in samples[start : start + batch_size]]


def score_geneval(root: str | Path, detector, colour_classifier=None, progress: bool = True, rank: int = 0,
                  world_size: int = 1) -> pd.DataFrame:
    """GenEval correctness per image (metric ``geneval``, tag = task), from ``geneval.score_folder`` (one shard of
    the images with ``world_size`` > 1)."""
    df = score_folder(root, detector, colour_classifier, progress=progress, rank=rank, world_size=world_size)
    return pd.DataFrame({"prompt_id": df["prompt_index"], "prompt": df["prompt"], "image": df["image_index"],
                         "metric": "geneval", "tag": df["tag"], "value": df["correct"].astype(float),
                         "protocol": getattr(detector, "protocol", "")})


# -- the output file -------------------------------------------------------------------------------------


def existing_scores(out: str | Path) -> pd.DataFrame | None:
    """The scores already in ``out`` (None when it does not exist); ConfigError when it is unreadable."""
    if Path(out).suffix != ".parquet" or Path(out).is_dir():
        raise ConfigError("--out", "a .parquet file path", str(out))
    if not Path(out).exists():
        return None
    try:
        return read_scores(out)
    except Exception as err:  # a corrupt or foreign file: refuse before any model is loaded
        raise ConfigError("--out", f"a new file or a readable scores parquet ({type(err).__name__}: {err})",
                          str(out)) from None


def done_metrics(existing: pd.DataFrame | None, labels: Mapping[str, str]) -> set[str]:
    """Metrics the output already holds for this (run, prompt set)."""
    if existing is None:
        return set()
    mine = existing[(existing["run"] == labels["run"]) & (existing["prompt_set"] == labels["prompt_set"])]
    return set(mine["metric"])


def merge_scores(existing: pd.DataFrame | None, new: pd.DataFrame, labels: Mapping[str, str],
                 out: str | Path) -> pd.DataFrame:
    """Label ``new``, replace the same (run, prompt set, metric) rows of ``existing``, write atomically."""
    new = new.assign(**{k: labels[k] for k in LABELS})
    if existing is not None:
        same = ((existing["run"] == labels["run"]) & (existing["prompt_set"] == labels["prompt_set"])
                & existing["metric"].isin(set(new["metric"])))
        new = pd.concat([existing[~same], new], ignore_index=True)
    write_scores(new, out)
    return new
