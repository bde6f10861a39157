"""README keeps exactly two set-up commands, and CI runs the second one verbatim; its CPU walk-through runs as
written, and the example run configs it names are accepted as they are."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def setup_commands() -> list[str]:
    section = ROOT.joinpath("README.md").read_text().split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section, flags=re.S)


def test_two_setup_commands_and_ci_runs_the_test_command():
    demo, tests = setup_commands()
    assert "leapbench demo" in demo and "pytest" in tests
    ci_lines = [line for line in ROOT.joinpath(".ci/run").read_text().splitlines() if line and not line.startswith(("#", "set ", "cd "))]
    assert ci_lines == [tests]


def walkthrough() -> list[list[str]]:
    """The command lines of README's CPU walk-through (continuations joined, comments and `leapbench` dropped)."""
    import shlex

    section = ROOT.joinpath("README.md").read_text().split("## The CPU walk-through", 1)[1].split("\n## ", 1)[0]
    block = re.findall(r"```text\n(.+?)\n```", section, flags=re.S)[0].replace("\\\n", " ")
    lines = [shlex.split(line, comments=True) for line in block.splitlines()]
    assert all(line[0] == "leapbench" for line in lines)
    return [line[1:] for line in lines]


def test_the_cpu_walkthrough_runs_as_written(tmp_path, monkeypatch, capsys):
    """embed -> train -> sample -> score -> table -> plot with the tiny FLUX config, exactly as README writes it."""
    import shutil

    import pandas as pd

    from benchmark.cli import main
    from benchmark.core.testing import single_thread

    shutil.copytree(ROOT / "docs" / "configs", tmp_path / "docs" / "configs")
    monkeypatch.chdir(tmp_path)  # the commands' relative paths land in this folder, as in a checkout
    commands = walkthrough()
    assert [c[0] for c in commands] == ["embed", "train", "sample", "sample", "score", "score", "table", "plot", "plot"]
    with single_thread():
        for argv in commands:
            assert main(argv) == 0, argv
    scores = pd.read_parquet("results/scores/tiny-flux.parquet")
    means = scores.groupby("method")["value"].mean()
    assert set(scores["metric"]) == {"tiny_conv"} and len(scores) == 2 * 8 * 2
    assert means["leapalign"] > means["pretrained"]  # 20 steps of LeapAlign raise the reward it was trained on
    settings = (tmp_path / "results/samples/leapalign/sampling.json").read_text()
    assert '"ema": true' in settings  # sample --run took the run's EMA weights and its cache
    table = (tmp_path / "results/tables/auto.md").read_text()
    assert "tiny-flux-leapalign" in table and "flux-pretrained" in table
    assert Path("results/plots/curves.png").stat().st_size > 1000 and Path("results/plots/grid.png").is_file()


def test_example_configs_are_accepted_as_they_are(tmp_path, monkeypatch, capsys):
    from benchmark.cli import main
    from tests.sweeps.helpers import make_dummy_paths

    monkeypatch.chdir(ROOT)  # their relative paths are the repository's
    assert main(["train", "--config", "docs/configs/toy.yaml", "--dry-run"]) == 0
    assert "name: toy" in capsys.readouterr().out
    paper = ["train", "--config", "docs/configs/flux-paper.yaml", "--dry-run"]
    for name in ("FLUX_DIR", "HPS_CKPT", "CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    assert main(paper) == 2  # the whole config is printed, then every missing input is listed
    captured = capsys.readouterr()
    assert "lr: 1.0e-05" in captured.out and "global_batch: 64" in captured.out
    assert all(f"set {name}" in captured.err for name in ("FLUX_DIR", "HPS_CKPT", "CACHE_DIR"))
    for name, value in make_dummy_paths(tmp_path).items():
        monkeypatch.setenv(name, value)
    assert main(paper) == 0, capsys.readouterr().err
