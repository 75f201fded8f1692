"""Sign-in and sign-out against requests of the same browser still in flight, on real
gunicorn workers: a session whose id was rotated or signed out never comes back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3

from flask_spark.testing import Fault, SparkPlatform

from .conftest import secret_values
from .gunicorn_server import GunicornServer, portal_env
from .http_browser import CookieBrowser, HeldRequest
from .redis_server import RedisServer

pytestmark = pytest.mark.slow


def start_server(
    platform: SparkPlatform, redis_server: RedisServer, tmp_path: Path, **config: object
) -> GunicornServer:
    env = portal_env(platform, redis_server, **config)
    env["PORTAL_INSTANCE_DIR"] = str(tmp_path / "instance")
    server = GunicornServer(env, workers=3, threads=8)
    platform.register_client(
        platform.client_id, platform.client_secret, (f"{server.url}/callback",)
    )
    server.start()
    return server


@pytest.fixture
def server(
    spark_platform: SparkPlatform, redis_server: RedisServer, tmp_path: Path
) -> Iterator[GunicornServer]:
    running = start_server(spark_platform, redis_server, tmp_path)
    yield running
    running.stop()
    assert not [v for v in secret_values(spark_platform) if v in running.log.read_text()]


@pytest.mark.parametrize("ends_grant", [True, False], ids=["ends-grant", "this-browser-only"])
def test_sign_out_is_final_with_a_request_in_flight(
    spark_platform: SparkPlatform,
    redis_server: RedisServer,
    http: urllib3.PoolManager,
    tmp_path: Path,
    ends_grant: bool,
) -> None:
    server = start_server(
        spark_platform, redis_server, tmp_path, SPARK_LOGOUT_ENDS_GRANT=str(ends_grant).lower()
    )
    try:
        authenticated = successes = 0
        for round_ in range(4):
            browser = CookieBrowser(http)
            browser.sign_in(server.url)
            old_cookie = browser.cookie
            # The platform does not confirm the revocation: the tokens stay live there.
            spark_platform.add_fault(Fault("revoke", "status", status=500))
            held = HeldRequest(browser, server.url, tmp_path / f"round-{round_}")
            held.start()
            out = browser.request("POST", server.url + "/logout", headers={"Origin": server.url})
            assert out.status == 303
            held.release()
            stale = CookieBrowser(http)
            for i in range(20):
                stale.cookie = old_cookie
                if i % 2:
                    authenticated += stale.whoami(server.url) is not None
                else:
                    successes += stale.get(server.url + "/account").status == 200
        assert (authenticated, successes) == (0, 0)
    finally:
        server.stop()


def test_a_slow_request_across_login_does_not_lose_the_sign_in(
    server: GunicornServer, http: urllib3.PoolManager, tmp_path: Path
) -> None:
    for round_ in range(10):
        browser = CookieBrowser(http)
        assert browser.get(server.url + "/visit").status == 200  # a session exists
        held = HeldRequest(browser, server.url, tmp_path / f"round-{round_}")
        held.start()
        location = browser.start_login(server.url)
        held.release()  # writes the session it opened before /login back
        callback = browser.get(browser.authorize(location))
        assert callback.status == 303
        assert browser.whoami(server.url) is not None


def test_a_slow_request_across_the_callback_does_not_sign_out(
    server: GunicornServer, http: urllib3.PoolManager, tmp_path: Path
) -> None:
    for round_ in range(10):
        browser = CookieBrowser(http)
        assert browser.get(server.url + "/visit").status == 200
        callback_url = browser.authorize(browser.start_login(server.url))
        held = HeldRequest(browser, server.url, tmp_path / f"round-{round_}")
        held.start()
        assert browser.get(callback_url).status == 303
        signed_in_cookie = browser.cookie
        held.release()  # opened the session before the sign-in rotated its id
        assert browser.cookie == signed_in_cookie
        assert browser.whoami(server.url) is not None
        assert browser.get(server.url + "/account").status == 200
