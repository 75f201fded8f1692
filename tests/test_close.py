"""``Spark.close(app)``: an instance lets go of its connections to the platform and of the
grant store it opened, but not of a store another open instance still uses, nor of one
the app gave it; a later call connects again."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
from flask import Flask

from flask_spark import MemoryGrantStore, Spark, spark_api
from flask_spark.testing import ACCOUNTS, SparkPlatform

from .conftest import AppFactory, Browser, add_probe, in_request
from .redis_server import RedisServer

#: A Redis database of its own for the grant stores here, so that their connections
#: can be counted apart from the sessions'.
STORE_DB = 7


def established_ports(port: int) -> set[int]:
    """The local ports of this machine's open TCP connections to ``port`` (the kernel's
    table, IPv4 and IPv6)."""
    found: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if state == "01" and int(remote.rsplit(":", 1)[1], 16) == port:
                found.add(int(local.rsplit(":", 1)[1], 16))
    return found


def store_url(redis_server: RedisServer) -> str:
    """The grant store URL of these tests, emptied."""
    url = f"{redis_server.url}/{STORE_DB}"
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return url


def store_connections(redis_client: redis.Redis) -> int:
    """Clients connected to :data:`STORE_DB` of the test Redis."""
    return sum(1 for client in redis_client.client_list() if int(client["db"]) == STORE_DB)


def call_as(app: Flask, browser: Browser) -> Any:
    return in_request(app, browser, lambda: spark_api.get("/my/account")[0]["Id"])


def test_close_lets_go_of_the_platform_and_the_store_it_opened(
    make_app: AppFactory,
    browser_for: Any,
    spark_platform: SparkPlatform,
    redis_server: RedisServer,
    redis_client: redis.Redis,
) -> None:
    platform_port = urlsplit(spark_platform.api_url).port
    assert platform_port is not None
    app = add_probe(make_app(SPARK_GRANT_STORE=store_url(redis_server)))
    spark: Spark = app.extensions["spark"].extension
    browser: Browser = browser_for(app)
    before = established_ports(platform_port)
    assert browser.sign_in().status_code == 303
    account = call_as(app, browser)
    mine = established_ports(platform_port) - before
    assert mine  # the app's keep-alive connection to the platform
    assert store_connections(redis_client) >= 1

    spark.close(app)

    assert not mine & established_ports(platform_port)
    assert store_connections(redis_client) == 0
    # Closing is not the end: the next call connects again, to the same grant.
    assert call_as(app, browser) == account
    spark.close(app)


def test_a_store_another_instance_uses_stays_open_until_both_close(
    make_app: AppFactory,
    spark_platform: SparkPlatform,
    redis_server: RedisServer,
    redis_client: redis.Redis,
) -> None:
    spark_platform.register_client("vow-key", "vow-secret", ["http://localhost/v/callback"])
    app = make_app(
        SPARK_GRANT_STORE=store_url(redis_server),
        SPARK_VOW_CLIENT_ID="vow-key",
        SPARK_VOW_CLIENT_SECRET="vow-secret",
        SPARK_VOW_ROLE="vow",
        SPARK_VOW_PORTAL="lakes",
    )
    agent: Spark = app.extensions["spark"].extension
    vow = Spark(app, name="vow", url_prefix="/v")
    with app.app_context():
        assert agent.grants.list() == vow.grants.list() == []  # both reach the store
    assert store_connections(redis_client) >= 1

    agent.close(app)
    assert store_connections(redis_client) >= 1  # the vow instance still uses it
    with app.app_context():
        assert vow.grants.list() == []
    vow.close(app)
    assert store_connections(redis_client) == 0


def test_a_store_the_app_gave_is_the_apps_to_close(
    make_app: AppFactory, browser_for: Any, spark_platform: SparkPlatform
) -> None:
    store = MemoryGrantStore()
    spark = Spark(grant_store=store)
    app = add_probe(make_app(spark=spark))
    browser: Browser = browser_for(app)
    assert browser.sign_in().status_code == 303

    spark.close(app)

    # The store was left as it was: the sign-in it holds still serves the browser.
    assert len(list(store.grants(spark_platform.client_id))) == 1
    assert call_as(app, browser) == ACCOUNTS[0]["Id"]
