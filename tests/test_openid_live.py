"""OpenID Connect sign-ins on real gunicorn workers and every store: bursts of one browser
at expiry refresh once per expiry at the OpenID token endpoint, as on the OAuth 2 flow."""

from __future__ import annotations

import pytest
import urllib3

from flask_spark.testing import Fault, SparkPlatform

from .gunicorn_server import GunicornServer, burst, portal_env
from .http_browser import CookieBrowser
from .redis_server import RedisServer
from .store_fixtures import clean_store_url

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "kind", ["sqlite", "postgresql", "mariadb", "redis", "sentinel", "cluster"]
)
def test_bursts_of_one_browser_refresh_once_per_expiry(
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
        SPARK_AUTH_FLOW="openid",
    )
    server = GunicornServer(env, workers=3, threads=8)
    spark_platform.register_client(
        spark_platform.client_id, spark_platform.client_secret, [f"{server.url}/callback"]
    )
    server.start()
    servers.append(server)
    browser = CookieBrowser(http)
    browser.sign_in(server.url)
    headers = {"Cookie": f"session={browser.cookie}"}
    served, refreshes = 0, []
    for _ in range(5):
        before = spark_platform.stats.refreshes
        spark_platform.expire_all()
        spark_platform.add_fault(Fault("grant", "delay", delay=0.1))
        statuses = burst(http, [f"{server.url}/account"] * 16, headers)
        served += statuses.count(200)
        refreshes.append(spark_platform.stats.refreshes - before)
    assert (served, refreshes) == (80, [1, 1, 1, 1, 1])
    assert spark_platform.stats.rejected_refreshes == 0
    assert {r.path for r in spark_platform.requests_for("grant")} == {"/openid/token"}
