"""The shared rate budget on real gunicorn workers: 3 workers x 8 threads of one app
share one count in the grant store, so a burst past the limit never reaches the
platform."""

from __future__ import annotations

import pytest
import urllib3

from flask_spark.testing import SparkPlatform

from .gunicorn_server import GunicornServer, burst, portal_env, start_portals
from .http_browser import CookieBrowser
from .redis_server import RedisServer
from .store_fixtures import clean_store_url

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_gunicorn_workers_share_one_budget(
    spark_platform: SparkPlatform,
    redis_server: RedisServer,
    http: urllib3.PoolManager,
    servers: list[GunicornServer],
    request: pytest.FixtureRequest,
    kind: str,
) -> None:
    env = portal_env(
        spark_platform,
        redis_server,
        SPARK_GRANT_STORE=clean_store_url(request, kind),
        SPARK_RATE_LIMIT=10,
        SPARK_RATE_WINDOW=300,
        SPARK_MAX_RETRY_WAIT=0,
    )
    [server] = start_portals(spark_platform, env, servers)
    browser = CookieBrowser(http)
    browser.sign_in(server.url)  # the account read: 1 of 10

    statuses = burst(http, [f"{server.url}/account"] * 24, {"Cookie": f"session={browser.cookie}"})

    assert sorted(statuses) == [200] * 9 + [503] * 15
    assert spark_platform.stats.data_calls == 10
    assert spark_platform.stats.rate_limited == 0
