"""The corpus of named bad inputs, across every command: each is a command line (``{field}`` names a path of the
``World`` or of what its ``prepare`` made in the case's own folder ``{tmp}``), the exit status it must end with
(2 for a user's mistake, 130 for Ctrl-C) and a text the one-line message must contain.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from tests.benchmark.cli.world import World, copy_run, write_json

Prepare = Callable[[World, Path], dict]


@dataclass
class Case:
    name: str
    argv: list[str]
    expect: str = ""  # a text the message must contain
    prepare: Prepare | None = None
    code: int = 2
    interrupt: str | None = None  # "module:function" to raise KeyboardInterrupt from (Ctrl-C)


# -- things a case can prepare in its folder ----------------------------------------------------------------


def text(name: str, content: str | bytes) -> Prepare:
    def make(w: World, tmp: Path) -> dict:
        path = tmp / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return {"file": str(path)}
    return make


def yaml_file(name: str, edit: Callable[[dict], dict | list | str]) -> Prepare:
    """The world's run config (or spec, by name) changed by ``edit``."""
    def make(w: World, tmp: Path) -> dict:
        source = w.spec if name == "spec" else w.config
        tree = edit(yaml.safe_load(source.read_text()))
        path = tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(tree) if not isinstance(tree, str) else tree)
        return {"file": str(path)}
    return make


def damaged_cache(how: str) -> Prepare:
    def make(w: World, tmp: Path) -> dict:
        cache = tmp / "cache"
        shutil.copytree(w.cache, cache)
        shard = sorted(cache.glob("shard-*.safetensors"))[0]
        if how == "truncate":
            shard.write_bytes(shard.read_bytes()[:-100])
        elif how == "garbage":
            shard.write_bytes(b"\x00" * 64)
        elif how == "missing":
            shard.unlink()
        elif how == "index":
            (cache / "index.json").write_text("{not json")
        elif how == "empty-index":
            (cache / "index.json").write_text(json.dumps({"format": 1, "backbone": "flux", "fields": [],
                                                           "order": [], "prompts": {}}))
        elif how == "index-list":
            (cache / "index.json").write_text("[1, 2]")
        return {"cache": str(cache)}
    return make


def run_copy(damage: str | None = None) -> Prepare:
    def make(w: World, tmp: Path) -> dict:
        run = copy_run(w, tmp)
        ckpts = sorted((run / "checkpoints").iterdir())
        if damage == "all":
            for c in ckpts:
                (c / "ema.safetensors").write_bytes(b"broken")
        elif damage == "newest":
            (ckpts[-1] / "complete").unlink()
        elif damage == "no-checkpoints":
            shutil.rmtree(run / "checkpoints")
        elif damage == "no-config":
            (run / "config.yaml").unlink()
        elif damage == "config-garbage":
            (run / "config.yaml").write_text("backbone: [unclosed\n")
        elif damage == "manifest":
            (ckpts[-1] / "manifest.json").write_text("{")
        elif damage == "metrics-middle":
            lines = (run / "metrics.jsonl").read_text().splitlines()
            (run / "metrics.jsonl").write_text(lines[0][:10] + "\n" + "\n".join(lines[1:]) + "\n")
        elif damage == "sd3-checkpoint":
            config = yaml.safe_load((run / "config.yaml").read_text())
            config["backbone"]["name"] = "sd3"
            (run / "config.yaml").write_text(yaml.safe_dump(config))
        return {"run": str(run), "ckpt": str(ckpts[-1]), "old": str(ckpts[0])}
    return make


def samples_copy(damage: str) -> Prepare:
    def make(w: World, tmp: Path) -> dict:
        samples = tmp / "samples"
        shutil.copytree(w.samples, samples)
        first = samples / "00000"
        if damage == "not-png":
            (first / "samples" / "0.png").write_text("this is not a PNG")
        elif damage == "truncated-png":
            png = first / "samples" / "0.png"
            png.write_bytes(png.read_bytes()[:60])
        elif damage == "metadata":
            (first / "metadata.jsonl").write_text("{broken")
        elif damage == "metadata-no-prompt":
            (first / "metadata.jsonl").write_text(json.dumps({"text": "x"}))
        elif damage == "metadata-list":
            (first / "metadata.jsonl").write_text("[1]")
        elif damage == "no-labels":
            (samples / "sampling.json").unlink()
        elif damage == "bad-sampling-json":
            (samples / "sampling.json").write_text("{oops")
        elif damage == "empty":
            shutil.rmtree(samples)
            samples.mkdir()
        elif damage == "sizes":
            from PIL import Image
            Image.new("RGB", (16, 16)).save(first / "samples" / "1.png")
        return {"samples": str(samples)}
    return make


def scores_file(kind: str) -> Prepare:
    def make(w: World, tmp: Path) -> dict:
        path = tmp / ("scores.csv" if kind.startswith("csv") else "scores.parquet")
        if kind == "garbage":
            path.write_bytes(b"PAR1 not really")
        elif kind == "csv-columns":
            path.write_text("a,b\n1,2\n")
        elif kind == "csv-empty":
            path.write_text("")
        elif kind == "geneval-tag":
            import pandas as pd
            frame = pd.read_parquet(w.scores).assign(metric="geneval", tag="nonsense")
            frame.to_parquet(path)
        return {"file": str(path)}
    return make


def metrics(kind: str) -> Prepare:
    def make(w: World, tmp: Path) -> dict:
        run = tmp / "run"
        run.mkdir()
        rows = [json.dumps({"step": s, "loss": 1.0, "reward_mean": 0.1 * s, "grad_norm": 1.0}) for s in (1, 2, 3)]
        content = {"middle": rows[0] + "\n{broken\n" + rows[2] + "\n", "empty": "",
                   "not-objects": "[1]\n[2]\n", "no-step": '{"loss": 1}\n'}[kind]
        (run / "metrics.jsonl").write_text(content)
        return {"run": str(run)}
    return make


def spec_edit(edit: Callable[[dict], dict | list | str]) -> Prepare:
    return yaml_file("spec", edit)


def with_(tree: dict, path: str, value) -> dict:
    node = tree
    parts = path.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return tree


def cache_of_prompts(prompts: list[str]) -> Prepare:
    def make(w: World, tmp: Path) -> dict:
        file = tmp / "p.txt"
        file.write_text("\n".join(prompts) + "\n")
        return {"file": str(file)}
    return make


def a_file(w: World, tmp: Path) -> dict:
    path = tmp / "a-file"
    path.write_text("x")
    return {"file": str(path)}


def other_samples_dir(w: World, tmp: Path) -> dict:
    out = tmp / "out"
    shutil.copytree(w.samples, out)
    write_json(out / "sampling.json", {"format": 1, "steps": 50, "seed": 9, "backbone": {}, "checkpoint": None,
                                       "ema": False})
    return {"out": str(out)}


NON_UTF8 = b"a photo of a caf\xe9\n\xff\xfe\n"
TRAIN = ["train", "--config", "{config}", "run_dir={tmp}/run"]
DRY = TRAIN + ["--dry-run"]
SAMPLE = ["sample", "--cache", "{cache}", "--out", "{tmp}/out", "--backbone", "flux", "--tiny", "--dtype", "float32",
          "--steps", "2", "--images", "1", "--no-progress"]
SCORE = ["score", "{samples}", "--out", "{tmp}/s.parquet", "--no-progress", "--device", "cpu"]
TABLE = ["table", "{scores}", "--out", "{tmp}/tables", "--layout", "auto", "--resamples", "10"]
LAUNCH = ["sweep", "launch", "{spec}", "--root", "{tmp}/sweep", "--cluster", "slurm", "--dry-run"]
EMBED = ["embed", "--config", "{config}", "backbone.tiny=true", "prompts.file={prompts}", "prompts.cache={tmp}/c"]


def train_values() -> list[Case]:
    bad = {
        "lr-negative": ("optim.lr=-1", "optim.lr"), "lr-zero": ("optim.lr=0", "optim.lr"),
        "lr-inf": ("optim.lr=.inf", "optim.lr"), "lr-nan": ("optim.lr=.nan", "optim.lr"),
        "lr-text": ("optim.lr=fast", "optim.lr"), "eps-zero": ("optim.eps=0", "optim.eps"),
        "eps-inf": ("optim.eps=.inf", "optim.eps"), "weight-decay-negative": ("optim.weight_decay=-0.1", "weight_decay"),
        "weight-decay-nan": ("optim.weight_decay=.nan", "weight_decay"), "betas-one": ("optim.betas=[0.9,1.0]", "betas"),
        "betas-three": ("optim.betas=[0.9,0.9,0.9]", "betas"), "betas-text": ("optim.betas=high", "betas"),
        "grad-clip-zero": ("optim.grad_clip=0", "grad_clip"), "grad-clip-inf": ("optim.grad_clip=.inf", "grad_clip"),
        "ema-decay-one": ("optim.ema_decay=1", "ema_decay"), "ema-decay-negative": ("optim.ema_decay=-0.5", "ema_decay"),
        "ema-decay-nan": ("optim.ema_decay=.nan", "ema_decay"),
        "num-steps-one": ("schedule.num_steps=1", "num_steps"), "iterations-zero": ("schedule.iterations=0", "iterations"),
        "iterations-float": ("schedule.iterations=2.5", "iterations"),
        "global-batch-zero": ("schedule.global_batch=0", "global_batch"),
        "micro-batch-zero": ("schedule.micro_batch=0", "micro_batch"),
        "global-batch-not-multiple": ("schedule.global_batch=3", "global_batch"),
        "lora-rank-negative": ("train.lora.rank=-1", "lora.rank"), "lora-alpha-zero": ("train.lora.alpha=0", "lora.alpha"),
        "lora-no-targets": ("train.lora.rank=2 train.lora.targets=[]", "targets"),
        "master-dtype": ("train.master_dtype=float8", "master_dtype"),
        "compile-mode": ("train.compile_mode=fastest", "compile_mode"),
        "max-skips-zero": ("train.max_consecutive_skips=0", "max_consecutive_skips"),
        "checkpoint-every-negative": ("checkpoint.every=-1", "checkpoint.every"),
        "checkpoint-keep-zero": ("checkpoint.keep=0", "checkpoint.keep"),
        "grad-parts-negative": ("logging.grad_parts_every=-2", "grad_parts_every"),
        "timeout-zero": ("distributed.timeout_s=0", "timeout_s"), "strategy": ("distributed.strategy=zero3", "strategy"),
        "backend": ("distributed.backend=mpi", "backend"), "fsdp-dtype": ("distributed.fsdp_param_dtype=int8", "fsdp"),
        "fsdp-with-lora": ("distributed.strategy=fsdp train.lora.rank=2", "strategy"),
        "seed-text": ("seed=abc", "seed"), "seed-list": ("seed=[1,2]", "seed"),
        "method-unknown": ("method.name=dpo", "method.name"), "method-field-unknown": ("method.gamma=1", "method"),
        "refl-m-too-large": ("method.m=9", "method.m"), "refl-m-zero": ("method.m=0", "method.m"),
        "method-not-a-section": ("method=refl", "method"),
        "reward-unknown": ("reward.name=clipscore", "reward.name"), "reward-hpsv2-no-path": ("reward.name=hpsv2", "reward"),
        "reward-path-missing": ("reward.name=pickscore reward.path=/nonexistent", "reward"),
        "reward-weight-inf": ("reward.weight=.inf", "reward.weight"),
        "reward-weighted-no-parts": ("reward.name=weighted", "reward.parts"),
        "reward-not-a-section": ("reward=hps", "reward"),
        "backbone-unknown": ("backbone.name=sdxl", "backbone.name"), "backbone-dtype": ("backbone.dtype=fp8", "dtype"),
        "backbone-path-missing": ("backbone.tiny=false backbone.path=/nonexistent", "backbone.path"),
        "backbone-no-path": ("backbone.tiny=false", "backbone.path"),
        "height-not-multiple": ("backbone.height=33", "backbone.height"),
        "height-zero": ("backbone.height=0", "backbone.height"),
        "guidance-negative": ("backbone.guidance=-1", "guidance"),
        "toy-with-lora": ("backbone.name=toy train.lora.rank=2 prompts.cache=null", "lora.rank"),
        "cache-missing": ("prompts.cache={tmp}/no-cache", "prompts.cache"),
        "cache-null": ("prompts.cache=null", "prompts.cache"),
        "cache-of-sd3": ("prompts.cache={sd3_cache}", "prompts.cache"),
        "prompts-file-missing": ("prompts.file={tmp}/none.txt", "prompts.file"),
        "unknown-section": ("sampler.steps=3", "sampler"), "unknown-field": ("schedule.epochs=3", "schedule.epochs"),
        "section-as-scalar": ("schedule=3", "schedule"), "run-dir-empty": ("run_dir=''", "run_dir"),
    }
    cases = [Case(f"train/{name}", DRY + value.split(), expect) for name, (value, expect) in bad.items()]
    cases += [
        Case("train/config-missing", ["train", "--config", "{tmp}/none.yaml"], "--config"),
        Case("train/config-not-yaml", ["train", "--config", "{file}"], "--config", text("c.yaml", "a: [b\n")),
        Case("train/config-a-list", ["train", "--config", "{file}"], "--config", text("c.yaml", "- 1\n- 2\n")),
        Case("train/config-not-utf8", ["train", "--config", "{file}"], "--config", text("c.yaml", b"seed: \xff\n")),
        Case("train/config-a-directory", ["train", "--config", "{tmp}"], "--config"),
        Case("train/override-without-equals", DRY + ["schedule.iterations"], "override"),
        Case("train/override-empty-key", DRY + ["=3"], "override"),
        Case("train/override-bad-yaml", DRY + ["schedule.iterations=[1"], "override"),
        Case("train/prompts-not-utf8", DRY + ["prompts.file={file}"], "prompts.file", text("p.txt", NON_UTF8)),
        Case("train/prompts-empty", DRY + ["prompts.file={file}"], "prompts.file", text("p.txt", "\n\n")),
        Case("train/prompts-json-not-list", DRY + ["prompts.file={file}"], "prompts.file", text("p.json", '{"a": 1}')),
        Case("train/prompts-jsonl-broken", DRY + ["prompts.file={file}"], "prompts.file", text("p.jsonl", '{"prompt": "a"\n')),
        Case("train/prompts-jsonl-no-prompt", DRY + ["prompts.file={file}"], "prompts.file", text("p.jsonl", '{"text": "a"}\n')),
        Case("train/prompts-not-cached", DRY + ["prompts.file={file}"], "prompts.cache",
             cache_of_prompts(["a prompt nobody embedded"])),
        Case("train/cache-truncated-shard", DRY + ["prompts.cache={cache}"], "shard", damaged_cache("truncate")),
        Case("train/cache-garbage-shard", DRY + ["prompts.cache={cache}"], "shard", damaged_cache("garbage")),
        Case("train/cache-missing-shard", DRY + ["prompts.cache={cache}"], "shard", damaged_cache("missing")),
        Case("train/cache-index-broken", DRY + ["prompts.cache={cache}"], "index.json", damaged_cache("index")),
        Case("train/cache-index-empty", DRY + ["prompts.cache={cache}"], "prompts.cache", damaged_cache("empty-index")),
        Case("train/cache-index-a-list", DRY + ["prompts.cache={cache}"], "prompts.cache", damaged_cache("index-list")),
        Case("train/run-dir-exists-no-resume", TRAIN[:3] + ["run_dir={run}"], "run_dir", run_copy()),
        Case("train/run-dir-is-a-file", DRY[:3] + ["run_dir={file}", "--dry-run"], "run_dir", a_file),
        Case("train/run-dir-read-only", TRAIN[:3] + ["run_dir={readonly}/run"], "{readonly}"),
        Case("train/resume-not-a-dir", TRAIN + ["--resume", "{tmp}/nothing"], "--resume"),
        Case("train/resume-damaged-checkpoint", TRAIN[:3] + ["run_dir={tmp}/new", "--resume", "{ckpt}"], "--resume",
             run_copy("all")),
        Case("train/resume-unfinished-checkpoint", TRAIN[:3] + ["run_dir={tmp}/new", "--resume", "{ckpt}"], "--resume",
             run_copy("newest")),
        Case("train/resume-manifest-broken", TRAIN[:3] + ["run_dir={tmp}/new", "--resume", "{ckpt}"], "--resume",
             run_copy("manifest")),
        Case("train/resume-checkpoint-of-sd3", TRAIN[:3] + ["run_dir={tmp}/new", "--resume", "{ckpt}"], "backbone",
             run_copy("sd3-checkpoint")),
        Case("train/resume-checkpoint-of-lora-run", TRAIN[:3] + ["run_dir={tmp}/new", "--resume", "{ckpt}",
             "train.lora.rank=2"], "lora", run_copy()),
        Case("train/resume-auto-all-damaged", TRAIN[:3] + ["run_dir={run}", "--resume", "auto"], "checkpoint",
             run_copy("all")),
        Case("train/resume-auto-method-changed", TRAIN[:3] + ["run_dir={run}", "--resume", "auto", "method.name=drtune",
             "method.m=3"], "method", run_copy()),
        Case("train/resume-auto-reward-changed", TRAIN[:3] + ["run_dir={run}", "--resume", "auto",
             "reward.name=weighted", "reward.parts=[{{name: tiny_conv}}]"], "reward", run_copy()),
        Case("train/resume-auto-schedule-changed", TRAIN[:3] + ["run_dir={run}", "--resume", "auto",
             "schedule.num_steps=6"], "schedule", run_copy()),
        Case("train/resume-auto-lora-added", TRAIN[:3] + ["run_dir={run}", "--resume", "auto", "train.lora.rank=2"],
             "lora", run_copy()),
        Case("train/resume-auto-backbone-changed", TRAIN[:3] + ["run_dir={run}", "--resume", "auto",
             "backbone.height=64", "backbone.width=64"], "backbone", run_copy()),
        Case("train/resume-auto-run-config-garbage", TRAIN[:3] + ["run_dir={run}", "--resume", "auto"], "config.yaml",
             run_copy("config-garbage")),
        Case("train/resume-bad-word", TRAIN + ["--resume", "yes"], "--resume"),
        Case("train/unknown-flag", TRAIN + ["--restart"], "unrecognized arguments"),
    ]
    return cases


def embed_cases() -> list[Case]:
    return [
        Case("embed/batch-size-zero", EMBED + ["--batch-size", "0"], "--batch-size"),
        Case("embed/batch-size-negative", EMBED + ["--batch-size", "-4"], "--batch-size"),
        Case("embed/shard-size-zero", EMBED + ["--shard-size", "0"], "--shard-size"),
        Case("embed/max-sequence-length-zero", EMBED + ["--max-sequence-length", "0"], "--max-sequence-length"),
        Case("embed/batch-size-text", EMBED + ["--batch-size", "many"], ""),
        Case("embed/toy-backbone", EMBED + ["backbone.name=toy"], "backbone.name"),
        Case("embed/no-cache", EMBED + ["prompts.cache=null"], "prompts.cache"),
        Case("embed/no-prompts-file", EMBED + ["prompts.file=null"], "prompts.file"),
        Case("embed/model-dir-missing", EMBED + ["backbone.tiny=false", "backbone.path={tmp}/nope"], "backbone.path"),
        Case("embed/model-dir-without-encoders", EMBED + ["backbone.tiny=false", "backbone.path={tmp}"], "backbone.path"),
        Case("embed/prompts-missing", EMBED + ["prompts.file={tmp}/none.txt"], "prompts.file"),
        Case("embed/prompts-not-utf8", EMBED + ["prompts.file={file}"], "prompts.file", text("p.txt", NON_UTF8)),
        Case("embed/prompts-json-broken", EMBED + ["prompts.file={file}"], "prompts.file", text("p.json", "[1, 2")),
        Case("embed/prompts-json-numbers", EMBED + ["prompts.file={file}"], "prompts.file", text("p.json", "[1, 2]")),
        Case("embed/prompts-jsonl-no-prompt", EMBED + ["prompts.file={file}"], "prompts.file",
             text("p.jsonl", '{"caption": "a"}\n')),
        Case("embed/cache-of-sd3", EMBED + ["prompts.cache={sd3_cache}"], "prompts.cache"),
        Case("embed/cache-index-broken", EMBED + ["prompts.cache={cache}"], "index.json", damaged_cache("index")),
        Case("embed/cache-read-only", EMBED + ["prompts.cache={readonly}/c"], "{readonly}"),
        Case("embed/cache-is-a-file", EMBED + ["prompts.cache={file}"], "prompts.cache", a_file),
        Case("embed/device-missing", EMBED + ["--device", "cuda:3"], "--device"),
        Case("embed/device-nonsense", EMBED + ["--device", "gpu0"], "--device"),
        Case("embed/ctrl-c", EMBED, "interrupted", code=130, interrupt="benchmark.cli.embed:write_cache"),
    ]


def sample_cases() -> list[Case]:
    return [
        Case("sample/steps-one", SAMPLE + ["--steps", "1"], "--steps"),
        Case("sample/images-zero", SAMPLE + ["--images", "0"], "--images"),
        Case("sample/batch-size-zero", SAMPLE + ["--batch-size", "0"], "--batch-size"),
        Case("sample/world-size-zero", SAMPLE + ["--world-size", "0"], "--world-size"),
        Case("sample/rank-too-large", SAMPLE + ["--rank", "3", "--world-size", "2"], "--rank"),
        Case("sample/rank-negative", SAMPLE + ["--rank", "-1"], "--rank"),
        Case("sample/limit-zero", SAMPLE + ["--limit", "0"], "--limit"),
        Case("sample/height-not-multiple", SAMPLE + ["--height", "33"], "backbone.height"),
        Case("sample/width-zero", SAMPLE + ["--width", "0"], "backbone.width"),
        Case("sample/guidance-negative", SAMPLE + ["--guidance", "-2"], "guidance"),
        Case("sample/run-and-checkpoint", SAMPLE + ["--run", "{run}", "--checkpoint", "{ckpt}"], "--run"),
        Case("sample/ema-without-model", SAMPLE + ["--ema"], "--ema"),
        Case("sample/run-missing", SAMPLE[:5] + ["--run", "{tmp}/none"], "--run"),
        Case("sample/run-without-config", SAMPLE[:5] + ["--run", "{run}"], "--run", run_copy("no-config")),
        Case("sample/run-config-garbage", SAMPLE[:5] + ["--run", "{run}"], "config.yaml", run_copy("config-garbage")),
        Case("sample/run-without-checkpoints", SAMPLE[:5] + ["--run", "{run}"], "--run", run_copy("no-checkpoints")),
        Case("sample/run-all-damaged", SAMPLE[:5] + ["--run", "{run}"], "--run", run_copy("all")),
        Case("sample/checkpoint-not-a-dir", SAMPLE + ["--checkpoint", "{tmp}/none"], "--checkpoint"),
        Case("sample/checkpoint-damaged", SAMPLE + ["--checkpoint", "{ckpt}"], "--checkpoint", run_copy("all")),
        Case("sample/checkpoint-unfinished", SAMPLE + ["--checkpoint", "{ckpt}"], "--checkpoint", run_copy("newest")),
        Case("sample/checkpoint-for-sd3", SAMPLE[:5] + ["--checkpoint", "{ckpt}", "--backbone", "sd3", "--tiny"],
             "--checkpoint", run_copy()),
        Case("sample/cache-missing", SAMPLE[:1] + ["--cache", "{tmp}/none"] + SAMPLE[3:], "--cache"),
        Case("sample/cache-of-sd3", SAMPLE[:1] + ["--cache", "{sd3_cache}"] + SAMPLE[3:], "--cache"),
        Case("sample/cache-truncated-shard", SAMPLE, "shard", damaged_cache("truncate")),
        Case("sample/cache-garbage-shard", SAMPLE, "shard", damaged_cache("garbage")),
        Case("sample/cache-index-broken", SAMPLE, "index.json", damaged_cache("index")),
        Case("sample/cache-index-empty", SAMPLE, "--cache", damaged_cache("empty-index")),
        Case("sample/prompts-missing", SAMPLE + ["--prompts", "{tmp}/none.txt"], "prompts"),
        Case("sample/prompts-not-cached", SAMPLE + ["--prompts", "{file}"], "--cache",
             cache_of_prompts(["never embedded"])),
        Case("sample/prompts-not-utf8", SAMPLE + ["--prompts", "{file}"], "prompts", text("p.txt", NON_UTF8)),
        Case("sample/out-is-a-file", SAMPLE[:4] + ["{file}"] + SAMPLE[5:], "--out", a_file),
        Case("sample/out-other-settings", SAMPLE[:4] + ["{out}"] + SAMPLE[5:], "same settings", other_samples_dir),
        Case("sample/out-read-only", SAMPLE[:4] + ["{readonly}/out"] + SAMPLE[5:], "{readonly}"),
        Case("sample/toy-backbone", SAMPLE[:5] + ["--config", "{file}"], "backbone.name",
             text("c.yaml", "backbone: {name: toy}\n")),
        Case("sample/config-missing", SAMPLE + ["--config", "{tmp}/none.yaml"], "--config"),
        Case("sample/config-not-yaml", SAMPLE + ["--config", "{file}"], "--config", text("c.yaml", "a: [\n")),
        Case("sample/config-bad-backbone", SAMPLE[:5] + ["--config", "{file}"], "backbone",
             text("c.yaml", "backbone: {name: flux, tiny: true, dtype: fp4}\n")),
        Case("sample/model-path-missing", SAMPLE[:5] + ["--backbone", "flux", "--model-path", "{tmp}/m"], "backbone.path"),
        Case("sample/device-missing", SAMPLE + ["--device", "cuda:5"], "--device"),
        Case("sample/device-nonsense", SAMPLE + ["--device", "tpu"], "--device"),
        Case("sample/ctrl-c", SAMPLE, "interrupted", code=130, interrupt="benchmark.cli.sample:generate"),
    ]


def score_cases() -> list[Case]:
    tiny = ["--reward", "tiny_conv"]
    return [
        Case("score/samples-missing", ["score", "{tmp}/none", "--out", "{tmp}/s.parquet"] + tiny, "samples"),
        Case("score/samples-a-file", ["score", "{file}", "--out", "{tmp}/s.parquet"] + tiny, "samples", a_file),
        Case("score/samples-empty", SCORE + tiny, "samples", samples_copy("empty")),
        Case("score/metadata-broken", SCORE + tiny, "metadata", samples_copy("metadata")),
        Case("score/metadata-no-prompt", SCORE + tiny, "metadata", samples_copy("metadata-no-prompt")),
        Case("score/metadata-a-list", SCORE + tiny, "metadata", samples_copy("metadata-list")),
        Case("score/png-not-png", SCORE + tiny, "0.png", samples_copy("not-png")),
        Case("score/png-truncated", SCORE + tiny, "0.png", samples_copy("truncated-png")),
        Case("score/images-of-two-sizes", SCORE + tiny, "size", samples_copy("sizes")),
        Case("score/no-labels", SCORE + tiny, "--run", samples_copy("no-labels")),
        Case("score/sampling-json-broken", SCORE + tiny, "sampling.json", samples_copy("bad-sampling-json")),
        Case("score/out-not-parquet", SCORE[:2] + ["--out", "{tmp}/s.csv"] + tiny, "--out"),
        Case("score/out-garbage-parquet", SCORE[:2] + ["--out", "{file}"] + tiny, "--out", scores_file("garbage")),
        Case("score/out-read-only", SCORE[:2] + ["--out", "{readonly}/s.parquet"] + tiny, "{readonly}"),
        Case("score/out-in-a-file", SCORE[:2] + ["--out", "{file}/s.parquet"] + tiny, "--out", a_file),
        Case("score/reward-no-name", SCORE + ["--reward", ":x"], "--reward"),
        Case("score/reward-unknown", SCORE + ["--reward", "clipscore:/x"], "--reward"),
        Case("score/reward-path-missing", SCORE + ["--reward", "hpsv2:{tmp}/none.pt"], "--reward"),
        Case("score/reward-needs-path", SCORE + ["--reward", "pickscore"], "--reward"),
        Case("score/reward-twice", SCORE + tiny + tiny, "--reward"),
        Case("score/reward-config-missing", SCORE + ["--reward-config", "{tmp}/none.yaml"], "--reward-config"),
        Case("score/reward-config-not-yaml", SCORE + ["--reward-config", "{file}"], "--reward-config",
             text("r.yaml", "reward: {name: [\n")),
        Case("score/reward-config-unknown", SCORE + ["--reward-config", "{file}"], "reward.name",
             text("r.yaml", "reward: {name: clip}\n")),
        Case("score/reward-config-unified", SCORE + ["--reward-config", "{file}"], "reward.name",
             text("r.yaml", "reward: {name: unifiedreward, path: 'http://localhost:1'}\n")),
        Case("score/unified-url-malformed", SCORE + ["--unified-reward", "localhost"], "--unified-reward"),
        Case("score/unified-unreachable", SCORE + ["--unified-reward", "http://127.0.0.1:9"], "--unified-reward"),
        Case("score/ur-workers-zero", SCORE + tiny + ["--ur-workers", "0"], "--ur-workers"),
        Case("score/batch-size-zero", SCORE + tiny + ["--batch-size", "0"], "--batch-size"),
        Case("score/no-metric", SCORE, "score"),
        Case("score/geneval-detector-missing", SCORE + ["--geneval-detector", "{tmp}/none"], "--geneval-detector"),
        Case("score/geneval-clip-missing", SCORE + ["--geneval-detector", "{tmp}", "--geneval-clip", "{tmp}/none.pt"],
             "--geneval"),
        Case("score/device-missing", SCORE[:-2] + ["--device", "cuda:2"] + tiny, "--device"),
        Case("score/device-nonsense", SCORE[:-2] + ["--device", "quantum"] + tiny, "--device"),
    ]


def table_cases() -> list[Case]:
    return [
        Case("table/scores-missing", ["table", "{tmp}/none.parquet", "--out", "{tmp}/t"], "SCORES"),
        Case("table/scores-garbage", ["table", "{file}", "--out", "{tmp}/t"], "SCORES", scores_file("garbage")),
        Case("table/scores-csv-columns", ["table", "{file}", "--out", "{tmp}/t"], "SCORES", scores_file("csv-columns")),
        Case("table/scores-csv-empty", ["table", "{file}", "--out", "{tmp}/t"], "SCORES", scores_file("csv-empty")),
        Case("table/scores-bad-geneval-tags", ["table", "{file}", "--out", "{tmp}/t"], "SCORES",
             scores_file("geneval-tag")),
        Case("table/empty-directory", ["table", "{tmp}", "--out", "{tmp}/t"], "SCORES"),
        Case("table/layout-matches-nothing", ["table", "{scores}", "--out", "{tmp}/t", "--layout", "table2",
             "--no-paper"], "--layout"),
        Case("table/layout-unknown", TABLE + ["--layout", "table9"], ""),
        Case("table/resamples-zero", TABLE + ["--resamples", "0"], "--resamples"),
        Case("table/prompt-set-malformed", TABLE + ["--prompt-set", "hpsv2.1"], "--prompt-set"),
        Case("table/prompt-set-unknown", TABLE + ["--prompt-set", "tiny_conv=mjhq"], "--prompt-set"),
        Case("table/baseline-unknown", TABLE + ["--baseline", "sdxl"], "--baseline"),
        Case("table/out-read-only", TABLE[:2] + ["--out", "{readonly}/t"] + TABLE[4:], "{readonly}"),
        Case("table/out-is-a-file", TABLE[:2] + ["--out", "{file}"] + TABLE[4:], "--out", a_file),
        Case("table/name-with-slash", TABLE + ["--name", "a/../../b"], "--name"),
    ]


def report_cases() -> list[Case]:
    report = ["report", "{tmp}", "--out", "{tmp}/r"]
    return [
        Case("report/source-missing", ["report", "{tmp}/none", "--out", "{tmp}/r"], "SPEC_OR_ROOT"),
        Case("report/no-runs-in-folder", report, "SPEC_OR_ROOT"),
        Case("report/spec-not-yaml", ["report", "{file}", "--out", "{tmp}/r"], "", text("s.yaml", "name: [a\n")),
        Case("report/thumb-too-small", report + ["--thumb", "4"], "--thumb"),
        Case("report/max-prompts-negative", report + ["--max-prompts", "-1"], "--max-prompts"),
        Case("report/resamples-zero", report + ["--resamples", "0"], "--resamples"),
        Case("report/out-is-a-file", ["report", "{tmp}", "--out", "{file}"], "--out", a_file),
        Case("report/layout-unknown", report + ["--layout", "table9"], ""),
    ]


def plot_cases() -> list[Case]:
    return [
        Case("plot/curves-run-missing", ["plot", "curves", "{tmp}/none", "--out", "{tmp}/c.png"], "RUN_DIR"),
        Case("plot/curves-metrics-middle-line", ["plot", "curves", "{run}", "--out", "{tmp}/c.png"], "metrics.jsonl",
             metrics("middle")),
        Case("plot/curves-metrics-empty", ["plot", "curves", "{run}", "--out", "{tmp}/c.png"], "metrics.jsonl",
             metrics("empty")),
        Case("plot/curves-metrics-not-objects", ["plot", "curves", "{run}", "--out", "{tmp}/c.png"], "metrics.jsonl",
             metrics("not-objects")),
        Case("plot/curves-metrics-no-step", ["plot", "curves", "{run}", "--out", "{tmp}/c.png"], "metrics.jsonl",
             metrics("no-step")),
        Case("plot/curves-labels-count", ["plot", "curves", "{run}", "--labels", "a", "b", "--out", "{tmp}/c.png"],
             "--labels"),
        Case("plot/curves-smooth-zero", ["plot", "curves", "{run}", "--smooth", "0", "--out", "{tmp}/c.png"], "--smooth"),
        Case("plot/curves-unknown-metric", ["plot", "curves", "{run}", "--metrics", "nothing", "--out", "{tmp}/c.png"],
             "nothing"),
        Case("plot/curves-out-read-only", ["plot", "curves", "{run}", "--out", "{readonly}/c.png"], "{readonly}"),
        Case("plot/curves-out-unknown-format", ["plot", "curves", "{run}", "--out", "{tmp}/c.banana"], "--out"),
        Case("plot/gradnorm-window-zero", ["plot", "gradnorm", "{run}", "--window", "0", "--out", "{tmp}/g.png"],
             "--window"),
        Case("plot/gradnorm-run-missing", ["plot", "gradnorm", "{tmp}/none", "--out", "{tmp}/g.png"], "RUN_DIR"),
        Case("plot/ablation-nothing", ["plot", "ablation", "--out", "{tmp}/a.png"], "ablation"),
        Case("plot/ablation-pattern-broken", ["plot", "ablation", "{scores}", "--values-from", "name", "--pattern", "(",
             "--out", "{tmp}/a.png"], "--pattern"),
        Case("plot/ablation-pattern-no-group", ["plot", "ablation", "{scores}", "--values-from", "name", "--pattern",
             "refl", "--out", "{tmp}/a.png"], "--pattern"),
        Case("plot/ablation-no-key", ["plot", "ablation", "{scores}", "--out", "{tmp}/a.png"], "--key"),
        Case("plot/ablation-unknown-run-dir", ["plot", "ablation", "{scores}", "--key", "method.m", "--run-dirs",
             "{tmp}/elsewhere", "--out", "{tmp}/a.png"], "--run-dirs"),
        Case("plot/ablation-unknown-metric", ["plot", "ablation", "{scores}", "--values-from", "name", "--pattern",
             "(re)fl", "--metric", "hpsv3", "--out", "{tmp}/a.png"], "--metric"),
        Case("plot/ablation-paper-unknown", ["plot", "ablation", "--paper", "ablation_gamma", "--out", "{tmp}/a.png"],
             "ablation_gamma"),
        Case("plot/ablation-resamples-zero", ["plot", "ablation", "--paper", "ablation_lambda", "--resamples", "0",
             "--out", "{tmp}/a.png"], "--resamples"),
        Case("plot/radar-nothing", ["plot", "radar", "--out", "{tmp}/r.png"], "radar"),
        Case("plot/radar-no-geneval", ["plot", "radar", "{scores}", "--out", "{tmp}/r.png"], "geneval"),
        Case("plot/radar-paper-method-unknown", ["plot", "radar", "--paper", "--paper-methods", "DALL-E 9",
             "--out", "{tmp}/r.png"], "--paper-methods"),
        Case("plot/grid-prompts-zero", ["plot", "grid", "{samples}", "--prompts", "0", "--out", "{tmp}/g.png"],
             "--prompts"),
        Case("plot/grid-samples-missing", ["plot", "grid", "{tmp}/none", "--out", "{tmp}/g.png"], "samples"),
        Case("plot/grid-cell-zero", ["plot", "grid", "{samples}", "--cell", "0", "--out", "{tmp}/g.png"], "--cell"),
        Case("plot/grid-png-broken", ["plot", "grid", "{samples}", "--out", "{tmp}/g.png"], "0.png",
             samples_copy("not-png")),
        Case("plot/grid-labels-count", ["plot", "grid", "{samples}", "--labels", "a", "b", "--out", "{tmp}/g.png"],
             "--labels"),
    ]


def geneval_prompt_cases() -> list[Case]:
    gp = ["geneval-prompts", "--out", "{tmp}/p.jsonl"]
    return [
        Case("geneval-prompts/n-zero", gp + ["--n", "0"], "n:"),
        Case("geneval-prompts/n-negative", gp + ["--n", "-5"], "n:"),
        Case("geneval-prompts/ratios-five", gp + ["--n", "5", "--ratios", "1:1:1:1:1"], "--ratios"),
        Case("geneval-prompts/ratios-text", gp + ["--n", "5", "--ratios", "a:b:c:d:e:f"], "--ratios"),
        Case("geneval-prompts/ratios-all-zero", gp + ["--n", "5", "--ratios", "0:0:0:0:0:0"], "ratios"),
        Case("geneval-prompts/ratios-negative", gp + ["--n", "5", "--ratios", "1:-1:0:0:0:0"], "ratios"),
        Case("geneval-prompts/ratios-inf", gp + ["--n", "5", "--ratios", "inf:1:0:0:0:0"], "ratios"),
        Case("geneval-prompts/max-count-one", gp + ["--n", "5", "--max-count", "1"], "max_count"),
        Case("geneval-prompts/too-many-distinct", gp + ["--n", "100000"], "distinct"),
        Case("geneval-prompts/out-not-jsonl", ["geneval-prompts", "--n", "5", "--out", "{tmp}/p.txt"], "--out"),
        Case("geneval-prompts/out-read-only", ["geneval-prompts", "--n", "5", "--out", "{readonly}/p.jsonl"],
             "{readonly}"),
        Case("geneval-prompts/out-is-a-directory", ["geneval-prompts", "--n", "5", "--out", "{tmp}/d.jsonl"], "--out",
             lambda w, tmp: (tmp / "d.jsonl").mkdir() or {}),
    ]


def sweep_cases() -> list[Case]:
    spec = ["sweep", "launch", "{file}", "--root", "{tmp}/sweep", "--cluster", "slurm", "--dry-run"]
    return [
        Case("sweep/spec-missing", ["sweep", "launch", "{tmp}/none.yaml", "--dry-run"], "spec"),
        Case("sweep/spec-malformed-yaml", spec, "spec", text("s.yaml", "name: x\nbase: {seed: [\n")),
        Case("sweep/spec-a-list", spec, "spec", text("s.yaml", "- a\n- b\n")),
        Case("sweep/spec-not-utf8", spec, "spec", text("s.yaml", b"name: \xff\xfe\n")),
        Case("sweep/spec-unknown-key", spec, "runz", spec_edit(lambda t: with_(t, "runz", []))),
        Case("sweep/spec-bad-name", spec, "name", spec_edit(lambda t: with_(t, "name", "a b/c"))),
        Case("sweep/spec-extends-missing", spec, "extends", spec_edit(lambda t: with_(t, "extends", "nothere.yaml"))),
        Case("sweep/spec-extends-itself", spec, "extends", text("s.yaml", "name: loop\nextends: s.yaml\n")),
        Case("sweep/spec-runs-not-list", spec, "runs", spec_edit(lambda t: with_(t, "runs", {"a": 1}))),
        Case("sweep/spec-grid-empty-list", spec, "grid", spec_edit(lambda t: with_(t, "grid", {"seed": []}))),
        Case("sweep/spec-paths-not-mapping", spec, "paths", spec_edit(lambda t: with_(t, "paths", ["A"]))),
        Case("sweep/spec-run-invalid", spec, "method", spec_edit(lambda t: with_(t, "runs", [{"method": {"name": "x"}}]))),
        Case("sweep/spec-run-train-not-bool", spec, "train",
             spec_edit(lambda t: with_(t, "runs", [{"name": "a", "train": "no"}]))),
        Case("sweep/spec-duplicate-names", spec, "runs",
             spec_edit(lambda t: with_(t, "runs", [{"name": "a", "seed": 1}, {"name": "a", "seed": 2}]))),
        Case("sweep/spec-eval-steps", spec, "eval.steps", spec_edit(lambda t: with_(t, "eval.steps", 1))),
        Case("sweep/spec-eval-metrics", spec, "eval.metrics", spec_edit(lambda t: with_(t, "eval.metrics", {"a": 3}))),
        Case("sweep/spec-stage-unknown", spec, "stages", spec_edit(lambda t: with_(t, "stages", {"eval": "a:b"}))),
        Case("sweep/spec-stage-not-importable", spec, "stages",
             spec_edit(lambda t: with_(t, "stages", {"score": "nowhere.module:fn"}))),
        Case("sweep/spec-resources-unknown-stage", spec, "resources",
             spec_edit(lambda t: with_(t, "resources", {"eval": {"nodes": 1}}))),
        Case("sweep/spec-resources-not-mapping", spec, "resources",
             spec_edit(lambda t: with_(t, "resources", {"sample": 3}))),
        Case("sweep/spec-slurm-unknown-key", spec, "slurm", spec_edit(lambda t: with_(t, "slurm.gpus", 1))),
        Case("sweep/spec-slurm-cpus-negative", spec, "cpus_per_task",
             spec_edit(lambda t: with_(t, "slurm.cpus_per_task", -1))),
        Case("sweep/spec-slurm-time-banana", spec, "time", spec_edit(lambda t: with_(t, "slurm.time", "banana"))),
        Case("sweep/spec-slurm-nodes-text", spec, "nodes", spec_edit(lambda t: with_(t, "slurm.nodes", "two"))),
        Case("sweep/spec-slurm-not-mapping", spec, "slurm", spec_edit(lambda t: with_(t, "slurm", [1]))),
        Case("sweep/spec-unset-variable", ["sweep", "launch", "{file}", "--root", "{tmp}/sweep"], "MODEL_DIR",
             spec_edit(lambda t: with_(t, "base.backbone.path", "${MODEL_DIR}"))),
        Case("sweep/spec-variable-syntax", spec, "spec",
             spec_edit(lambda t: with_(t, "base.backbone.path", "${oc.env:X}"))),
        Case("sweep/time-banana", LAUNCH + ["--time", "banana"], "--time"),
        Case("sweep/time-zero", LAUNCH + ["--time", "0"], "--time"),
        Case("sweep/time-negative-days", LAUNCH + ["--time", "-1-00:00:00"], "--time"),
        Case("sweep/nodes-zero", LAUNCH + ["--nodes", "0"], "--nodes"),
        Case("sweep/gpus-negative", LAUNCH + ["--gpus-per-node", "-1"], "--gpus-per-node"),
        Case("sweep/cpus-negative", LAUNCH + ["--cpus-per-task", "-1"], "--cpus-per-task"),
        Case("sweep/mem-zero", LAUNCH + ["--mem-per-task-gb", "0"], "--mem-per-task-gb"),
        Case("sweep/mem-nan", LAUNCH + ["--mem-per-task-gb", "nan"], "--mem-per-task-gb"),
        Case("sweep/sbatch-not-an-option", LAUNCH + ["--sbatch", "exclusive"], "--sbatch"),
        Case("sweep/set-malformed", LAUNCH + ["--set", "FLUX_DIR"], "--set"),
        Case("sweep/cluster-unknown", LAUNCH + ["--cluster", "aws"], ""),
        Case("sweep/root-read-only", ["sweep", "launch", "{spec}", "--root", "{readonly}/s", "--cluster", "debug"],
             "{readonly}"),
        Case("sweep/status-spec-missing", ["sweep", "status", "{tmp}/none.yaml"], "spec"),
        Case("sweep/collect-nothing-scored", ["sweep", "collect", "{spec}", "--root", "{tmp}/sweep"], "scores"),
        Case("sweep/collect-out-read-only", ["sweep", "collect", "{spec}", "--root", "{tmp}/sweep", "--out",
             "{readonly}/c"], "{readonly}"),
    ]


def demo_cases() -> list[Case]:
    return [
        Case("demo/iterations-zero", ["demo", "--iterations", "0", "--out", "{tmp}/d"], "--iterations"),
        Case("demo/iterations-negative", ["demo", "--iterations", "-3", "--out", "{tmp}/d"], "--iterations"),
        Case("demo/samples-zero", ["demo", "--samples", "0", "--out", "{tmp}/d"], "--samples"),
        Case("demo/out-read-only", ["demo", "--iterations", "1", "--out", "{readonly}/d"], "{readonly}"),
        Case("demo/out-is-a-file", ["demo", "--iterations", "1", "--out", "{file}"], "--out", a_file),
    ]


def bench_cases() -> list[Case]:
    return [
        Case("bench/step-rounds-zero", ["bench", "step", "--rounds", "0"], "--rounds"),
        Case("bench/step-threads-negative", ["bench", "step", "--threads", "-2"], "--threads"),
        Case("bench/rollout-repeats-negative", ["bench", "rollout", "--repeats", "-1"], "--repeats"),
        Case("bench/steps-one", ["bench", "step", "--steps", "1"], "--steps"),
        Case("bench/memory-steps-zero", ["bench", "memory", "--steps", "0", "10"], "--steps"),
        Case("bench/resolution-zero", ["bench", "rollout", "--resolution", "0"], "--resolution"),
        Case("bench/resolution-not-multiple", ["bench", "rollout", "--resolution", "33"], "--resolution"),
        Case("bench/device-missing", ["bench", "step", "--device", "cuda:1"], "--device"),
        Case("bench/device-nonsense", ["bench", "step", "--device", "npu"], "--device"),
        Case("bench/compile-mode-unknown", ["bench", "step", "--compile", "turbo"], "--compile"),
        Case("bench/real-resolution-not-multiple", ["bench", "real", "--tiny", "--resolutions", "90"], "--resolutions"),
        Case("bench/real-without-memory", ["bench", "real"], "memory"),
    ]


def plan_cases() -> list[Case]:
    return [
        Case("plan/file-missing", ["plan", "{tmp}/none.yaml"], "FILE"),
        Case("plan/world-size-zero", ["plan", "{config}", "--world-size", "0"], "--world-size"),
        Case("plan/gpu-mem-negative", ["plan", "{config}", "--gpu-mem-gb", "-8"], "--gpu-mem-gb"),
        Case("plan/override-unknown", ["plan", "{config}", "method.alpah=0.1"], "method.alpah"),
    ]


def export_cases() -> list[Case]:
    return [
        Case("export/run-missing", ["export", "{tmp}/none", "--out", "{tmp}/x"], "{tmp}/none"),
        Case("export/step-missing", ["export", "{run}", "--step", "99", "--out", "{tmp}/x"], "--step", run_copy()),
        Case("export/out-exists", ["export", "{run}", "--out", "{run}"], "--out", run_copy()),
        Case("export/all-damaged", ["export", "{run}", "--out", "{tmp}/x"], "checkpoint", run_copy("all")),
    ]


def general_cases() -> list[Case]:
    return [
        Case("cli/no-command", [], ""),
        Case("cli/unknown-command", ["fit"], ""),
        Case("cli/unknown-option", ["table", "{scores}", "--out", "{tmp}/t", "--colour"], ""),
    ]


CASES = (train_values() + embed_cases() + sample_cases() + score_cases() + table_cases() + report_cases() + plot_cases()
         + geneval_prompt_cases() + sweep_cases() + demo_cases() + bench_cases() + plan_cases() + export_cases()
         + general_cases())
assert len({c.name for c in CASES}) == len(CASES), "case names must be unique"
