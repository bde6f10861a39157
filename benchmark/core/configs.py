"""Typed configs from YAML layers and dotted overrides, on OmegaConf structured configs.

    tree = merge(read_yaml("run.yaml"), parse_overrides(["method.alpha=0.1"]))   # plain nested dicts
    cfg = typed(RunSection, tree, "")                                             # the dataclass, checked

OmegaConf does the generic work: reading YAML, merging layers, parsing ``key.path=value`` overrides (values
are YAML: numbers, booleans, null, lists), converting and type-checking every field against the dataclass
(unknown keys, wrong types, ``Literal`` choices), and dumping the resolved config. Range checks stay in each
dataclass's ``__post_init__``, which ``typed`` runs once when it builds the object. Every failure becomes a
``ConfigError`` naming the dotted field, what was expected and what was found.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from benchmark.core.errors import ConfigError

T = TypeVar("T")

# OmegaConf's messages -> what the field expected, in LeapBench's words
EXPECTED = [
    (re.compile(r"could not be converted to Integer"), lambda m: "an integer"),
    (re.compile(r"could not be converted to Float"), lambda m: "a number"),
    (re.compile(r"could not be converted to String"), lambda m: "a string"),
    (re.compile(r"is not a valid bool"), lambda m: "true or false"),
    (re.compile(r"expected one of \[(.*)\]"), lambda m: "one of " + m.group(1).replace("'", "")),
    (re.compile(r"TupleConfig length \d+ does not match type hint length (\d+)"), lambda m: f"a list of {m.group(1)} values"),
    (re.compile(r"is not a (TupleConfig|ListConfig)"), lambda m: "a list"),
    (re.compile(r"not a subclass of|Cannot assign .* to Dict|incompatible with type hint .*Dict"),
     lambda m: "a section (mapping)"),
]


def read_yaml(path: str | Path, field: str = "--config") -> dict:
    """The mapping in a YAML file (empty file: {}); ConfigError naming ``field`` otherwise."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(field, "an existing YAML file", str(path))
    try:
        tree = yaml.safe_load(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(field, f"a UTF-8 YAML file (byte {err.start} is not UTF-8)", str(path)) from None
    except yaml.YAMLError as err:
        raise ConfigError(field, f"valid YAML ({str(err).splitlines()[0]})", str(path)) from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(field, "a YAML mapping of sections", type(tree).__name__)
    return tree


def parse_overrides(texts: Sequence[str]) -> dict:
    """``a.b=value`` overrides as a nested mapping (OmegaConf's dot-list; the value is parsed as YAML)."""
    for text in texts:
        key, sep, _ = text.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError("override", "key.path=value", text)
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist(list(texts)))
    except (OmegaConfBaseException, yaml.YAMLError) as err:
        raise ConfigError("override", f"key.path=value with a YAML value ({str(err).splitlines()[0]})",
                          list(texts)) from None


def merge(*layers: Mapping[str, Any]) -> dict:
    """Later layers over earlier ones (mappings merge key by key, everything else is replaced)."""
    try:
        return OmegaConf.to_container(OmegaConf.merge(*[OmegaConf.create(dict(layer)) for layer in layers]))
    except OmegaConfBaseException as err:
        raise ConfigError(str(err.full_key or "config"), "a section (mapping)", str(err).splitlines()[0]) from None


def typed(schema: type[T], values: Mapping[str, Any] | None, prefix: str = "") -> T:
    """``values`` over the defaults of dataclass ``schema``, type-checked and built (``__post_init__`` runs once).

    ``prefix`` is the dotted name of the section in messages ("method" -> "method.alpha: expected ...").
    """
    dotted = f"{prefix}." if prefix else ""
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(prefix or "config", "a section (mapping)", values)
    node = OmegaConf.structured(schema)
    _merge(node, literal(values), dotted)
    return OmegaConf.to_object(node)


def literal(value: Any) -> Any:
    """``value`` with "${" escaped in every string: a config value is taken as written, never interpolated
    (sweep specs keep ``${NAME}`` path variables unexpanded in run ids)."""
    if isinstance(value, str):
        return value.replace("${", "\\${")
    if isinstance(value, Mapping):
        return {k: literal(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [literal(v) for v in value]
    return value


def _merge(node: DictConfig, values: Mapping[str, Any], dotted: str) -> None:
    """Merge key by key, descending into sections, so that a failure knows the field it is about."""
    for key, value in values.items():
        name = f"{dotted}{key}"
        child = node._get_node(key) if isinstance(key, str) and key in node else None
        if isinstance(value, Mapping) and isinstance(child, DictConfig) and not child._is_none():
            _merge(child, value, f"{name}.")
            continue
        try:
            node.merge_with({key: value})
        except OmegaConfBaseException as err:
            raise config_error(err, name, value) from None


def config_error(err: OmegaConfBaseException, name: str, value: Any) -> ConfigError:
    """An OmegaConf failure on field ``name`` as one ConfigError naming the field and what it expected."""
    text = str(err).splitlines()[0]
    if type(err).__name__ == "ConfigKeyError":
        known = [f.name for f in dataclasses.fields(err.object_type)] if dataclasses.is_dataclass(err.object_type) else []
        return ConfigError(name, f"a known field ({', '.join(known)})" if known else "a known field", err.key)
    for pattern, expected in EXPECTED:
        match = pattern.search(text)
        if match:
            return ConfigError(name, expected(match), value)
    return ConfigError(name, text, value)


def to_yaml(obj: Any) -> str:
    """A config dataclass (or a mapping of them) as YAML, in field order: OmegaConf's dump of the resolved config."""
    return OmegaConf.to_yaml(OmegaConf.structured(obj) if dataclasses.is_dataclass(obj) else OmegaConf.create(obj))


def plain(obj: Any) -> dict:
    """A config dataclass as plain data (dicts, lists, scalars): exactly what its YAML dump reads back as."""
    return yaml.safe_load(to_yaml(obj))
