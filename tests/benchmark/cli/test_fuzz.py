"""Random mutations of valid inputs fed to the real entry points (hypothesis, a fixed derandomized profile with a
bounded number of examples): run configs (train --dry-run), sweep specs (sweep launch --dry-run), prompt files,
embedding caches (embed, which must repair what it accepts) and checkpoints (train --resume). Each example ends
in success or in one clear error (exit 2), never in another exception."""

from __future__ import annotations

import copy
import itertools
import shutil

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmark.core.cache import EmbeddingCache
from benchmark.core.testing import PROMPTS
from tests.benchmark.cli.world import SET, World, build_world, release, run_cli

settings.register_profile("leapbench-fuzz", max_examples=40, deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                                 HealthCheck.data_too_large])
FUZZ = settings.get_profile("leapbench-fuzz")
COUNTER = itertools.count()

VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "-1", "0", "nan", "flux", "sd3", "toy", "refl", "auto", "/nonexistent", "${NOT_SET}",
                     "a:b", "--exclusive", "1-00:00:00", "banana"]),
    st.text(max_size=12), st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.sampled_from(["name", "path", "x", "m", "nodes"]), st.integers(-2, 2), max_size=2),
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    built = build_world(tmp_path_factory.mktemp("fuzz-world"))
    yield built
    release(built)


def paths(tree, prefix=()):
    """Every key path of a nested mapping (sections and leaves)."""
    for key, value in tree.items():
        yield (*prefix, key)
        if isinstance(value, dict):
            yield from paths(value, (*prefix, key))


def mutate(tree: dict, data) -> dict:
    """1 to 3 random edits: set a key (existing or new) to a random value, or delete one."""
    tree = copy.deepcopy(tree)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        keys = sorted(paths(tree), key=str)
        if not keys:
            break
        where = data.draw(st.sampled_from(keys), label="key")
        node = tree
        for part in where[:-1]:
            node = node[part]
        action = data.draw(st.sampled_from(["set", "set", "delete", "add"]), label="action")
        if action == "delete":
            del node[where[-1]]
        elif action == "add":
            node[data.draw(st.sampled_from(["extra", "steps", "name", "lr"]), label="new key")] = data.draw(VALUES)
        else:
            node[where[-1]] = data.draw(VALUES, label="value")
    return tree


def case_dir(world: World):
    folder = world.root / f"case-{next(COUNTER)}"
    folder.mkdir()
    return folder


def ends_cleanly(argv) -> int:
    code, _, err = run_cli(argv)
    assert code in (0, 2), (argv, code, err[-2000:])
    assert "Traceback" not in err, err[-2000:]
    if code == 2:
        assert any(line.startswith("leapbench") for line in err.splitlines()), err[-2000:]
    return code


@FUZZ
@given(data=st.data())
def test_mutated_run_configs(world, data):
    tree = yaml.safe_load(world.config.read_text())
    tmp = case_dir(world)
    tree["run_dir"] = str(tmp / "run")
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump(mutate(tree, data), allow_unicode=True))
    ends_cleanly(["train", "--config", path, "--dry-run"])
    assert not (tmp / "run").exists()  # a dry run writes nothing


@settings(FUZZ, max_examples=30)
@given(data=st.data())
def test_mutated_sweep_specs(world, data):
    tmp = case_dir(world)
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(mutate(yaml.safe_load(world.spec.read_text()), data), allow_unicode=True))
    ends_cleanly(["sweep", "launch", path, "--root", tmp / "root", "--cluster", "slurm", "--dry-run"])
    ends_cleanly(["sweep", "status", path, "--root", tmp / "root"])


@settings(FUZZ, max_examples=30)
@given(content=st.one_of(st.binary(max_size=200), st.text(max_size=200),
                         st.lists(st.sampled_from(SET + ["", "\ufeff", '{"prompt": 1}', "[", '"x"']), max_size=6)
                         .map("\n".join)),
       suffix=st.sampled_from([".txt", ".json", ".jsonl"]))
def test_mutated_prompt_files(world, content, suffix):
    tmp = case_dir(world)
    path = tmp / f"prompts{suffix}"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    ends_cleanly(["train", "--config", world.config, f"run_dir={tmp / 'run'}", f"prompts.file={path}", "--dry-run"])


def damage(path, data) -> None:
    content = path.read_bytes()
    how = data.draw(st.sampled_from(["truncate", "flip", "append", "delete", "replace"]), label="damage")
    at = data.draw(st.integers(0, max(len(content) - 1, 0)), label="at")
    if how == "truncate":
        path.write_bytes(content[:at])
    elif how == "flip" and content:
        path.write_bytes(content[:at] + bytes([content[at] ^ data.draw(st.integers(1, 255))]) + content[at + 1:])
    elif how == "append":
        path.write_bytes(content + data.draw(st.binary(min_size=1, max_size=16)))
    elif how == "delete":
        path.unlink()
    else:
        path.write_bytes(data.draw(st.binary(max_size=64)))


@settings(FUZZ, max_examples=20)
@given(data=st.data())
def test_damaged_caches_are_refused_or_repaired_by_embed(world, data):
    tmp = case_dir(world)
    cache = tmp / "cache"
    shutil.copytree(world.cache, cache)
    expected = EmbeddingCache.open(world.cache).tensors(SET)
    damage(data.draw(st.sampled_from(sorted(p for p in cache.iterdir())), label="file"), data)
    code = ends_cleanly(["embed", "--config", world.config, "backbone.tiny=true", f"prompts.file={world.prompts}",
                         f"prompts.cache={cache}", "--batch-size", "2", "--shard-size", "2"])
    if code == 0:  # accepted: then repaired, every prompt as it was
        got = EmbeddingCache.open(cache).tensors(SET)
        assert all(torch.equal(got[k], expected[k]) for k in expected)


@settings(FUZZ, max_examples=8)
@given(data=st.data())
def test_damaged_checkpoints_are_refused_or_resumed(world, data):
    tmp = case_dir(world)
    ckpt = tmp / "ckpt" / "checkpoints" / "step_000002"
    shutil.copytree(world.run / "checkpoints" / "step_000002", ckpt)
    damage(data.draw(st.sampled_from(sorted(p for p in ckpt.rglob("*") if p.is_file())), label="file"), data)
    ends_cleanly(["train", "--config", world.config, f"run_dir={tmp / 'run'}", "--resume", ckpt,
                  "schedule.iterations=2"])


def test_the_fuzzed_prompts_are_the_worlds():
    assert set(SET) <= set(PROMPTS)
