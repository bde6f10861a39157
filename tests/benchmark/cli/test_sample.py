"""``leapbench sample`` on a tiny random FLUX with a tiny embedding cache: layout, resume, sharding, checkpoints."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from benchmark.cli import main
from benchmark.core.testing import PROMPTS, single_thread, tiny_cache
from benchmark.training.testing import TinyReward, tiny_config

SET = PROMPTS[:3]
IMAGES = 2


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tiny_cache(tmp_path_factory.mktemp("cache") / "flux", "flux", SET)


def sample(cache, out, *extra, model=("--backbone", "flux", "--tiny", "--dtype", "float32")):
    args = ["sample", "--cache", str(cache), "--out", str(out), *model, "--steps", "4", "--images", str(IMAGES),
            "--batch-size", "2", "--no-progress", *extra]
    with single_thread():
        return main(args)


def pixels(out):
    """{relative path: uint8 array} of every PNG under ``out``."""
    return {str(p.relative_to(out)): np.asarray(Image.open(p)) for p in sorted(out.rglob("*.png"))}


@pytest.fixture(scope="module")
def base(cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("base") / "samples"
    assert sample(cache, out) == 0
    return out


def test_layout_png_sizes_and_settings(base):
    assert sorted(p.name for p in base.iterdir()) == ["00000", "00001", "00002", "sampling.json"]
    for i, prompt in enumerate(SET):
        folder = base / f"{i:05d}"
        assert json.loads((folder / "metadata.jsonl").read_text()) == {"prompt": prompt}
        assert sorted(p.name for p in (folder / "samples").iterdir()) == ["0.png", "1.png"]
        for k in range(IMAGES):
            with Image.open(folder / "samples" / f"{k}.png") as image:
                assert (image.format, image.size, image.mode) == ("PNG", (32, 32), "RGB")
    images = pixels(base)
    assert len({a.tobytes() for a in images.values()}) == len(SET) * IMAGES  # noise differs per prompt and image
    settings = json.loads((base / "sampling.json").read_text())
    assert settings["steps"] == 4 and settings["run"] == "flux-pretrained" and settings["checkpoint"] is None


def test_rerun_writes_nothing_and_a_deleted_image_comes_back_identical(cache, base, tmp_path):
    out = tmp_path / "samples"
    assert sample(cache, out) == 0
    assert {k: v.tobytes() for k, v in pixels(out).items()} == {k: v.tobytes() for k, v in pixels(base).items()}
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert sample(cache, out) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # nothing new, nothing rewritten
    lost = out / "00001" / "samples" / "1.png"
    kept = out / "00001" / "samples" / "0.png"
    original = np.asarray(Image.open(lost))
    lost.unlink()
    assert sample(cache, out) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(lost)), original)
    assert kept.stat().st_mtime_ns == before[kept]  # only the missing image was written
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporary files left


def test_two_shards_equal_one(cache, base, tmp_path, monkeypatch):
    out = tmp_path / "sharded"
    assert sample(cache, out, "--rank", "0", "--world-size", "2") == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["00000", "00002"]  # round-robin
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert sample(cache, out) == 0
    assert {k: v.tobytes() for k, v in pixels(out).items()} == {k: v.tobytes() for k, v in pixels(base).items()}


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_checkpoint_written_by_training_changes_the_images(cache, base, tmp_path, lora):
    from benchmark.training.trainer import train

    overrides = ["schedule.iterations=2", "optim.lr=3e-2", "optim.ema_decay=0.5", "checkpoint.every=0",
                 "logging.grad_parts_every=0"] + (["train.lora.rank=4"] if lora else [])
    cfg = tiny_config(tmp_path, "flux", "refl", overrides)
    with single_thread():
        result = train(cfg, TinyReward())
    assert sample(cache, tmp_path / "run-samples", "--run", cfg.run_dir, "--no-ema", model=()) == 0
    trained = pixels(tmp_path / "run-samples")
    base_images = pixels(base)
    assert trained.keys() == base_images.keys()
    assert any(not np.array_equal(trained[k], base_images[k]) for k in trained)
    settings = json.loads((tmp_path / "run-samples" / "sampling.json").read_text())
    assert settings["run"] == "run" and settings["method"] == "refl"
    assert settings["checkpoint"] == str(result.checkpoint.resolve())
    # the same checkpoint named directly gives the same images; its EMA weights give others
    assert sample(cache, tmp_path / "ckpt-samples", "--checkpoint", str(result.checkpoint), model=()) == 0
    assert {k: v.tobytes() for k, v in pixels(tmp_path / "ckpt-samples").items()} == \
        {k: v.tobytes() for k, v in trained.items()}
    assert sample(cache, tmp_path / "ema-samples", "--run", cfg.run_dir, "--ema", model=()) == 0
    ema = pixels(tmp_path / "ema-samples")
    assert any(not np.array_equal(ema[k], trained[k]) for k in ema)
    # --run alone takes the run's EMA weights (ema_decay > 0) and the run's own prompt cache
    own = tmp_path / "own-samples"
    with single_thread():
        assert main(["sample", "--run", cfg.run_dir, "--out", str(own), "--steps", "4", "--images", str(IMAGES),
                     "--batch-size", "2", "--no-progress", "--limit", str(len(SET))]) == 0
    settings = json.loads((own / "sampling.json").read_text())
    assert settings["ema"] is True and settings["prompts"] == len(SET)
    assert {k: v.tobytes() for k, v in pixels(own).items()} == {k: v.tobytes() for k, v in ema.items()}
    if not lora:  # a local diffusers model directory: VAE and scheduler from it, the transformer from the checkpoint
        local = model_dir(tmp_path / "model")
        assert sample(cache, tmp_path / "local", "--checkpoint", str(result.checkpoint), "--model-path", str(local),
                      "--no-tiny", model=()) == 0
        assert {k: v.tobytes() for k, v in pixels(tmp_path / "local").items()} == \
            {k: v.tobytes() for k, v in trained.items()}


def model_dir(path):
    """The tiny FLUX (same seed as the tiny backbone) saved as a diffusers model directory."""
    from benchmark.core.backbones.tiny import tiny_flux

    backbone = tiny_flux()
    for name in ("transformer", "vae", "scheduler"):
        getattr(backbone, name).save_pretrained(path / name)
    return path


def test_base_model_from_a_local_directory_equals_the_tiny_one(cache, base, tmp_path):
    local = model_dir(tmp_path / "model")
    out = tmp_path / "local"
    assert sample(cache, out, model=("--backbone", "flux", "--model-path", str(local), "--dtype", "float32",
                                     "--height", "32", "--width", "32")) == 0
    assert {k: v.tobytes() for k, v in pixels(out).items()} == {k: v.tobytes() for k, v in pixels(base).items()}


def test_sd3_samples_from_its_own_cache(tmp_path):
    cache = tiny_cache(tmp_path / "sd3-cache", "sd3", SET[:1])
    out = tmp_path / "sd3"
    assert sample(cache, out, "--images", "1", model=("--backbone", "sd3", "--tiny", "--dtype", "float32")) == 0
    with Image.open(out / "00000" / "samples" / "0.png") as image:
        assert image.size == (32, 32)


def bad_cases(tmp_path, cache):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(SET[0] + "\na prompt that was never embedded\n")
    broken = tmp_path / "run" / "checkpoints" / "step_000002"
    (broken / "transformer").mkdir(parents=True)  # no 'complete' marker: an interrupted save
    (tmp_path / "run" / "config.yaml").write_text("backbone: {name: flux, tiny: true, dtype: float32}\n")
    tiny = ["--backbone", "flux", "--tiny", "--dtype", "float32"]
    return {
        "missing cache": (["--cache", str(tmp_path / "nope")] + tiny, "--cache"),
        "prompt not cached": (["--cache", str(cache), "--prompts", str(prompts)] + tiny, "1 missing"),
        "missing model dir": (["--cache", str(cache), "--backbone", "flux", "--model-path", str(tmp_path / "m")],
                              "backbone.path"),
        "bad checkpoint": (["--cache", str(cache), "--checkpoint", str(broken)] + tiny, "complete"),
        "run without checkpoint": (["--cache", str(cache), "--run", str(tmp_path / "run")], "--run"),
        "ema without checkpoint": (["--cache", str(cache), "--ema"] + tiny, "--ema"),
        "bad rank": (["--cache", str(cache), "--rank", "2", "--world-size", "2"] + tiny, "--rank"),
        "wrong backbone for cache": (["--cache", str(cache), "--backbone", "sd3", "--tiny"], "--cache"),
    }


@pytest.mark.filterwarnings("ignore:skipping damaged checkpoint")
def test_bad_input_is_one_error_before_any_model_or_file(cache, tmp_path, capsys, monkeypatch):
    import evaluators.sample

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(evaluators.sample, "load_model", no_model)
    monkeypatch.setattr(evaluators.sample, "build_backbone", no_model)
    cases = bad_cases(tmp_path, cache)
    for name, (args, expected) in cases.items():
        out = tmp_path / f"out-{name.replace(' ', '-')}"
        assert main(["sample", "--out", str(out), "--steps", "4", *args]) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("leapbench sample: ") and expected in err[0], (name, err)
        assert not out.exists(), name


def test_a_directory_of_other_settings_or_prompts_is_refused(cache, base, tmp_path, capsys):
    before = {p: p.stat().st_mtime_ns for p in base.rglob("*")}
    assert sample(cache, base, "--seed", "1") == 2
    assert "seed" in capsys.readouterr().err
    other = tmp_path / "other.txt"
    other.write_text("\n".join([SET[1], SET[0]]) + "\n")
    assert sample(cache, base, "--prompts", str(other)) == 2
    assert "prompt 0 differs" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in base.rglob("*")} == before
    assert os.listdir(base)  # untouched
