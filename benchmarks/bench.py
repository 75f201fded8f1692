"""Side-by-side figures for Flask-Spark, printed as a table (run: ``tox -e bench``).

Everything runs on this machine in one go: the Spark simulator over HTTPS in its own
process (keep-alive on), a private ``redis-server``, and one Flask app with three views
that make the same call to ``/v1/my/account``:

- ``spark_api``: Flask-Spark (token record read from Redis, refresh checks, pooled HTTP);
- ``raw``: the floor, a module-level urllib3 keep-alive pool and a hard-coded token;
- ``authlib``: Authlib's Flask client wired for Spark (``OAuth`` token type, the user
  agent header), which builds a new HTTP session for every call.

Then the sign-in round trip against the grant endpoint's own latency, a refresh storm
(many requests of one session on an expired token), and the Redis memory of one grant.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.managers import BaseManager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
import urllib3  # noqa: E402
from flask import Flask, jsonify  # noqa: E402
from flask.testing import FlaskClient  # noqa: E402
from flask_session import Session  # noqa: E402

from flask_spark import Spark, spark_api  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

USER_AGENT = "Flask-Spark benchmark"


# -- the simulator, in a process of its own ----------------------------------------------


class SimulatorControl:
    """Runs in the manager's process: owns the simulator and answers the benchmark."""

    def __init__(self) -> None:
        from flask_spark.testing import SimulatorServer, SparkPlatform

        self.platform = SparkPlatform(auto_approve=True)
        self.server = SimulatorServer(self.platform, tls=True)
        self.server.start()

    def url(self) -> str:
        return str(self.server.url)

    def ca_file(self) -> str:
        return str(self.server.ca_file)

    def client(self) -> tuple[str, str]:
        return self.platform.client_id, self.platform.client_secret

    def expire_all(self) -> None:
        self.platform.expire_all()

    def stats(self) -> dict[str, int]:
        return dict(vars(self.platform.stats))

    def stop(self) -> None:
        self.server.stop()


_control: SimulatorControl | None = None


def _get_control() -> SimulatorControl:
    global _control
    if _control is None:
        _control = SimulatorControl()
    return _control


class SimulatorManager(BaseManager):
    pass


SimulatorManager.register("control", callable=_get_control)


# -- the app under test ------------------------------------------------------------------


def build_app(control: Any, redis_url: str) -> tuple[Flask, dict[str, Any]]:
    url, ca_file = control.url(), control.ca_file()
    client_id, client_secret = control.client()
    app = Flask("bench")
    app.config.update(
        SECRET_KEY="bench",  # noqa: S106 - a throwaway app on loopback
        SESSION_TYPE="redis",
        SESSION_REDIS=redis.Redis.from_url(redis_url),
        SPARK_CLIENT_ID=client_id,
        SPARK_CLIENT_SECRET=client_secret,
        SPARK_PLATFORM_URL=url,
        SPARK_API_URL=url,
        SPARK_CA_CERTS=ca_file,
        SPARK_USER_AGENT=USER_AGENT,
    )
    Session(app)
    Spark(app)
    shared: dict[str, Any] = {}
    raw_pool = urllib3.PoolManager(ca_certs=ca_file, maxsize=8, retries=False)

    from authlib.integrations.flask_client import OAuth
    from authlib.oauth2.auth import TokenAuth

    # Wire Authlib for Spark: the token type is "OAuth", not "Bearer".
    def add_oauth_token(
        token: str, uri: str, headers: dict[str, str], body: Any, placement: str = "header"
    ) -> tuple[str, dict[str, str], Any]:
        headers["Authorization"] = f"OAuth {token}"
        return uri, headers, body

    TokenAuth.SIGN_METHODS["oauth"] = add_oauth_token
    os.environ["REQUESTS_CA_BUNDLE"] = ca_file
    oauth = OAuth(app)
    oauth.register(
        "spark",
        client_id=client_id,
        client_secret=client_secret,
        api_base_url=f"{url}/v1/",
        access_token_url=f"{url}/v1/oauth2/grant",
        authorize_url=f"{url}/oauth2",
    )

    @app.get("/spark")
    def via_spark() -> Any:
        return jsonify(spark_api.get("/my/account"))

    @app.get("/raw")
    def via_raw() -> Any:
        reply = raw_pool.request(
            "GET",
            f"{url}/v1/my/account",
            headers={
                "Authorization": f"OAuth {shared['access_token']}",
                "X-SparkApi-User-Agent": USER_AGENT,
                "Accept": "application/json",
            },
        )
        return jsonify(json.loads(reply.data)["D"]["Results"])

    @app.get("/authlib")
    def via_authlib() -> Any:
        token = {"access_token": shared["access_token"], "token_type": "oauth"}
        reply = oauth.spark.get(
            "my/account",
            token=token,
            headers={"X-SparkApi-User-Agent": USER_AGENT, "Accept": "application/json"},
        )
        return jsonify(reply.json()["D"]["Results"])

    return app, shared


def sign_in(client: FlaskClient, ca_file: str) -> float:
    """One whole sign-in through the simulator; returns its wall time in seconds."""
    http = _http(ca_file)
    start = time.perf_counter()
    login = client.get("/login")
    authorize = http.request("GET", login.headers["Location"], redirect=False)
    location = urlsplit(authorize.headers["Location"])
    done = client.get(f"{location.path}?{location.query}")
    elapsed = time.perf_counter() - start
    assert done.status_code == 303, done.status_code
    return elapsed


_pools: dict[str, urllib3.PoolManager] = {}


def _http(ca_file: str) -> urllib3.PoolManager:
    if ca_file not in _pools:
        _pools[ca_file] = urllib3.PoolManager(ca_certs=ca_file, maxsize=64, retries=False)
    return _pools[ca_file]


def grant_latency(control: Any, client_id: str, client_secret: str) -> float:
    """The grant endpoint alone: authorize for a code, then time the JSON POST."""
    http = _http(control.ca_file())
    url = control.url()
    redirect_uri = "http://localhost/callback"
    authorize = http.request(
        "GET",
        f"{url}/oauth2",
        fields={"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri},
        redirect=False,
    )
    code = parse_qs(urlsplit(authorize.headers["Location"]).query)["code"][0]
    body = json.dumps(
        {
            "client_id": client_id,
            "client_secret": client_secret,
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
        }
    )
    start = time.perf_counter()
    reply = http.request(
        "POST",
        f"{url}/v1/oauth2/grant",
        body=body,
        headers={"Content-Type": "application/json", "X-SparkApi-User-Agent": USER_AGENT},
    )
    elapsed = time.perf_counter() - start
    assert reply.status == 200
    return elapsed


# -- measuring ---------------------------------------------------------------------------


def per_call(fn: Callable[[], Any], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def storm(app: Flask, cookie: str, control: Any, size: int) -> list[float]:
    """``size`` requests of one session on an expired token, released together."""
    clients = []
    for _ in range(size):
        client = app.test_client()
        client.set_cookie("session", cookie)
        clients.append(client)
    control.expire_all()
    barrier = threading.Barrier(size)
    latencies: list[float] = []
    lock = threading.Lock()

    def hit(client: FlaskClient) -> None:
        barrier.wait()
        start = time.perf_counter()
        status = client.get("/spark").status_code
        elapsed = time.perf_counter() - start
        assert status == 200, status
        with lock:
            latencies.append(elapsed)

    threads = [threading.Thread(target=hit, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per block")
    parser.add_argument("--blocks", type=int, default=15, help="interleaved blocks")
    args = parser.parse_args()

    redis_server = RedisServer()
    redis_server.start()
    manager = SimulatorManager()
    manager.start()
    control = manager.control()
    try:
        run(control, redis_server, args.calls, args.blocks)
    finally:
        control.stop()
        manager.shutdown()
        redis_server.cleanup()


def run(control: Any, redis_server: RedisServer, calls: int, blocks: int) -> None:
    app, shared = build_app(control, redis_server.url)
    client = app.test_client()
    ca_file = control.ca_file()
    client_id, client_secret = control.client()
    sign_in(client, ca_file)
    cookie = client.get_cookie("session")
    assert cookie is not None
    owner = f"session:spark:session:{cookie.value}"
    store = redis.Redis.from_url(redis_server.url)
    record = json.loads(store.hget(owner, "idx") or b"{}")
    shared["access_token"] = record["access_token"]

    variants = {name: (lambda n=name: client.get(f"/{n}")) for name in ("raw", "spark", "authlib")}
    for fn in variants.values():  # warm up every path and pool
        for _ in range(20):
            assert fn().status_code == 200
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(blocks):
        for name, fn in variants.items():
            results[name].append(per_call(fn, calls))
    floor = statistics.median(results["raw"])

    print(f"\nOne API call inside a Flask request ({blocks} blocks x {calls} calls, median)")
    print(f"  {'variant':<34}{'per call':>12}{'vs raw':>10}")
    labels = {
        "raw": "raw keep-alive floor (urllib3)",
        "spark": "Flask-Spark spark_api.get",
        "authlib": "Authlib Flask client",
    }
    for name in ("raw", "spark", "authlib"):
        value = statistics.median(results[name])
        print(f"  {labels[name]:<34}{value * 1e6:>9.0f} us{value / floor:>9.2f}x")

    logins = [sign_in(app.test_client(), ca_file) for _ in range(50)]
    grants = [grant_latency(control, client_id, client_secret) for _ in range(50)]
    login_ms, grant_ms = statistics.median(logins) * 1e3, statistics.median(grants) * 1e3
    print("\nSign-in round trip (/login + platform + /callback, median of 50)")
    print(f"  {'sign-in round trip':<34}{login_ms:>9.2f} ms")
    print(f"  {'grant endpoint alone':<34}{grant_ms:>9.2f} ms")
    print(f"  {'ratio':<34}{login_ms / grant_ms:>9.2f}x")

    single = []
    for _ in range(20):
        single.extend(storm(app, cookie.value, control, 1))
    one = statistics.median(single)
    print("\nRefresh storm (one session, expired token, requests released together)")
    print(f"  {'requests':<10}{'p50':>10}{'p99':>10}{'p50 / lone refresh':>22}{'refreshes':>11}")
    lone_p99 = percentile(single, 99) * 1e3
    print(f"  {1:<10}{one * 1e3:>8.2f}ms{lone_p99:>8.2f}ms{1:>21.2f}x{'1 each':>11}")
    for size in (2, 16, 50):
        before = control.stats()["refreshes"]
        rounds = 5
        waits: list[float] = []
        for _ in range(rounds):
            waits.extend(storm(app, cookie.value, control, size))
        refreshes = control.stats()["refreshes"] - before
        print(
            f"  {size:<10}{statistics.median(waits) * 1e3:>8.2f}ms"
            f"{percentile(waits, 99) * 1e3:>8.2f}ms"
            f"{statistics.median(waits) / one:>21.2f}x{f'{refreshes}/{rounds}':>11}"
        )

    grant_bytes = store.memory_usage(owner) or 0
    session_bytes = store.memory_usage(f"session:{cookie.value}") or 0
    print("\nRedis memory (MEMORY USAGE)")
    print(f"  {'one stored grant (token hash)':<34}{grant_bytes:>9} bytes")
    print(f"  {'its session blob':<34}{session_bytes:>9} bytes")
    store.close()
    app.extensions["spark"].transport.close()
    app.config["SESSION_REDIS"].close()


if __name__ == "__main__":
    main()
