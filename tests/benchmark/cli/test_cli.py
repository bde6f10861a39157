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
