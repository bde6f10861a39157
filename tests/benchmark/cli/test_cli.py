"""Every command's --help works and describes it with its module's docstring."""

import importlib

import pytest

from benchmark.cli import COMMANDS, main


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_describes_the_command(name, capsys):
    with pytest.raises(SystemExit) as done:
        main([name, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    doc = importlib.import_module(COMMANDS[name][0]).__doc__
    assert out.startswith(f"usage: leapbench {name}") and doc.strip().splitlines()[0] in out


def test_a_mistake_is_one_line_and_debug_shows_its_traceback(tmp_path, capsys, monkeypatch):
    from benchmark.core.errors import ConfigError

    argv = ["table", str(tmp_path / "none.parquet"), "--out", str(tmp_path / "t")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("leapbench table: SCORES: expected") and "Traceback" not in err
    for extra in (["--debug"] + argv, argv + ["--debug"]):
        with pytest.raises(ConfigError):
            main(extra)
    monkeypatch.setenv("LEAPBENCH_DEBUG", "1")
    with pytest.raises(ConfigError):
        main(argv)


def test_a_bug_keeps_its_traceback(monkeypatch):
    import benchmark.cli.table

    def broken(args):
        return 1 / 0

    monkeypatch.setattr(benchmark.cli.table, "run", broken)
    with pytest.raises(ZeroDivisionError):
        main(["table", "x.parquet", "--out", "t"])


def test_environment_errors_name_the_file(tmp_path, capsys, monkeypatch):
    import errno

    import benchmark.cli.table

    def full_disk(args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "t" / "table2.md"))

    monkeypatch.setattr(benchmark.cli.table, "run", full_disk)
    assert main(["table", "x.parquet", "--out", "t"]) == 2
    err = capsys.readouterr().err
    assert "table2.md: expected enough free disk space, got 'No space left on device'" in err


def test_overrides_may_stand_anywhere(tmp_path, capsys):
    import yaml

    from benchmark.training.testing import tiny_tree

    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(tiny_tree(tmp_path)))
    argv = ["train", "schedule.iterations=7", "--config", str(config), "seed=5", "--dry-run", "method.alpha=0.2"]
    assert main(argv) == 0, capsys.readouterr().err
    printed = yaml.safe_load(capsys.readouterr().out)
    assert (printed["schedule"]["iterations"], printed["seed"], printed["method"]["alpha"]) == (7, 5, 0.2)
