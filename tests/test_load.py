"""Load on real gunicorn workers: bursts of one session on an expired token across two
servers (two hosts) sharing Redis, at several platform latencies; the app-wide token under
the same load and across a restart; many sessions at once; one host on file sessions and
file locks. Every server's debug log is checked for secrets."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import urllib3

from flask_spark.sealing import Sealer
from flask_spark.stores import GrantKey
from flask_spark.testing import ACCOUNTS, Fault, SparkPlatform

from .gunicorn_server import PORTAL_SECRET_KEY, GunicornServer, burst, portal_env
from .http_browser import CookieBrowser
from .redis_server import RedisServer

pytestmark = pytest.mark.slow

#: The refresh lock's lifetime in these tests; the holder keeps extending it.
LOCK_SECONDS = 0.5


def app_wide_env(
    platform: SparkPlatform, redis_server: RedisServer, pair: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """A portal configured with single-session keys (the app-wide token ``pair``)."""
    return portal_env(
        platform,
        redis_server,
        SPARK_ACCESS_TOKEN=pair["access_token"],
        SPARK_REFRESH_TOKEN=pair["refresh_token"],
        SPARK_REDIRECT_URI="http://localhost/callback",
        **extra,
    )


def two_hosts(
    platform: SparkPlatform, env: dict[str, Any], running: list[GunicornServer]
) -> tuple[GunicornServer, GunicornServer]:
    first = GunicornServer(env, workers=3, threads=4)
    second = GunicornServer(env, workers=2, threads=4)
    platform.register_client(
        platform.client_id,
        platform.client_secret,
        # the servers' own callbacks, and the one single-session keys refresh with
        (f"{first.url}/callback", f"{second.url}/callback", "http://localhost/callback"),
    )
    for server in (first, second):
        server.start()
        running.append(server)
    return first, second


def sign_in(http: urllib3.PoolManager, server: GunicornServer, user: str | None = None) -> str:
    """Sign in through the portal, approving as ``user``; returns the session cookie."""
    browser = CookieBrowser(http)
    browser.sign_in(server.url, user)
    assert browser.cookie is not None
    return browser.cookie


def expiry_rounds(
    platform: SparkPlatform,
    http: urllib3.PoolManager,
    hosts: tuple[GunicornServer, ...],
    path: str,
    headers: dict[str, str],
    latency: float,
) -> Iterator[None]:
    """Bursts of 2, 16 and 50 requests to ``path``, spread over ``hosts``, two expiries
    each: every token expired, the refresh slowed by ``latency``, all requests released
    together. Asserts every answer is 200 and exactly one refresh reached the platform per
    expiry; yields after each round, for the caller's own checks."""
    expiries = 0
    for size in (2, 16, 50):
        urls = [f"{hosts[i % len(hosts)].url}{path}" for i in range(size)]
        for _ in range(2):
            platform.expire_all()
            if latency:
                platform.add_fault(Fault("grant", "delay", delay=latency))
            assert burst(http, urls, headers) == [200] * size
            expiries += 1
            assert platform.stats.refreshes == expiries
            yield


def stored_record(redis_url: str, platform: SparkPlatform, account_id: str) -> dict[str, str]:
    """The grant of ``account_id`` (idx) as stored in Redis, its tokens opened with the
    key the portal derives from its ``SECRET_KEY``."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        key = GrantKey(platform.client_id, account_id, "idx")
        record = dict(client.hgetall(f"spark:g:{{{key.id}}}"))
    finally:
        client.close()
    assert record
    sealer = Sealer([PORTAL_SECRET_KEY])
    for field, name in (("access_token", "access"), ("refresh_token", "refresh")):
        opened = sealer.open(record[field], f"{key.id}/{name}")
        assert opened is not None
        record[field] = opened
    return record


@pytest.mark.parametrize(
    "latency",
    [0.0, 0.2, LOCK_SECONDS * 3],
    ids=["no-latency", "slow-platform", "slower-than-the-lock-lifetime"],
)
def test_bursts_refresh_once_per_expiry_across_two_hosts(
    spark_platform: SparkPlatform,
    redis_server: RedisServer,
    http: urllib3.PoolManager,
    servers: list[GunicornServer],
    latency: float,
) -> None:
    env = portal_env(spark_platform, redis_server, SPARK_REFRESH_LEASE_SECONDS=LOCK_SECONDS)
    first, second = two_hosts(spark_platform, env, servers)
    cookie = sign_in(http, first)
    headers = {"Cookie": f"session={cookie}"}
    rounds = expiry_rounds(spark_platform, http, (first, second), "/account", headers, latency)
    for _ in rounds:
        record = stored_record(redis_server.url, spark_platform, ACCOUNTS[0]["Id"])
        live = spark_platform.grant_for(record["access_token"])
        assert record["refresh_token"] == live.refresh_token  # the newest one
    assert spark_platform.stats.rejected_refreshes == 0
    # six expiries: the code exchange, then one refresh each
    assert spark_platform.stats.grant_calls == 6 + 1


def test_many_sessions_at_once_never_get_each_others_tokens(
    spark_platform: SparkPlatform,
    redis_server: RedisServer,
    http: urllib3.PoolManager,
    servers: list[GunicornServer],
) -> None:
    first, second = two_hosts(spark_platform, portal_env(spark_platform, redis_server), servers)
    users = [ACCOUNTS[i % len(ACCOUNTS)] for i in range(24)]
    cookies = [sign_in(http, (first, second)[i % 2], user["Id"]) for i, user in enumerate(users)]
    for round_ in range(3):
        if round_:
            spark_platform.expire_all()
        barrier = threading.Barrier(len(cookies))
        seen: dict[int, tuple[int, str]] = {}
        lock = threading.Lock()

        def hit(
            index: int,
            barrier: threading.Barrier = barrier,
            seen: dict[int, tuple[int, str]] = seen,
            lock: threading.Lock = lock,
        ) -> None:
            barrier.wait()
            reply = http.request(
                "GET",
                f"{(second, first)[index % 2].url}/account",
                headers={"Cookie": f"session={cookies[index]}"},
            )
            name = json.loads(reply.data)[0]["Name"] if reply.status == 200 else ""
            with lock:
                seen[index] = (reply.status, name)

        threads = [threading.Thread(target=hit, args=(i,)) for i in range(len(cookies))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert seen == {i: (200, user["Name"]) for i, user in enumerate(users)}
    # The sessions of one account share its grant: one refresh per account and expiry.
    assert spark_platform.stats.refreshes == 2 * len({user["Id"] for user in users})
    assert spark_platform.stats.rejected_refreshes == 0


def test_one_host_on_file_sessions_refreshes_once_per_expiry(
    spark_platform: SparkPlatform,
    redis_server: RedisServer,
    http: urllib3.PoolManager,
    servers: list[GunicornServer],
    tmp_path: Path,
) -> None:
    env = portal_env(spark_platform, redis_server, SPARK_REFRESH_LEASE_SECONDS=LOCK_SECONDS)
    env["PORTAL_CACHE_DIR"] = str(tmp_path / "sessions")
    env["PORTAL_INSTANCE_DIR"] = str(tmp_path / "instance")
    server = GunicornServer(env, workers=4, threads=4)
    spark_platform.register_client(
        spark_platform.client_id, spark_platform.client_secret, (f"{server.url}/callback",)
    )
    server.start()
    servers.append(server)
    cookie = sign_in(http, server)
    urls = [f"{server.url}/account"] * 16
    for expiry in range(1, 4):
        spark_platform.expire_all()
        spark_platform.add_fault(Fault("grant", "delay", delay=0.2))
        assert burst(http, urls, {"Cookie": f"session={cookie}"}) == [200] * 16
        assert spark_platform.stats.refreshes == expiry
    assert spark_platform.stats.rejected_refreshes == 0


def test_app_wide_token_bursts_refresh_once_per_expiry_in_total(
    spark_platform: SparkPlatform,
    redis_server: RedisServer,
    http: urllib3.PoolManager,
    servers: list[GunicornServer],
) -> None:
    pair = spark_platform.issue_tokens()
    env = app_wide_env(
        spark_platform, redis_server, pair, SPARK_REFRESH_LEASE_SECONDS=LOCK_SECONDS
    )
    first, second = two_hosts(spark_platform, env, servers)
    for _ in expiry_rounds(spark_platform, http, (first, second), "/app-account", {}, 0.2):
        pass  # each round asserts itself
    assert spark_platform.stats.rejected_refreshes == 0


def test_app_wide_token_survives_a_restart_after_rotation(
    spark_platform: SparkPlatform,
    redis_server: RedisServer,
    http: urllib3.PoolManager,
    servers: list[GunicornServer],
) -> None:
    pair = spark_platform.issue_tokens()
    env = app_wide_env(spark_platform, redis_server, pair)
    server = GunicornServer(env, workers=3, threads=4)
    server.start()
    servers.append(server)
    url = f"{server.url}/app-account"
    for expiry in range(1, 3):
        spark_platform.expire_all()
        assert http.request("GET", url).status == 200
        assert spark_platform.stats.refreshes == expiry
    # Restart: the configured pair is long rotated away; the stored pair must win.
    server.stop()
    server.start()
    assert http.request("GET", url).status == 200
    spark_platform.expire_all()
    assert http.request("GET", url).status == 200
    assert spark_platform.stats.refreshes == 3
    assert spark_platform.stats.rejected_refreshes == 0
    assert spark_platform.requests_for("data")[-3].headers["Authorization"] != (
        f"OAuth {pair['access_token']}"
    )
