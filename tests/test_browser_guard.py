"""The browser tests without a browser: skipped with the reason in the summary on a
developer's machine, failed under CI (a green CI run has run them)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .browser import ROOT

pytestmark = pytest.mark.slow  # runs the browser tests in subprocesses


def run_browser_tests(**env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "CI"}
    environ.update(SPARK_TEST_CHROMIUM="/nonexistent/chromium", **env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-pno:cacheprovider", "tests/test_example_browser.py"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_without_chromium_the_browser_tests_are_skipped_and_say_why() -> None:
    result = run_browser_tests()

    assert result.returncode == 0, result.stdout[-2000:]
    assert "SKIPPED" in result.stdout
    assert "/nonexistent/chromium is not installed" in result.stdout


def test_without_chromium_the_browser_tests_fail_under_ci() -> None:
    result = run_browser_tests(CI="true")

    assert result.returncode == 1, result.stdout[-2000:]
    assert "under CI the browser tests must run" in result.stdout
    assert " passed" not in result.stdout
