"""README keeps exactly two set-up commands, and CI runs the second one verbatim."""

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
