"""A real browser for the report tests: Debian's Chromium and ChromeDriver, installed once per session with
apt-get when missing; the tests that need it are skipped, with apt's output as the reason, only where it
cannot be installed (e.g. no root)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

PACKAGES = ["chromium", "chromium-driver"]


def apt_install() -> str:
    """Install the packages; '' on success, else what apt said."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    said = ""
    for command in (["apt-get", "install", "-y", "-q", *PACKAGES], ["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", *PACKAGES]):
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            return f"{' '.join(command)}: {err}"
        said = (done.stderr or done.stdout)[-2000:]
        if done.returncode == 0 and command[1] == "install":
            return ""
    return said


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """(browser, driver) paths."""
    pytest.importorskip("selenium", reason="the test extra installs selenium")
    found = shutil.which("chromium"), shutil.which("chromedriver")
    if not all(found):
        problem = apt_install()
        found = shutil.which("chromium"), shutil.which("chromedriver")
        if not all(found):
            pytest.skip(f"Chromium could not be installed with apt-get: {problem}")
    return found
