"""Bindings served from a process's memory while the grant store says nothing changed
(SQLite's data_version, standalone Redis's client tracking): a signed-in request reads no
grant store, and what another worker changes (a revocation, a refresh) is seen by the very
next request, also when the watch itself fails. Two apps on one store stand for two
workers."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_spark import spark_account, spark_api
from flask_spark.stores.base import TOUCH_INTERVAL, rate_bucket
from flask_spark.stores.redis import RedisGrantStore
from flask_spark.stores.watch import RedisWatch, SQLiteWatch
from flask_spark.testing import ACCOUNTS, SparkPlatform
from flask_spark.tokens import BindingCache

from .conftest import AppFactory, Browser, add_probe, in_request
from .store_fixtures import clean_store_url

JANE = ACCOUNTS[0]


@pytest.fixture(params=["sqlite", "redis"])
def workers(
    request: pytest.FixtureRequest, make_app: AppFactory, tmp_path: Path
) -> tuple[Flask, Flask]:
    """Two apps on one grant store and one session store, as two workers."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'grants.sqlite3'}"
    else:
        url = clean_store_url(request, "redis")
    return two_workers(make_app, url)


def two_workers(make_app: AppFactory, url: str, **config: Any) -> tuple[Flask, Flask]:
    config = {"SPARK_RATE_LIMIT": None, **config}
    return (
        add_probe(make_app(SPARK_GRANT_STORE=url, **config)),
        add_probe(make_app(SPARK_GRANT_STORE=url, **config)),
    )


@contextmanager
def statements(app: Flask) -> Iterator[list[str]]:
    """What ``app``'s grant store sends to its server inside the block: SQL statements,
    or Redis scripts."""
    store = app.extensions["spark"].tokens.store.inner
    seen: list[str] = []
    if isinstance(store, RedisGrantStore):
        before = script_calls(store.client)
        yield seen
        seen.extend(["EVALSHA"] * (script_calls(store.client) - before))
        return

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", record)


def script_calls(client: Any) -> int:
    """Scripts Redis has run, not counting those refused as not loaded yet (redis-py
    loads the script and sends it again)."""
    stats = client.info("commandstats")
    return sum(
        int(stats[name]["calls"]) - int(stats[name].get("failed_calls", 0))
        for name in ("cmdstat_evalsha", "cmdstat_eval")
        if name in stats
    )


def signed_in_on_both(workers: tuple[Flask, Flask], browser_for: Any) -> tuple[Browser, Browser]:
    """A browser signed in on the first worker, and its session (the same cookie) on the
    second."""
    first, second = workers
    browser: Browser = browser_for(first)
    browser.sign_in()
    elsewhere = Browser(second.test_client(), browser.platform)
    cookie = browser.client.get_cookie("session")
    assert cookie is not None
    elsewhere.client.set_cookie("session", cookie.value)
    return browser, elsewhere


def revoke_jane(app: Flask) -> None:
    """End Jane's grant from ``app``, as ``flask spark grants revoke`` would."""
    with app.app_context():
        assert app.extensions["spark"].extension.grants.revoke(JANE["Id"]) == 1


def account_name() -> str | None:
    return spark_account.name if spark_account else None


def test_a_signed_in_browser_reads_the_grant_store_once(
    workers: tuple[Flask, Flask], browser_for: Any
) -> None:
    app, _ = workers
    browser: Browser = browser_for(app)
    browser.sign_in()

    with statements(app) as first:
        assert in_request(app, browser, account_name) == JANE["Name"]
    with statements(app) as later:
        names = [in_request(app, browser, account_name) for _ in range(5)]

    assert len(first) == 1  # the binding and its grant, in one round trip
    assert names == [JANE["Name"]] * 5
    assert later == []


def test_calls_counted_by_the_rate_budget_send_no_worker_back_to_the_store(
    make_app: AppFactory, browser_for: Any, tmp_path: Path
) -> None:
    """The budget counts calls in the store every few calls; on SQLite in a file of its
    own, so that its commits do not tell every worker that bindings changed. (On Redis
    its keys are not among those tracked.)"""
    url = f"sqlite:///{tmp_path / 'grants.sqlite3'}"
    workers = two_workers(make_app, url, SPARK_RATE_LIMIT=1000, SPARK_RATE_WINDOW=60)
    browser, elsewhere = signed_in_on_both(workers, browser_for)
    first, second = workers
    assert in_request(first, browser, account_name) == JANE["Name"]

    def call() -> str:
        return str(spark_api.get("/my/account")[0]["Name"])

    with statements(first) as reads:
        for _ in range(3):
            assert in_request(second, elsewhere, call) == JANE["Name"]
            assert in_request(first, browser, account_name) == JANE["Name"]

    assert reads == []
    # The three calls were counted in the store: a budget of three has no room left.
    store = second.extensions["spark"].tokens.store
    bucket = rate_bucket(second.config["SPARK_CLIENT_ID"])
    assert store.spend(bucket, 3, 60.0, time.time())[0] == 0


def test_a_revocation_on_another_worker_signs_the_browser_out_at_once(
    workers: tuple[Flask, Flask], browser_for: Any
) -> None:
    first, second = workers
    _, elsewhere = signed_in_on_both(workers, browser_for)
    assert in_request(second, elsewhere, account_name) == JANE["Name"]  # now remembered

    revoke_jane(first)

    with statements(second) as seen:
        assert in_request(second, elsewhere, account_name) is None
    assert seen  # read again, not served from memory


def test_a_refresh_on_another_worker_is_used_without_a_refused_call(
    workers: tuple[Flask, Flask], browser_for: Any, spark_platform: SparkPlatform
) -> None:
    first, second = workers
    browser, elsewhere = signed_in_on_both(workers, browser_for)
    assert in_request(second, elsewhere, lambda: spark_api.get("/my/account")[0]["Id"])

    spark_platform.expire_all()  # the first worker meets 1020 and refreshes
    assert in_request(first, browser, lambda: spark_api.get("/my/account")[0]["Id"])
    # The second worker remembered the old token, still unexpired by its own clock: it
    # reads the store again, and sends the new one.
    assert in_request(second, elsewhere, lambda: spark_api.get("/my/account")[0]["Id"])

    statuses = [r.status for r in spark_platform.requests_for("data")]
    assert statuses == [200, 200, 401, 200, 200]  # sign-in, second, first (then again), second
    assert spark_platform.stats.refreshes == 1


def test_an_entry_is_read_again_after_half_the_touch_interval() -> None:
    clock = [1000.0]
    cache = BindingCache(clock=lambda: clock[0])
    cache.put("binding", (1, 1), None)

    assert cache.get("binding", (1, 1)) == (True, None)
    assert cache.get("binding", (1, 2)) == (False, None)  # the store changed
    cache.put("binding", (1, 1), None)
    clock[0] += TOUCH_INTERVAL / 2 + 0.001  # so that a binding in use is touched on time
    assert cache.get("binding", (1, 1)) == (False, None)


# -- the Redis watch failing ---------------------------------------------------------------


@pytest.fixture
def redis_workers(request: pytest.FixtureRequest, make_app: AppFactory) -> tuple[Flask, Flask]:
    return two_workers(make_app, clean_store_url(request, "redis"))


def watch_of(app: Flask) -> RedisWatch:
    watch = app.extensions["spark"].tokens.store.changes()
    assert isinstance(watch, RedisWatch)
    return watch


def test_a_change_made_while_the_watch_was_cut_off_is_not_missed(
    redis_workers: tuple[Flask, Flask], browser_for: Any, redis_client: Any
) -> None:
    first, second = redis_workers
    _, elsewhere = signed_in_on_both(redis_workers, browser_for)
    assert in_request(second, elsewhere, account_name) == JANE["Name"]  # now remembered

    # Redis drops the watches' connections (as on a restart), then the grant is revoked:
    # the second worker's watch never hears of it.
    assert redis_client.client_kill_filter(_type="pubsub") >= 1
    revoke_jane(first)

    with statements(second) as seen:
        assert in_request(second, elsewhere, account_name) is None
    assert seen


@pytest.mark.slow
def test_a_watch_that_goes_silent_is_given_up(
    redis_workers: tuple[Flask, Flask], browser_for: Any, redis_client: Any
) -> None:
    _, second = redis_workers
    watch = watch_of(second)
    watch.ping_after = 0.05
    assert watch.version() is not None
    redis_client.client_pause(1500)  # Redis answers nothing, not even the watch's PING
    try:
        deadline = time.monotonic() + 1.0
        while watch.version() is not None and time.monotonic() < deadline:
            pass
        assert watch.version() is None  # cannot vouch: requests read the store
    finally:
        redis_client.client_unpause()
    watch.retry_after = 0.0
    assert watch.version() is not None  # connected again


# -- the SQLite watch ----------------------------------------------------------------------

_COMMIT = (
    "import sqlite3, sys\n"
    "connection = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
    "for statement in sys.argv[2:]:\n"
    "    connection.execute(statement)\n"
    "connection.close()\n"
)


def commit_elsewhere(path: Path, *statements: str) -> None:
    """Run ``statements`` on ``path`` in another process, each its own commit."""
    subprocess.run([sys.executable, "-c", _COMMIT, str(path), *statements], check=True)


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_the_sqlite_watch_sees_every_commit_of_another_process(
    tmp_path: Path, journal: str
) -> None:
    """In WAL mode (how Flask-Spark opens its files) the watch reads the WAL index's
    header; in a rollback-journal file, ``data_version``. Either way each commit made
    elsewhere is a new version, and nothing else is."""
    path = tmp_path / "grants.sqlite3"
    commit_elsewhere(path, f"PRAGMA journal_mode = {journal}", "CREATE TABLE t (x)")
    watch = SQLiteWatch(str(path))
    seen = [watch.version()]
    assert seen[0] is not None
    assert watch.version() == seen[0]  # nothing committed: the same version
    for statements in [
        ["INSERT INTO t VALUES (1)"],
        ["UPDATE t SET x = 2"],
        ["PRAGMA wal_checkpoint(TRUNCATE)", "INSERT INTO t VALUES (3)"],  # the WAL anew
        ["DELETE FROM t"],
        ["INSERT INTO t VALUES (4)"],
    ]:
        commit_elsewhere(path, *statements)
        version = watch.version()
        assert version is not None
        assert version not in seen
        assert watch.version() == version
        seen.append(version)
    # A connection of this process commits: a change too.
    own = sqlite3.connect(path, isolation_level=None)
    own.execute("INSERT INTO t VALUES (5)")
    own.close()
    assert watch.version() not in seen
    watch.close()
