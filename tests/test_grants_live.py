"""Grants on every store, under load on real gunicorn workers, on both sign-in flows (OAuth 2
and OpenID Connect): one refresh per expiry for bursts of one browser, for one agent on
several browsers and servers, and for a background job beside the web requests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import urllib3

from flask_spark.testing import ACCOUNTS, Fault, SparkPlatform

from .gunicorn_server import (
    ROOT,
    GunicornServer,
    burst,
    bursts_at_expiry,
    portal_env,
    start_portals,
)
from .http_browser import CookieBrowser
from .redis_server import RedisServer
from .store_fixtures import clean_store_url

pytestmark = pytest.mark.slow

STORES = ["sqlite", "postgresql", "mariadb", "redis", "sentinel", "cluster"]

#: The token endpoint each sign-in flow refreshes at.
TOKEN_PATHS = {"oauth2": "/v1/oauth2/grant", "openid": "/openid/token"}


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest) -> str:
    """``SPARK_GRANT_STORE`` for each kind of store, empty."""
    return clean_store_url(request, request.param)


@pytest.fixture(params=list(TOKEN_PATHS))
def flow(request: pytest.FixtureRequest) -> str:
    """``SPARK_AUTH_FLOW``: each test runs on both sign-in flows."""
    return str(request.param)


def start(
    platform: SparkPlatform,
    redis_server: RedisServer,
    store_url: str,
    flow: str,
    running: list[GunicornServer],
    count: int = 1,
) -> list[GunicornServer]:
    env = portal_env(platform, redis_server, SPARK_GRANT_STORE=store_url, SPARK_AUTH_FLOW=flow)
    return start_portals(platform, env, running, count)


def refreshed_at(platform: SparkPlatform) -> set[str]:
    """The paths the platform saw the portal exchange or refresh tokens at."""
    return {r.path for r in platform.requests_for("grant")}


def test_bursts_of_one_browser_refresh_once_per_expiry(
    spark_platform: SparkPlatform,
    redis_server: RedisServer,
    http: urllib3.PoolManager,
    servers: list[GunicornServer],
    store_url: str,
    flow: str,
) -> None:
    [server] = start(spark_platform, redis_server, store_url, flow, servers)
    browser = CookieBrowser(http)
    browser.sign_in(server.url)
    headers = {"Cookie": f"session={browser.cookie}"}
    served, refreshes = bursts_at_expiry(spark_platform, http, f"{server.url}/account", headers)
    assert (served, refreshes) == (80, [1, 1, 1, 1, 1])
    assert spark_platform.stats.rejected_refreshes == 0
    assert refreshed_at(spark_platform) == {TOKEN_PATHS[flow]}


def test_one_agent_on_three_browsers_and_two_servers(
    spark_platform: SparkPlatform,
    redis_server: RedisServer,
    http: urllib3.PoolManager,
    servers: list[GunicornServer],
    store_url: str,
    flow: str,
) -> None:
    first, second = start(spark_platform, redis_server, store_url, flow, servers, count=2)
    agent = ACCOUNTS[1]["Id"]
    browsers = [CookieBrowser(http) for _ in range(3)]
    for index, browser in enumerate(browsers):
        browser.sign_in((first, second)[index % 2].url, user=agent)
        assert browser.whoami(second.url) == agent
    refreshes = []
    for _ in range(3):
        before = spark_platform.stats.refreshes
        spark_platform.expire_all()
        statuses = []
        for index, browser in enumerate(browsers):
            urls = [f"{(first, second)[(index + i) % 2].url}/account" for i in range(6)]
            statuses += burst(http, urls, {"Cookie": f"session={browser.cookie}"})
        assert statuses == [200] * 18
        refreshes.append(spark_platform.stats.refreshes - before)
    assert refreshes == [1, 1, 1]
    assert spark_platform.stats.rejected_refreshes == 0
    assert refreshed_at(spark_platform) == {TOKEN_PATHS[flow]}


@pytest.mark.parametrize("store_url", ["sqlite", "redis"], indirect=True)
def test_a_job_and_web_requests_of_one_agent_refresh_once(
    spark_platform: SparkPlatform,
    redis_server: RedisServer,
    http: urllib3.PoolManager,
    servers: list[GunicornServer],
    store_url: str,
    flow: str,
    tmp_path: Path,
) -> None:
    [server] = start(spark_platform, redis_server, store_url, flow, servers)
    browser = CookieBrowser(http)
    browser.sign_in(server.url)
    go = tmp_path / "go"
    job = subprocess.Popen(
        [sys.executable, "-m", "tests.job", ACCOUNTS[0]["Id"], str(go)],
        cwd=ROOT,
        env=server.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        spark_platform.expire_all()
        spark_platform.add_fault(Fault("grant", "delay", delay=0.2))
        go.touch()
        statuses = burst(
            http, [f"{server.url}/account"] * 16, {"Cookie": f"session={browser.cookie}"}
        )
        out, err = job.communicate(timeout=60)
    finally:
        job.kill()
    assert job.returncode == 0, err.decode()[-2000:]
    assert out.decode().strip() == ACCOUNTS[0]["Name"]
    assert statuses == [200] * 16
    assert spark_platform.stats.refreshes == 1
    assert spark_platform.stats.rejected_refreshes == 0
    assert refreshed_at(spark_platform) == {TOKEN_PATHS[flow]}
