"""The prompt-embedding cache: text encoders run once (`leapbench embed`), training reads only this.

Layout of a cache directory::

    index.json                 {"format": 1, "backbone": "flux", "fields": [...], "order": [key, ...],
                                "prompts": {key: {"prompt": text, "shard": "shard-00000.safetensors"}}}
    shard-00000.safetensors    tensors "<key>/<field>", one row per prompt (no batch dimension)

``key = sha1(prompt)``. Writing is resumable and atomic: prompts already in the index are skipped, each
shard is written to a temporary file, fsynced and renamed, and only then is the index replaced (also
atomically), so a killed `embed` leaves a valid cache and at most one orphan shard that the next run
overwrites (and its temporaries, which the next run removes). The index records each shard's size and
sha256 (``"shards"``): opening a cache checks every shard's size and safetensors header (cheap), and
`embed` checks every checksum and re-encodes the prompts of a damaged or missing shard. SD3's classifier-free guidance needs the empty prompt's embedding: it is cached under the
key of "" and recorded as ``"negative"``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from diffusers import FluxPipeline, StableDiffusion3Pipeline
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from benchmark.core.backbones.flux import FluxCond
from benchmark.core.backbones.sd3 import SD3Cond
from benchmark.core.errors import ConfigError
from benchmark.core.io import atomic_path, atomic_write_text, remove_stale_temporaries, sha256_file
from benchmark.core.prompts import load_prompts

FIELDS = {
    "flux": ("prompt_embeds", "pooled_prompt_embeds"),
    "sd3": ("prompt_embeds", "pooled_prompt_embeds"),
    "toy": ("cond",),
}
Encoder = Callable[[list[str]], dict[str, Tensor]]
log = logging.getLogger(__name__)


def prompt_key(prompt: str) -> str:
    return hashlib.sha1(prompt.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Read access to a cache directory (lazy: tensors are memory-mapped per shard, read per batch)."""

    def __init__(self, root: Path, index: dict, field: str = "prompts.cache"):
        self.root, self.index, self.field = root, index, field  # field: what the user called the cache
        self._handles: dict[str, Any] = {}

    @classmethod
    def open(cls, path: str | Path | None, field: str = "prompts.cache") -> "EmbeddingCache":
        """The cache at ``path``, its index and every shard checked (sizes and headers, not checksums)."""
        root = Path(path) if path else None
        if root is None or not (root / "index.json").is_file():
            hint = "an embedding cache directory with index.json (run `leapbench embed` first)"
            raise ConfigError(field, hint, None if path is None else str(path))
        index = read_index(root, field)
        if not index["order"]:
            raise ConfigError(field, "a cache holding at least one prompt", str(root))
        cache = cls(root, index, field)
        for shard in sorted({v["shard"] for v in index["prompts"].values()}):
            problem = shard_problem(root / shard, index.get("shards", {}).get(shard))
            if problem is not None:
                raise ConfigError(field, f"intact shards ({shard}: {problem}; rerun `leapbench embed` with the "
                                  "same prompts to repair it)", str(root))
        return cache

    @property
    def backbone(self) -> str:
        return self.index["backbone"]

    def __len__(self) -> int:
        return len(self.index["order"])

    def __contains__(self, prompt: str) -> bool:
        return prompt_key(prompt) in self.index["prompts"]

    def prompt_set(self, file: str | None = None) -> list[str]:
        """The prompts of ``file`` (all must be cached), or every cached prompt in the order embedded."""
        if file is None:
            return [self.index["prompts"][k]["prompt"] for k in self.index["order"]]
        prompts = load_prompts(file)
        missing = [p for p in prompts if p not in self]
        if missing:
            raise ConfigError(
                self.field, f"embeddings of every prompt of the prompt file ({len(missing)} missing, "
                f"e.g. {missing[0]!r}; run `leapbench embed`)", str(self.root)
            )
        return prompts

    def tensors(self, prompts: list[str], device: torch.device | str = "cpu") -> dict[str, Tensor]:
        """Stacked fields for ``prompts`` (B rows each)."""
        rows = [self._row(prompt_key(p)) for p in prompts]
        return {f: torch.stack([r[f] for r in rows]).to(device) for f in self.index["fields"]}

    def cond(self, prompts: list[str], device: torch.device | str = "cpu") -> Any:
        """The backbone's conditioning object for ``prompts`` (FluxCond, SD3Cond or a toy tensor)."""
        t = self.tensors(prompts, device)
        if self.backbone == "flux":
            return FluxCond(t["prompt_embeds"], t["pooled_prompt_embeds"])
        if self.backbone == "sd3":
            neg = self._row(self.index["negative"])
            B = len(prompts)
            expand = lambda x: x.to(device).unsqueeze(0).expand(B, *x.shape).contiguous()  # noqa: E731
            return SD3Cond(t["prompt_embeds"], t["pooled_prompt_embeds"], expand(neg["prompt_embeds"]),
                           expand(neg["pooled_prompt_embeds"]))
        return t["cond"]

    def _row(self, key: str) -> dict[str, Tensor]:
        shard = self.index["prompts"][key]["shard"]
        try:
            if shard not in self._handles:
                self._handles[shard] = safe_open(str(self.root / shard), framework="pt")
            handle = self._handles[shard]
            return {f: handle.get_tensor(f"{key}/{f}") for f in self.index["fields"]}
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error types for a damaged file
            raise ConfigError(self.field, f"a readable shard {shard} holding prompt {key} ({err}; rerun "
                              "`leapbench embed` to repair it)", str(self.root)) from None


def read_index(root: Path, field: str = "prompts.cache") -> dict:
    """The index.json of cache ``root``, its structure checked; ConfigError naming ``field`` otherwise."""
    try:
        index = json.loads((root / "index.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        raise ConfigError(field, f"a readable index.json ({err})", str(root)) from None
    shape_ok = (isinstance(index, dict) and index.get("backbone") in FIELDS and isinstance(index.get("order"), list)
                and isinstance(index.get("prompts"), dict) and isinstance(index.get("fields"), list)
                and all(isinstance(v, dict) and {"prompt", "shard"} <= set(v) for v in index["prompts"].values())
                and all(k in index["prompts"] for k in index["order"]))
    if not shape_ok:
        raise ConfigError(field, "an index.json written by `leapbench embed` (backbone, fields, order, prompts)",
                          str(root / "index.json"))
    return index


def shard_problem(path: Path, record: dict | None = None, checksum: bool = False) -> str | None:
    """None if the safetensors shard at ``path`` is whole, else what is wrong with it.

    Always: present, its size that of ``record`` (when the index has one) and of its own header (a
    truncated file is shorter than its header says). ``checksum``: also the sha256 of ``record``.
    """
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if record and size != record.get("size"):
        return f"{size} bytes where the index recorded {record.get('size')}"
    try:
        with open(path, "rb") as fh:
            length = int.from_bytes(fh.read(8), "little")
            if not 0 < length <= size - 8:
                return "not a safetensors file"
            header = json.loads(fh.read(length))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return "not a safetensors file (unreadable header)"
    if 8 + length + end != size:
        return f"truncated or padded ({size} bytes, its header says {8 + length + end})"
    if checksum and record and sha256_file(path) != record.get("sha256"):
        return "checksum mismatch"
    return None


def drop_damaged(root: Path, index: dict) -> list[str]:
    """Remove the shards that fail their checksums (or are missing) from ``index``; returns their names.

    Their prompts leave the index, so the write that follows encodes them again."""
    shards = sorted({v["shard"] for v in index["prompts"].values()})
    damaged = [s for s in shards if shard_problem(root / s, index.get("shards", {}).get(s), checksum=True)]
    for shard in damaged:
        lost = {k for k, v in index["prompts"].items() if v["shard"] == shard}
        log.warning("cache %s: shard %s is damaged (%s); its %d prompts are encoded again", root, shard,
                    shard_problem(root / shard, index.get("shards", {}).get(shard), checksum=True), len(lost))
        index["prompts"] = {k: v for k, v in index["prompts"].items() if k not in lost}
        index["order"] = [k for k in index["order"] if k not in lost]
        index.get("shards", {}).pop(shard, None)
    return damaged


def write_cache(
    root: str | Path,
    prompts: Iterable[str],
    encode: Encoder,
    backbone: str,
    batch_size: int = 8,
    shard_size: int = 1024,
    meta: dict | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Encode the prompts not yet cached in ``root`` and add them, shard by shard; returns the index.

    ``encode(prompts) -> {field: Tensor[B, ...]}``. SD3 caches also get the empty (negative) prompt.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(root)
    index_file = root / "index.json"
    damaged: list[str] = []
    if index_file.is_file():
        index = read_index(root)
        if index["backbone"] != backbone:
            raise ConfigError("prompts.cache", f"a cache of backbone {backbone} (or a new directory)", index["backbone"])
        damaged = drop_damaged(root, index)
    else:
        index = {"format": 1, "backbone": backbone, "fields": list(FIELDS[backbone]), "order": [], "prompts": {}}
    index.setdefault("shards", {})
    index.update(meta or {})
    wanted = list(dict.fromkeys(prompts))  # de-duplicated, order kept
    if backbone == "sd3":
        index["negative"] = prompt_key("")
    def add_to_order(keys: list[str]) -> None:  # only prompts whose embeddings are stored are listed
        listed = set(index["order"])
        index["order"] += [k for k in dict.fromkeys(keys) if k not in listed]

    add_to_order([prompt_key(p) for p in wanted if prompt_key(p) in index["prompts"]])
    in_set = {prompt_key(p) for p in wanted}
    todo = [p for p in wanted if prompt_key(p) not in index["prompts"]]
    if backbone == "sd3" and prompt_key("") not in index["prompts"] and "" not in todo:
        todo.append("")
    # the next shard number follows the indexed ones: an orphan shard of a killed run is overwritten
    numbers = [v["shard"][6:11] for v in index["prompts"].values()]
    n_shards = 1 + max((int(n) for n in numbers if n.isdigit()), default=-1)
    for start in range(0, len(todo), shard_size):
        chunk = todo[start : start + shard_size]
        shard = f"shard-{n_shards:05d}.safetensors"
        n_shards += 1
        tensors: dict[str, Tensor] = {}
        for b in range(0, len(chunk), batch_size):
            batch = chunk[b : b + batch_size]
            out = encode(batch)
            for field in index["fields"]:
                if field not in out or len(out[field]) != len(batch):
                    raise RuntimeError(f"encoder returned no {field} of {len(batch)} rows")
            for i, p in enumerate(batch):
                for field in index["fields"]:
                    tensors[f"{prompt_key(p)}/{field}"] = out[field][i].detach().cpu().contiguous()
            if progress is not None:
                progress(len(batch))
        with atomic_path(root / shard) as tmp:
            save_file(tensors, str(tmp))
        index["shards"][shard] = {"size": (root / shard).stat().st_size, "sha256": sha256_file(root / shard)}
        for p in chunk:
            index["prompts"][prompt_key(p)] = {"prompt": p, "shard": shard}
        add_to_order([prompt_key(p) for p in chunk if prompt_key(p) in in_set])
        atomic_write_text(index_file, json.dumps(index, indent=1))
    if not todo:
        atomic_write_text(index_file, json.dumps(index, indent=1))
    for shard in damaged:  # not reused by a new shard: the damaged file goes
        if shard not in index["shards"]:
            (root / shard).unlink(missing_ok=True)
    return index


# -- the real text encoders ---------------------------------------------------------------------------


def flux_encoder(path: str | Path, device: str = "cpu", dtype: torch.dtype = torch.bfloat16,
                 max_sequence_length: int = 512) -> Encoder:
    """FluxPipeline.encode_prompt with CLIP-L (pooled) and T5-XXL loaded from a local diffusers directory."""
    pipe = FluxPipeline.from_pretrained(str(path), transformer=None, vae=None, dtype=dtype).to(device)

    @torch.no_grad()
    def encode(prompts: list[str]) -> dict[str, Tensor]:
        embeds, pooled, _ = pipe.encode_prompt(prompts, None, device=device, max_sequence_length=max_sequence_length)
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}

    return encode


def sd3_encoder(path: str | Path, device: str = "cpu", dtype: torch.dtype = torch.bfloat16,
                max_sequence_length: int = 256) -> Encoder:
    """StableDiffusion3Pipeline.encode_prompt with its CLIP-L, CLIP-G and T5 from a local diffusers directory."""
    pipe = StableDiffusion3Pipeline.from_pretrained(str(path), transformer=None, vae=None, dtype=dtype).to(device)

    @torch.no_grad()
    def encode(prompts: list[str]) -> dict[str, Tensor]:
        embeds, _, pooled, _ = pipe.encode_prompt(
            prompts, None, None, device=device, do_classifier_free_guidance=False,
            max_sequence_length=max_sequence_length,
        )
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}

    return encode


ENCODERS = {"flux": flux_encoder, "sd3": sd3_encoder}
