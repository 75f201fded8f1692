"""Single flight across real gunicorn worker processes sharing one Redis."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.cookies import SimpleCookie
from typing import Any

import pytest
import urllib3

from flask_spark.testing import SparkPlatform

from .gunicorn_server import GunicornServer
from .redis_server import RedisServer

BURST = 16


def portal_env(platform: SparkPlatform, redis_server: RedisServer, **extra: Any) -> dict[str, Any]:
    env = {
        "FLASK_SECRET_KEY": "gunicorn-test-secret",
        "FLASK_SPARK_CLIENT_ID": platform.client_id,
        "FLASK_SPARK_CLIENT_SECRET": platform.client_secret,
        "FLASK_SPARK_PLATFORM_URL": platform.platform_url,
        "FLASK_SPARK_API_URL": platform.api_url,
        "FLASK_SPARK_CA_CERTS": platform.ca_file,
        "FLASK_SPARK_USER_AGENT": "Flask-Spark gunicorn tests",
        "PORTAL_REDIS_URL": redis_server.url,
    }
    env.update({f"FLASK_{k}": v for k, v in extra.items()})
    return env


@pytest.fixture
def http(spark_platform: SparkPlatform) -> Iterator[urllib3.PoolManager]:
    pool = urllib3.PoolManager(
        ca_certs=spark_platform.ca_file, retries=False, maxsize=64, timeout=30.0
    )
    yield pool
    pool.clear()


def start(server: GunicornServer) -> GunicornServer:
    server.start()
    return server


@pytest.fixture
def servers() -> Iterator[list[GunicornServer]]:
    running: list[GunicornServer] = []
    yield running
    for server in running:
        server.stop()


def sign_in(http: urllib3.PoolManager, server: GunicornServer) -> str:
    """The whole flow through the gunicorn portal; returns the session cookie."""
    login = http.request("GET", server.url + "/login", redirect=False)
    assert login.status == 302
    cookie = SimpleCookie(login.headers["Set-Cookie"])["session"].value
    authorize = http.request("GET", login.headers["Location"], redirect=False)
    assert authorize.status == 302
    callback = http.request(
        "GET",
        authorize.headers["Location"],
        redirect=False,
        headers={"Cookie": f"session={cookie}"},
    )
    assert callback.status == 303, callback.data[:500]
    return SimpleCookie(callback.headers["Set-Cookie"])["session"].value


def burst(http: urllib3.PoolManager, urls: list[str], headers: dict[str, str]) -> list[int]:
    """Send one request per URL from as many threads, released together."""
    barrier = threading.Barrier(len(urls))
    statuses: list[int] = []
    lock = threading.Lock()

    def hit(url: str) -> None:
        barrier.wait()
        status = http.request("GET", url, headers=headers, redirect=False).status
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=hit, args=(u,)) for u in urls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def test_same_session_burst_across_workers_refreshes_once_per_expiry(
    spark_platform: SparkPlatform,
    redis_server: RedisServer,
    http: urllib3.PoolManager,
    servers: list[GunicornServer],
) -> None:
    # Two independent servers stand in for two hosts sharing one Redis.
    first = GunicornServer(portal_env(spark_platform, redis_server), workers=3, threads=4)
    second = GunicornServer(portal_env(spark_platform, redis_server), workers=2, threads=4)
    spark_platform.register_client(
        spark_platform.client_id,
        spark_platform.client_secret,
        (f"{first.url}/callback", f"{second.url}/callback"),
    )
    servers.extend([start(first), start(second)])
    cookie = sign_in(http, first)
    headers = {"Cookie": f"session={cookie}"}
    urls = [f"{(first, second)[i % 2].url}/account" for i in range(BURST)]
    for expiry in range(1, 4):
        spark_platform.expire_all()
        statuses = burst(http, urls, headers)
        assert statuses == [200] * BURST
        assert spark_platform.stats.refreshes == expiry
    assert spark_platform.stats.rejected_refreshes == 0
    # The stored refresh token is the newest: one more expiry still refreshes cleanly.
    spark_platform.expire_all()
    assert http.request("GET", urls[0], headers=headers).status == 200
    assert spark_platform.stats.refreshes == 4
    assert spark_platform.stats.rejected_refreshes == 0


def test_app_wide_token_refreshes_once_and_survives_a_restart(
    spark_platform: SparkPlatform,
    redis_server: RedisServer,
    http: urllib3.PoolManager,
    servers: list[GunicornServer],
) -> None:
    pair = spark_platform.issue_tokens()
    env = portal_env(
        spark_platform,
        redis_server,
        SPARK_ACCESS_TOKEN=pair["access_token"],
        SPARK_REFRESH_TOKEN=pair["refresh_token"],
        SPARK_REDIRECT_URI="http://localhost/callback",
    )
    server = start(GunicornServer(env, workers=3, threads=4))
    servers.append(server)
    urls = [f"{server.url}/app-account"] * BURST
    assert burst(http, urls, {}) == [200] * BURST
    assert spark_platform.stats.refreshes == 0
    for expiry in range(1, 3):
        spark_platform.expire_all()
        assert burst(http, urls, {}) == [200] * BURST
        assert spark_platform.stats.refreshes == expiry

    # Restart: the configured pair is long rotated away; the stored pair must win.
    server.stop()
    server.start()
    assert http.request("GET", urls[0]).status == 200
    spark_platform.expire_all()
    assert http.request("GET", urls[0]).status == 200
    assert spark_platform.stats.refreshes == 3
    assert spark_platform.stats.rejected_refreshes == 0
