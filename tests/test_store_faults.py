"""The session store going away: 503 pages instead of 500s, no refresh without the lock,
and recovery by itself when the store is back."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from flask import Flask, jsonify

from flask_spark import spark_api, spark_login_required
from flask_spark.testing import SparkPlatform

from .conftest import AppFactory, Browser
from .redis_server import RedisServer, free_port

pytestmark = pytest.mark.usefixtures("no_secret_in_logs")


@pytest.fixture
def app(make_app: AppFactory, redis_server: RedisServer) -> Flask:
    app = make_app(
        SESSION_REDIS=redis.Redis.from_url(
            redis_server.url, socket_timeout=0.5, socket_connect_timeout=0.5
        )
    )

    @app.get("/")
    def home() -> Any:
        return "home"

    @app.get("/account")
    @spark_login_required
    def account() -> Any:
        return jsonify(spark_api.get("/my/account"))

    return app


@pytest.fixture
def browser(app: Flask, browser_for: Any) -> Browser:
    browser = browser_for(app)
    assert browser.sign_in().status_code == 303
    return browser


@pytest.fixture
def stoppable(redis_server: RedisServer) -> Iterator[RedisServer]:
    yield redis_server
    if redis_server.process is None:
        redis_server.start()


def test_stopped_store_answers_503_and_recovers(
    browser: Browser, stoppable: RedisServer, spark_platform: SparkPlatform, log_text: Any
) -> None:
    assert browser.client.get("/account").status_code == 200
    spark_platform.expire_all()
    stoppable.stop()

    account = browser.client.get("/account")
    assert account.status_code == 503
    assert account.headers["Retry-After"]
    assert b"storage is unavailable" in account.data
    assert browser.client.get("/").status_code == 200  # pages without Spark still work
    assert browser.client.get("/login").status_code == 503
    assert browser.client.get("/callback?state=x&code=y").status_code == 503
    api = browser.client.get("/account", headers={"Accept": "application/json"})
    assert api.status_code == 503
    assert api.json == {
        "error": "unavailable",
        "message": "Sign-in storage is unavailable right now. Please try again shortly.",
    }
    assert spark_platform.stats.refreshes == 0  # never without the lock

    stoppable.start()  # an empty Redis: sessions are gone, the service is back
    assert browser.client.get("/account").status_code == 302
    assert browser.sign_in().status_code == 303
    assert browser.client.get("/account").status_code == 200
    assert "Traceback" not in log_text()


@pytest.mark.slow
def test_paused_store_answers_503_then_serves_the_same_session(
    browser: Browser, stoppable: RedisServer, redis_client: redis.Redis
) -> None:
    redis_client.execute_command("CLIENT", "PAUSE", 3000, "ALL")
    try:
        assert browser.client.get("/account").status_code == 503
    finally:
        redis_client.execute_command("CLIENT", "UNPAUSE")
    assert browser.client.get("/account").status_code == 200  # still signed in


@pytest.mark.slow
def test_store_outage_mid_traffic_never_answers_500(
    app: Flask, browser: Browser, stoppable: RedisServer, redis_client: redis.Redis
) -> None:
    cookie = browser.client.get_cookie("session")
    assert cookie is not None
    statuses: list[int] = []
    lock = threading.Lock()
    done = threading.Event()

    def traffic() -> None:
        client = app.test_client()
        client.set_cookie("session", cookie.value)
        while not done.is_set():
            status = client.get("/account").status_code
            with lock:
                statuses.append(status)

    def count() -> int:
        with lock:
            return len(statuses)

    def wait_for_more(n: int) -> None:
        target = count() + n
        while count() < target:
            done.wait(0.01)

    workers = [threading.Thread(target=traffic) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        wait_for_more(20)
        redis_client.execute_command("CLIENT", "PAUSE", 2000, "ALL")
        wait_for_more(8)
        redis_client.execute_command("CLIENT", "UNPAUSE")
        wait_for_more(20)
        stoppable.stop()
        wait_for_more(20)
        stoppable.start()
        wait_for_more(20)
    finally:
        done.set()
        for w in workers:
            w.join()
    assert 500 not in statuses
    assert set(statuses) <= {200, 302, 503}
    assert {200, 503} <= set(statuses)
    assert statuses[-1] == 302  # back by itself; the restarted Redis kept no sessions


def test_login_with_the_grant_store_down_answers_503_and_sends_nowhere(
    make_app: AppFactory, spark_platform: SparkPlatform
) -> None:
    # Sessions answer; the grant store (where the pending sign-in would go) does not.
    app = make_app(SPARK_GRANT_STORE=f"redis://127.0.0.1:{free_port()}/0")
    client = app.test_client()
    page = client.get("/login?next=/account")
    assert page.status_code == 503
    assert int(page.headers["Retry-After"]) >= 1
    assert "Location" not in page.headers  # no trip to Flexmls that could not end well
    assert b"storage is unavailable" in page.data
    assert spark_platform.stats.authorizations == 0
