"""The hostile platform of ``test_hostile_platform`` against real gunicorn workers: the
workers' log (checked by the ``servers`` fixture for tracebacks and every issued value)
stays clean, and no header is ever built from a hostile token."""

from __future__ import annotations

import time

import pytest
import urllib3

from flask_spark.testing import Fault, SparkPlatform

from .gunicorn_server import GunicornServer, portal_env
from .http_browser import CookieBrowser
from .redis_server import RedisServer
from .test_hostile_platform import HOSTILE_GRANTS, TIMEOUT

pytestmark = pytest.mark.slow


def test_hostile_answers_on_gunicorn_leave_a_clean_log(
    spark_platform: SparkPlatform,
    redis_server: RedisServer,
    http: urllib3.PoolManager,
    servers: list[GunicornServer],
) -> None:
    """On real workers: a CR/LF token at sign-in and at refresh, then a trickled answer.
    The ``servers`` fixture checks the log for tracebacks and every issued value."""
    env = portal_env(spark_platform, redis_server, SPARK_TIMEOUT=TIMEOUT)
    server = GunicornServer(env, workers=2, threads=4)
    spark_platform.register_client(
        spark_platform.client_id, spark_platform.client_secret, (f"{server.url}/callback",)
    )
    server.start()
    servers.append(server)

    browser = CookieBrowser(http)
    callback = browser.authorize(browser.start_login(server.url))
    spark_platform.add_fault(Fault("grant", "tamper", tamper=HOSTILE_GRANTS["crlf access token"]))
    failed = browser.get(callback)
    assert failed.status == 502
    assert b"X-Injected" not in failed.data

    browser.sign_in(server.url)
    spark_platform.add_fault(Fault("data", "trickle", delay=0.1))
    start = time.monotonic()
    assert browser.get(server.url + "/account").status == 503
    assert time.monotonic() - start < TIMEOUT + 1
    spark_platform.expire_all()
    spark_platform.add_fault(Fault("grant", "tamper", tamper=HOSTILE_GRANTS["crlf access token"]))
    assert browser.get(server.url + "/account").status == 503
    log = server.log.read_text()
    assert "X-Injected" not in log
    assert "Invalid header" not in log
