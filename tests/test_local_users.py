"""Another user of the same machine cannot read the grants nor stall a sign-in or a refresh.

The blocker runs as ``nobody`` (the tests run as root, which may start it so) with the
system's Python, and tries everything that held sign-ins before: opening the database to
lock it, locking its files, taking its write lock.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, jsonify

from flask_spark import ConfigurationError, spark_api, spark_login_required
from flask_spark.testing import SparkPlatform

from .conftest import AppFactory, Browser

SYSTEM_PYTHON = "/usr/bin/python3"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists(SYSTEM_PYTHON),
    reason="starting a process as another user needs root and the system's Python",
)

BLOCKER = r"""
import fcntl, json, os, sqlite3, sys, time
path = sys.argv[1]
tried = {}
held = []
for suffix in ("", "-wal", "-shm"):
    name = path + suffix
    try:
        handle = open(name, "r+b")
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.append(handle)
        tried["lock " + suffix] = "held"
    except OSError as exc:
        tried["lock " + suffix] = type(exc).__name__
try:
    db = sqlite3.connect(path, timeout=0.1)
    db.execute("BEGIN EXCLUSIVE")
    held.append(db)
    tried["begin exclusive"] = "held"
except sqlite3.Error as exc:
    tried["begin exclusive"] = type(exc).__name__
print(json.dumps(tried), flush=True)
time.sleep(60)
"""


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder every user can look into (as an app's folder often is), not write to."""
    folder = Path(tempfile.mkdtemp(prefix="flask-spark-shared-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def as_nobody() -> Iterator[Any]:
    started: list[subprocess.Popen[str]] = []

    def run(script: str, *args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [SYSTEM_PYTHON, "-c", script, *args],
            user="nobody",
            group="nogroup",
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd="/",
        )
        started.append(process)
        return process

    yield run
    for process in started:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _portal(make_app: AppFactory, store: Path) -> Flask:
    app = make_app(SPARK_GRANT_STORE=f"sqlite:///{store}")

    @app.get("/account")
    @spark_login_required
    def account() -> Any:
        return jsonify(spark_api.get("/my/account"))

    return app


def test_a_blocker_running_as_another_user_delays_nothing(
    make_app: AppFactory,
    browser_for: Any,
    spark_platform: SparkPlatform,
    shared_folder: Path,
    as_nobody: Any,
) -> None:
    store = shared_folder / "grants.sqlite3"
    app = _portal(make_app, store)
    browser: Browser = browser_for(app)
    assert browser.sign_in().status_code == 303
    assert {"grants.sqlite3", "grants-rate.sqlite3"} <= {p.name for p in shared_folder.iterdir()}
    for path in shared_folder.iterdir():
        assert path.stat().st_mode & 0o077 == 0, path.name

    blocker = as_nobody(BLOCKER, str(store))
    assert blocker.stdout is not None
    tried = json.loads(blocker.stdout.readline())
    assert set(tried) == {"lock ", "lock -wal", "lock -shm", "begin exclusive"}
    assert "held" not in tried.values(), tried  # each one was refused

    spark_platform.expire_all()
    start = time.monotonic()
    assert browser.client.get("/account").status_code == 200  # a refresh
    other: Browser = browser_for(app)
    assert other.sign_in().status_code == 303  # a sign-in
    took = time.monotonic() - start
    assert spark_platform.stats.refreshes == 1
    assert took < 2.0, took
    assert blocker.poll() is None  # still running, still holding nothing


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
def test_a_database_file_another_user_made_is_refused(
    suffix: str,
    make_app: AppFactory,
    shared_folder: Path,
    as_nobody: Any,
) -> None:
    # A folder anyone may write to (sticky, like /tmp): another user got there first.
    shared_folder.chmod(0o1777)
    store = shared_folder / "grants.sqlite3"
    planted = as_nobody(
        "import os, sys; os.umask(0); open(sys.argv[1], 'wb').close(); print('made')",
        str(store) + suffix,
    )
    assert planted.stdout is not None
    assert planted.stdout.readline().strip() == "made"
    planted.wait()

    with pytest.raises(ConfigurationError, match="another user") as info:
        _portal(make_app, store)
    assert info.value.key == "SPARK_GRANT_STORE"
