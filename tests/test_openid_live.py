"""OpenID Connect sign-ins on real gunicorn workers and every store: bursts of one browser
at expiry refresh once per expiry at the OpenID token endpoint, as on the OAuth 2 flow."""

from __future__ import annotations

import pytest
import urllib3

from flask_spark.testing import SparkPlatform

from .gunicorn_server import GunicornServer, bursts_at_expiry, portal_env, start_portals
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
    [server] = start_portals(spark_platform, env, servers)
    browser = CookieBrowser(http)
    browser.sign_in(server.url)
    headers = {"Cookie": f"session={browser.cookie}"}
    served, refreshes = bursts_at_expiry(spark_platform, http, f"{server.url}/account", headers)
    assert (served, refreshes) == (80, [1, 1, 1, 1, 1])
    assert spark_platform.stats.rejected_refreshes == 0
    assert {r.path for r in spark_platform.requests_for("grant")} == {"/openid/token"}
