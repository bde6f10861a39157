"""Sweep specs: a base run config plus a list of runs and a grid, expanded into runs with stable ids.

A spec is a YAML file (or a mapping)::

    name: table2-hpdv2                 # the sweep's name (job names, tables)
    extends: _flux.yaml                # optional: a spec this one is merged over (path relative to this file)
    paths:                             # ${NAME} in any string below: the environment variable NAME, else the
      FLUX_DIR: null                   #   value here (which may use ${ENV} itself); null = the user must set it
    base: {...}                        # a run config tree (benchmark.training.config), shared by every run
    runs:                              # one entry per run; keys are nested sections or dotted keys
      - {name: pretrained, train: false}           # no training stage: samples the base model
      - {name: refl, method: {name: refl, m: 11}}  # a method section with another name replaces the base's
      - {name: dancegrpo, method: {name: grpo, preset: dancegrpo}}  # a preset's run settings override the base's
    grid: {seed: [0, 1]}               # dotted key -> values; every run entry x every grid point
    eval: {...}                        # sampling and scoring settings (``EvalConfig``), given to those stages
    stages: {train: "sweeps.stages:train", sample: "sweeps.stages:sample", score: "sweeps.stages:score"}
    slurm: {nodes: 2, gpus_per_node: 8, time: "24:00:00"}        # defaults of ``launcher.SlurmOptions``
    resources: {sample: {nodes: 1}, score: {gpus_per_node: 1}}  # per-stage changes of those
    collect: {layout: table2, baseline: pretrained}              # how ``sweep collect`` tabulates

A run's id is the sha1 of its resolved config (defaults filled in, ``run_dir`` and ``logging`` left out, ``${NAME}`` kept
unexpanded so moving a model directory keeps the id), its eval section and its stage list; its directory is
``<root>/runs/<name>-<id>``. Runs without training are identified by backbone and eval only.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from benchmark.core.configs import read_yaml, typed
from benchmark.core.errors import ConfigError
from benchmark.training.config import config_from_dict
from methods import preset_tree

STAGES = ("train", "sample", "score")
DEFAULT_STAGES = {name: f"sweeps.stages:{name}" for name in STAGES}
SPEC_KEYS = {"name", "description", "extends", "paths", "base", "runs", "grid", "eval", "stages", "slurm",
             "resources", "collect"}
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass
class EvalConfig:
    """The ``eval`` section: what the sample and score stages do after training (paper: 50 steps, 4 images)."""

    cache: str | None = None  # embedding cache of the evaluation prompts (`leapbench embed`)
    prompts: str | None = None  # prompt set file (.txt / .json / GenEval .jsonl); None = every cached prompt
    prompt_set: str | None = None  # label in the scores (hpdv2, geneval, ...); None = from the file name
    height: int | None = None  # None = the training resolution
    width: int | None = None
    guidance: float | None = None
    steps: int = 50
    images: int = 4  # images per prompt
    seed: int = 0
    batch_size: int = 4
    ema: bool = True  # sample with the EMA weights of the final checkpoint
    limit: int | None = None  # only the first N prompts (smoke runs)
    metrics: dict[str, dict] | None = None  # score key (hpsv2.1, pickscore, ...) -> reward section; null = none
    # GenEval prompts: {detector: GenEval's mmdet checkpoint (.pth; or a transformers Mask2Former dir: another
    # protocol), clip: open_clip ViT-L-14 file}
    geneval: dict | None = None

    def __post_init__(self):
        for name, low in (("steps", 2), ("images", 1), ("batch_size", 1)):
            if getattr(self, name) < low:
                raise ConfigError(f"eval.{name}", f"an integer >= {low}", getattr(self, name))
        if self.limit is not None and self.limit < 1:
            raise ConfigError("eval.limit", "an integer >= 1 or null", self.limit)
        self.metrics = dict(self.metrics or {})
        for key, section in self.metrics.items():
            if not isinstance(section, Mapping) or "name" not in section:
                raise ConfigError(f"eval.metrics.{key}", "a reward section with name: ...", section)


@dataclass
class RunSpec:
    """One run of a sweep: ``config`` is the resolved run config tree plus its ``eval`` section."""

    name: str
    id: str
    config: dict
    stages: list[tuple[str, str]]  # (stage name, "module:function"), in order
    train: bool = True

    @property
    def key(self) -> str:
        return f"{self.name}-{self.id}"

    def run_dir(self, root: Path | str) -> Path:
        return Path(root).resolve() / "runs" / self.key

    def job_config(self, root: Path | str) -> dict:
        """The tree handed to every stage: the config with ``run_dir`` pointing into ``root``."""
        tree = copy.deepcopy(self.config)
        tree["run_dir"] = str(self.run_dir(root))
        return tree


@dataclass
class Spec:
    name: str
    runs: list[RunSpec]
    description: str = ""
    slurm: dict = field(default_factory=dict)
    resources: dict[str, dict] = field(default_factory=dict)
    collect: dict = field(default_factory=dict)
    source: Path | None = None
    unresolved: list[str] = field(default_factory=list)  # ${NAME}s left unexpanded (require_paths=False)

    def run(self, key: str) -> RunSpec:
        """A run by id, name or name-id."""
        found = [r for r in self.runs if key in (r.id, r.name, r.key)]
        if len(found) != 1:
            raise KeyError(f"{key!r} names {len(found)} runs of sweep {self.name}")
        return found[0]


# -- loading ------------------------------------------------------------------------------------------------


def read_spec_tree(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """The spec mapping of a YAML file, with ``extends`` chains merged (the file's own keys win)."""
    field = "extends" if seen else "spec"
    if path in seen:
        raise ConfigError("extends", "a chain of specs without a loop", " -> ".join(str(p) for p in (*seen, path)))
    if not path.is_file():
        raise ConfigError(field, "an existing sweep spec file", str(path))
    tree = read_yaml(path, field)
    parent = tree.pop("extends", None)
    if parent:
        if not isinstance(parent, str):
            raise ConfigError("extends", "a spec file name (relative to this file)", parent)
        tree = merge(read_spec_tree((path.parent / parent).resolve(), (*seen, path)), tree)
    return tree


def load_spec(source: str | Path | Mapping[str, Any], *, variables: Mapping[str, str] | None = None,
              require_paths: bool = True) -> Spec:
    """Expand a spec file or mapping into runs; ConfigError names the first bad field.

    ``variables`` override the environment and ``paths:``. With ``require_paths=False`` unset variables stay
    as ``${NAME}`` (enough for ids, status and collect); otherwise an unset one is an error naming it.
    """
    path = None
    if isinstance(source, Mapping):
        tree = dict(source)
        if "extends" in tree:
            raise ConfigError("extends", "only in spec files (paths are relative to the file)", tree["extends"])
    else:
        path = Path(source).resolve()
        tree = read_spec_tree(path)
    unknown = set(tree) - SPEC_KEYS
    if unknown:
        raise ConfigError(sorted(unknown)[0], f"a spec key ({', '.join(sorted(SPEC_KEYS))})", sorted(unknown)[0])
    for key in ("slurm", "resources", "collect", "eval", "base", "stages"):
        if not isinstance(tree.get(key) or {}, Mapping):
            raise ConfigError(key, "a mapping", tree.get(key))
    name = tree.get("name") or (path.stem if path else None)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ConfigError("name", "a sweep name of letters, digits, '_', '.', '-'", name)
    values = resolve_variables(tree.get("paths") or {}, variables)
    unset = sorted({v for v in find_variables(tree) if values.get(v) is None})
    if unset and require_paths:
        raise ConfigError(f"paths.{unset[0]}", f"a value: set {', '.join(unset)} in the environment or in the "
                          "spec's paths: section (or pass --set NAME=VALUE)", None)
    stages = {**DEFAULT_STAGES, **(tree.get("stages") or {})}
    for stage, ref in stages.items():
        if stage not in STAGES:
            raise ConfigError(f"stages.{stage}", f"one of {', '.join(STAGES)}", stage)
        if ref is not None and (not isinstance(ref, str) or ref.count(":") != 1):
            raise ConfigError(f"stages.{stage}", "a 'module:function' string or null (no such stage)", ref)
    resources = tree.get("resources") or {}
    for stage, settings in resources.items():
        if stage not in STAGES:
            raise ConfigError(f"resources.{stage}", f"one of {', '.join(STAGES)}", stage)
        if not isinstance(settings or {}, Mapping):
            raise ConfigError(f"resources.{stage}", "a mapping of sbatch settings", settings)
    runs = expand(tree, values, stages)
    return Spec(name, runs, tree.get("description", ""), dict(tree.get("slurm") or {}), dict(resources),
                dict(tree.get("collect") or {}), path, unset)


def resolve_variables(paths: Mapping[str, Any], overrides: Mapping[str, str] | None) -> dict[str, str | None]:
    """Each ``paths`` name -> its value (override, environment, the spec's value with ${ENV} expanded)."""
    if not isinstance(paths, Mapping):
        raise ConfigError("paths", "a mapping NAME -> default path or null", paths)
    out: dict[str, str | None] = {}
    names = set(paths) | set(overrides or {})
    for n in names:
        if overrides and n in overrides:
            out[n] = overrides[n]
        elif n in os.environ:
            out[n] = os.environ[n]
        elif paths.get(n) is not None:
            value = str(paths[n])
            missing = [v for v in VARIABLE.findall(value) if v not in os.environ]
            out[n] = None if missing else VARIABLE.sub(lambda m: os.environ[m.group(1)], value)
        else:
            out[n] = None
    return out


def find_variables(tree: Any) -> set[str]:
    if isinstance(tree, str):
        return set(VARIABLE.findall(tree))
    if isinstance(tree, Mapping):
        return set().union(*(find_variables(v) for k, v in tree.items() if k != "paths")) if tree else set()
    if isinstance(tree, (list, tuple)):
        return set().union(*(find_variables(v) for v in tree)) if tree else set()
    return set()


def substitute(tree: Mapping[str, Any], values: Mapping[str, str | None]) -> dict:
    """``${NAME}`` -> its value in every string (names without a value stay as they are).

    OmegaConf's interpolation does the work: the variables sit at the root beside the tree, so ``${NAME}``
    anywhere in it resolves to the root's NAME (an unset one to the escaped text ``${NAME}`` itself).
    """
    names = find_variables(tree) | set(values)
    variables = {n: values[n] if values.get(n) is not None else f"\\${{{n}}}" for n in names}
    try:
        root = OmegaConf.create({**variables, " tree": dict(tree)})  # " tree": a key no variable can be named
        return OmegaConf.to_container(root[" tree"], resolve=True)
    except OmegaConfBaseException as err:
        raise ConfigError("spec", f"${{NAME}} variables in strings ({str(err).splitlines()[0]})") from None


def merge(base: Any, over: Any) -> Any:
    """Deep merge; a mapping whose ``name`` differs from the base's replaces it (another method, reward)."""
    if not isinstance(base, Mapping) or not isinstance(over, Mapping):
        return copy.deepcopy(over)
    if "name" in over and "name" in base and over["name"] != base["name"]:
        return copy.deepcopy(dict(over))
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        out[k] = merge(out[k], v) if k in out else copy.deepcopy(v)
    return out


def over(tree: Mapping[str, Any], layer: Mapping[str, Any]) -> Any:
    """``layer`` over ``tree``; a ``method.preset`` the layer sets is expanded in between, so the preset overrides
    the base and the layer's own values override the preset (as ``training.config.merge_layers``)."""
    method = layer.get("method")
    if isinstance(method, Mapping) and method.get("preset") is not None:
        name = method.get("name", (tree.get("method") or {}).get("name"))
        preset = preset_tree({**method, "name": name})
        preset["method"] = {"name": name, **preset.get("method", {})}
        tree = merge(tree, preset)
    return merge(tree, layer)


def nest(entry: Mapping[str, Any]) -> dict:
    """Dotted keys (``method.alpha: 0.1``) -> nested sections."""
    out: dict = {}
    for key, value in entry.items():
        parts = str(key).split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = merge(node.get(parts[-1]), value) if parts[-1] in node else value
    return out


def label(key: str, value: Any) -> str:
    leaf = key.split(".")[-1]
    text = "-".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return re.sub(r"[^A-Za-z0-9_.-]", "", f"{leaf}{text}")


def expand(tree: Mapping[str, Any], values: Mapping[str, str | None], stages: Mapping[str, str | None]) -> list[RunSpec]:
    base = tree.get("base") or {}
    entries = tree.get("runs") or [{}]
    grid = tree.get("grid") or {}
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise ConfigError("runs", "a list of mappings (one per run)", entries)
    if not isinstance(grid, Mapping) or not all(isinstance(v, list) and v for v in grid.values()):
        raise ConfigError("grid", "a mapping of dotted keys to non-empty lists of values", grid)
    runs: dict[str, RunSpec] = {}
    entry_of: dict[str, int] = {}
    for i, entry in enumerate(entries):
        entry = dict(entry)
        entry_name = entry.pop("name", None)
        train = entry.pop("train", True)
        if not isinstance(train, bool):
            raise ConfigError(f"runs[{i}].train", "true or false", train)
        for point in itertools.product(*grid.values()):
            chosen = dict(zip(grid, point))
            parts = ([entry_name] if entry_name else []) + [label(k, v) for k, v in chosen.items()]
            name = "-".join(parts) or tree.get("name") or "run"
            raw = merge(over(over(base, nest(entry)), nest(chosen)), {})
            run = resolve_run(name, raw, tree.get("eval") or {}, values, stages, train, f"runs[{i}] ({name})")
            if run.id in runs:
                if entry_of[run.id] != i:
                    raise ConfigError(f"runs[{i}]", f"a config differing from run {runs[run.id].name}", name)
                continue  # e.g. a pretrained entry under a seed grid: one run
            runs[run.id], entry_of[run.id] = run, i
    names = [r.name for r in runs.values()]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError("runs", "distinct run names (add name: to the entries)", dup[0])
    return list(runs.values())


def resolve_run(name: str, raw: dict, eval_raw: Mapping, values: Mapping, stages: Mapping[str, str | None],
                train: bool, where: str) -> RunSpec:
    """Build the typed config twice: with variables expanded (the config) and unexpanded (the id)."""
    raw = {k: v for k, v in raw.items() if k != "run_dir"}
    try:
        config = config_from_dict(substitute(raw, values)).to_dict()
        identity = config_from_dict(raw).to_dict()
        evals = typed_eval(substitute(eval_raw, values))
        eval_identity = typed_eval(eval_raw)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err.field}", str(err).split(": expected ", 1)[-1]) from None
    order = [(s, stages[s]) for s in STAGES if stages.get(s) and (train or s != "train")]
    del config["run_dir"], identity["run_dir"]
    del identity["logging"]  # how a run is watched (progress, TensorBoard, W&B) is not what it trains
    if not train:
        identity = {"backbone": identity["backbone"]}
    digest = json.dumps({"config": identity, "eval": eval_identity, "stages": order}, sort_keys=True, default=str)
    run_id = hashlib.sha1(digest.encode()).hexdigest()[:10]
    sweep = {"run": name, "id": run_id, "method": config["method"]["name"] if train else "pretrained"}
    return RunSpec(name, run_id, {**config, "eval": evals, "sweep": sweep}, order, train)


def typed_eval(section: Mapping[str, Any]) -> dict:
    return asdict(typed(EvalConfig, section, "eval"))


def spec_files(folder: Path | str | None = None) -> list[Path]:
    """The sweep specs shipped in ``sweeps/specs`` (files starting with '_' are bases, not sweeps)."""
    folder = Path(folder) if folder else Path(__file__).parent / "specs"
    return sorted(p for p in folder.glob("*.yaml") if not p.name.startswith("_"))
