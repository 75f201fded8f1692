"""Shared fixtures: a private Redis, Flask apps wired to the simulator, a browser-like
helper that walks a sign-in through the simulator over real HTTPS."""

from __future__ import annotations

import http.client
import logging
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import redis
import urllib3
from cachelib import FileSystemCache
from flask import Flask
from flask.testing import FlaskClient
from flask_session import Session

from flask_spark import Spark
from flask_spark.testing import SparkPlatform, sign_in

from .gunicorn_server import GunicornServer
from .redis_server import RedisServer
from .store_fixtures import *  # noqa: F403


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
        app = Flask("portal", instance_path=str(tmp_path / "instance"))
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
        app.extensions["spark"].tokens.store.close()
        redis_conn = app.config.get("SESSION_REDIS")
        if redis_conn is not None:
            redis_conn.close()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    data: bytes


class Browser:
    """Walks the redirects between a Flask test client and the simulator, like a browser.

    It talks to the simulator with ``http.client``, which logs nothing: the log checks
    are about what the library logs, and a browser's own traffic is not the library's.
    """

    def __init__(self, client: FlaskClient, platform: SparkPlatform) -> None:
        self.client = client
        self.platform = platform
        self.tls = ssl.create_default_context(cafile=platform.ca_file)

    def request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        parts = urlsplit(url)
        assert parts.hostname is not None
        conn = http.client.HTTPSConnection(
            parts.hostname, parts.port, context=self.tls, timeout=30
        )
        try:
            target = f"{parts.path}?{parts.query}" if parts.query else parts.path
            conn.request(method, target, body=body, headers=headers or {})
            response = conn.getresponse()
            return Reply(response.status, dict(response.getheaders()), response.read())
        finally:
            conn.close()

    def start_login(self, path: str = "/login") -> str:
        """GET /login; returns the authorization URL it redirected to."""
        response = self.client.get(path)
        assert response.status_code == 302, response.status_code
        return response.headers["Location"]

    def authorize(
        self, authorization_url: str, user: str | None = None
    ) -> tuple[str, dict[str, str]]:
        """Visit the platform (approving as ``user`` on its consent page when given);
        returns the callback path+query and its parameters."""
        if user is None:
            reply = self.request("GET", authorization_url)
        else:
            parts = urlsplit(authorization_url)
            fields = {k: v[0] for k, v in parse_qs(parts.query).items()}
            fields.update(decision="approve", user=user)
            reply = self.request(
                "POST",
                f"{parts.scheme}://{parts.netloc}{parts.path}",
                body=urlencode(fields).encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        assert reply.status == 302, (reply.status, reply.data[:300])
        location = reply.headers["Location"]
        parts = urlsplit(location)
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        return f"{parts.path}?{parts.query}", params

    def sign_in(self, next_path: str | None = None, user: str | None = None) -> Any:
        """The whole flow (:func:`flask_spark.testing.sign_in`); returns the response of
        /callback."""
        return sign_in(self.client, self.platform, next=next_path, user=user)

    def close(self) -> None:
        pass


def add_probe(app: Flask) -> Flask:
    """Give ``app`` a ``/probe`` view that runs whatever :func:`in_request` hands it: code
    that needs a real request (``spark_api``) without a view of its own per test."""
    app.config["PROBES"] = []

    @app.get("/probe")
    def probe() -> Any:
        fn, result = app.config["PROBES"][-1]
        result.append(fn())
        return "ok"

    return app


def in_request(app: Flask, browser: Browser, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` inside a request of ``browser`` to ``app`` (see :func:`add_probe`);
    its result."""
    result: list[Any] = []
    app.config["PROBES"].append((fn, result))
    assert browser.client.get("/probe").status_code == 200
    return result[0]


def same_session_burst(app: Flask, cookie: str, size: int, path: str = "/account") -> list[int]:
    """``size`` requests of one session to ``path`` from as many threads, released
    together; their statuses."""
    clients = []
    for _ in range(size):
        client = app.test_client()
        client.set_cookie("session", cookie)
        clients.append(client)
    barrier = threading.Barrier(size)
    statuses: list[int] = []
    lock = threading.Lock()

    def hit(client: Any) -> None:
        barrier.wait()
        status = client.get(path).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=hit, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def app_with_pair(make_app: AppFactory, pair: dict[str, Any], **config: Any) -> Flask:
    """An app on single-session keys (the token ``pair``): calls in an app context, no
    sign-in needed."""
    return make_app(
        SPARK_ACCESS_TOKEN=pair["access_token"],
        SPARK_REFRESH_TOKEN=pair["refresh_token"],
        SPARK_REDIRECT_URI="http://localhost/callback",
        **config,
    )


def same_browser(app: Flask, browser: Browser) -> FlaskClient:
    """Another test client of ``app`` with ``browser``'s session cookie: a request of the
    same browser, in flight beside its own."""
    cookie = browser.client.get_cookie("session")
    assert cookie is not None
    client = app.test_client()
    client.set_cookie("session", cookie.value)
    return client


def grant_of(app: Flask, client: FlaskClient, scope: str = "idx") -> Any:
    """The grant a test client's browser session is bound to for ``scope`` (or ``None``),
    as the app resolves it."""
    with client.session_transaction() as sess:
        binding = (sess.get("_spark") or {}).get("b", {}).get(scope)
    if binding is None:
        return None
    state = app.extensions["spark"]
    return state.tokens.resolve(binding, state.session_ttl)


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


@pytest.fixture(name="http")  # the function's own name would hide the http module here
def http_pool(spark_platform: SparkPlatform) -> Iterator[urllib3.PoolManager]:
    """A keep-alive pool for tests that talk to real servers (gunicorn, the simulator)."""
    pool = urllib3.PoolManager(
        ca_certs=spark_platform.ca_file, retries=False, maxsize=64, timeout=60.0
    )
    yield pool
    pool.clear()


@pytest.fixture
def servers(spark_platform: SparkPlatform) -> Iterator[list[GunicornServer]]:
    """The gunicorn servers a test starts: stopped after it, and their logs (debug level,
    every request line, Flask-Spark's own lines) checked for tracebacks and for every
    secret the simulator issued."""
    running: list[GunicornServer] = []
    yield running
    for server in running:
        server.stop()
    secrets = secret_values(spark_platform)
    for server in running:
        text = server.log.read_text()
        assert "Traceback" not in text, server.log.name
        assert not [v for v in secrets if v in text], f"a secret reached {server.log.name}"


@pytest.fixture
def log_text(caplog: pytest.LogCaptureFixture) -> Callable[[], str]:
    """Everything logged at any level, as one string."""
    caplog.set_level(logging.DEBUG)
    return lambda: "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
    )


def secret_values(platform: SparkPlatform) -> set[str]:
    """Every token (id_tokens too), code and client secret the simulator issued, and every
    state and nonce a sign-in sent it: none of them may ever be logged."""
    values = set(platform.issued_values())
    for entry in platform.requests_for("authorize"):
        for name in ("state", "nonce"):
            value = entry.query.get(name)
            if value:
                values.add(value)
    return {v for v in values if len(v) >= 8}


@pytest.fixture
def no_secret_in_logs(
    caplog: pytest.LogCaptureFixture, spark_platform: SparkPlatform
) -> Iterator[None]:
    """The test also proves that nothing secret was logged, at any level, by any logger
    (ours, Flask's, urllib3's, Werkzeug's). Modules opt in with ``pytestmark``."""
    caplog.set_level(logging.DEBUG)
    yield
    # In teardown, caplog.records holds only this phase: gather the others explicitly.
    records = caplog.get_records("setup") + caplog.get_records("call") + caplog.records
    text = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in records)
    leaked = [v for v in secret_values(spark_platform) if v in text]
    assert not leaked, f"{len(leaked)} secret value(s) reached the logs"
