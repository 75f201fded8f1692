"""Shared fixtures: a private Redis, Flask apps wired to the simulator, a browser-like
helper that walks a sign-in through the simulator over real HTTPS."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
import urllib3
from cachelib import FileSystemCache
from flask import Flask
from flask.testing import FlaskClient
from flask_session import Session

from flask_spark import Spark
from flask_spark.testing import SparkPlatform

from .redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    if redis_server.process is None:
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    client.close()


AppFactory = Callable[..., Flask]


@pytest.fixture
def make_app(
    spark_platform: SparkPlatform,
    redis_server: RedisServer,
    redis_client: redis.Redis,
    tmp_path: Any,
) -> Iterator[AppFactory]:
    """Build a Flask app with Flask-Session and Flask-Spark pointed at the simulator."""
    made: list[Flask] = []

    def factory(session_type: str = "redis", spark: Spark | None = None, **config: Any) -> Flask:
        app = Flask("portal")
        app.config.update(
            SECRET_KEY="test-secret-key",
            SESSION_TYPE=session_type,
            SESSION_REDIS=redis.Redis.from_url(redis_server.url),
            SPARK_CLIENT_ID=spark_platform.client_id,
            SPARK_CLIENT_SECRET=spark_platform.client_secret,
            SPARK_PLATFORM_URL=spark_platform.platform_url,
            SPARK_API_URL=spark_platform.api_url,
            SPARK_CA_CERTS=spark_platform.ca_file,
            SPARK_USER_AGENT="Flask-Spark tests",
        )
        if session_type == "cachelib":
            del app.config["SESSION_REDIS"]
            app.config["SESSION_CACHELIB"] = FileSystemCache(str(tmp_path / "sessions"))
        app.config.update(config)
        Session(app)
        (spark or Spark()).init_app(app)
        made.append(app)
        return app

    yield factory
    for app in made:
        app.extensions["spark"].transport.close()
        redis_conn = app.config.get("SESSION_REDIS")
        if redis_conn is not None:
            redis_conn.close()


class Browser:
    """Walks the redirects between a Flask test client and the simulator, like a browser."""

    def __init__(self, client: FlaskClient, platform: SparkPlatform) -> None:
        self.client = client
        self.platform = platform
        self.http = urllib3.PoolManager(ca_certs=platform.ca_file, retries=False)

    def start_login(self, path: str = "/login") -> str:
        """GET /login; returns the authorization URL it redirected to."""
        response = self.client.get(path)
        assert response.status_code == 302, response.status_code
        return response.headers["Location"]

    def authorize(self, authorization_url: str) -> tuple[str, dict[str, str]]:
        """Visit the platform; returns the callback path+query and its parameters."""
        reply = self.http.request("GET", authorization_url, redirect=False)
        assert reply.status == 302, (reply.status, reply.data[:300])
        location = reply.headers["Location"]
        parts = urlsplit(location)
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        return f"{parts.path}?{parts.query}", params

    def sign_in(self, next_path: str | None = None) -> Any:
        """The whole flow; returns the response of /callback."""
        login = "/login" if next_path is None else f"/login?next={next_path}"
        callback, _ = self.authorize(self.start_login(login))
        return self.client.get(callback)

    def close(self) -> None:
        self.http.clear()


@pytest.fixture
def browser_for(spark_platform: SparkPlatform) -> Iterator[Callable[[Flask], Browser]]:
    made: list[Browser] = []

    def factory(app: Flask) -> Browser:
        browser = Browser(app.test_client(), spark_platform)
        made.append(browser)
        return browser

    yield factory
    for browser in made:
        browser.close()


@pytest.fixture
def log_text(caplog: pytest.LogCaptureFixture) -> Callable[[], str]:
    """Everything logged at any level, as one string."""
    caplog.set_level(logging.DEBUG)
    return lambda: "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
    )
