"""The package as a user gets it: the wheel, installed into a fresh venv with only the
``testing`` extra, runs the docs' example test suite under plain ``pytest``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .browser import ROOT

EXAMPLES = ROOT / "docs" / "examples"

pytestmark = pytest.mark.slow


def run(*command: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}
    }
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env={**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_the_wheel_with_the_testing_extra_runs_the_docs_example_tests(tmp_path: Path) -> None:
    # A copy of the checkout: building writes build/ and *.egg-info beside the sources.
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            "instance",
            "test-artifacts",
            "_build",
            ".*_cache",
        ),
    )
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "-w",
        tmp_path / "dist",
        source,
        cwd=tmp_path,
    )
    [wheel] = (tmp_path / "dist").glob("flask_spark-*.whl")

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", f"{wheel}[testing]", cwd=tmp_path)
    installed = run(python, "-m", "pip", "list", "--format=freeze", cwd=tmp_path).stdout.lower()
    assert "flask-spark==" in installed
    assert "trustme==" in installed
    assert "cheroot==" in installed
    for other_extra in ("redis==", "psycopg==", "pymysql==", "python-dotenv==", "sphinx=="):
        assert other_extra not in installed

    # A user's project: the app, its tests and the pytest.ini the testing page shows.
    project = tmp_path / "project"
    (project / "tests").mkdir(parents=True)
    shutil.copy(EXAMPLES / "quickstart.py", project)
    shutil.copy(EXAMPLES / "pytest.ini", project)
    shutil.copy(EXAMPLES / "test_portal.py", project / "tests")
    result = run(venv / "bin" / "pytest", "-q", "-p", "no:cacheprovider", cwd=project)
    assert "5 passed" in result.stdout
    # It ran the installed package, not the checkout's.
    where = run(python, "-c", "import flask_spark; print(flask_spark.__file__)", cwd=project)
    assert where.stdout.strip().startswith(str(venv))
