"""Side-by-side figures for Flask-Spark, printed as a table (run: ``tox -e bench``).

Everything runs on this machine in one go: the Spark simulator over HTTPS in its own
process (keep-alive on), a private ``redis-server``, and Flask apps (Redis sessions) whose
views make the same call to ``/v1/my/account``:

- ``spark_api``: Flask-Spark, with its grants in Redis, in SQLite and in PostgreSQL (when
  a server answers on 127.0.0.1:5432): the binding and grant read, the refresh check,
  pooled HTTP;
- ``raw``: the floor, a module-level urllib3 keep-alive pool and a hard-coded token,
  asking for the same gzip answer;
- ``authlib``: Authlib's Flask client wired for Spark (``OAuth`` token type, the user
  agent header), which builds a new HTTP session for every call.

Then the store round trips of one request, the sign-in round trip against the grant
endpoint's own latency, refresh storms (many requests of one session on an expired token)
in one process and on gunicorn workers, and the Redis memory of one grant.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.managers import BaseManager
from pathlib import Path
from types import SimpleNamespace
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
from flask_spark.testing import sign_in as testing_sign_in  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

USER_AGENT = "Flask-Spark benchmark"
#: A rate budget that counts every call but never holds one back.
UNREACHED_LIMIT = 10**9


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

    def register_redirect_uri(self, uri: str) -> None:
        platform = self.platform
        uris = (*platform.redirect_uris, uri)
        platform.register_client(platform.client_id, platform.client_secret, uris)

    def stats(self) -> dict[str, int]:
        return dict(vars(self.platform.stats))

    def replication_url(self) -> str:
        return self.platform.replication_url

    def set_replication_records(self, count: int) -> None:
        self.platform.replication_records = count

    def served_between(self, start: float, end: float) -> int:
        """Data calls answered 200 that arrived between ``start`` and ``end`` (Unix time)."""
        return sum(
            1
            for r in self.platform.requests_for("data")
            if r.status == 200 and start <= r.received_at < end
        )

    def set_rate_limit(self, limit: int | None, window: float) -> None:
        self.platform.rate_limit = limit
        self.platform.rate_window = window

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


def build_app(
    control: Any, redis_url: str, grant_store: str | None = None, **extra: Any
) -> tuple[Flask, dict[str, Any]]:
    url, ca_file = control.url(), control.ca_file()
    client_id, client_secret = control.client()
    app = Flask("bench")
    app.config.update(
        SPARK_GRANT_STORE=grant_store,
        SECRET_KEY="bench",  # noqa: S106 - a throwaway app on loopback
        SESSION_TYPE="redis",
        SESSION_REDIS=redis.Redis.from_url(redis_url),
        SPARK_CLIENT_ID=client_id,
        SPARK_CLIENT_SECRET=client_secret,
        SPARK_PLATFORM_URL=url,
        SPARK_API_URL=url,
        SPARK_CA_CERTS=ca_file,
        SPARK_USER_AGENT=USER_AGENT,
        # Thousands of calls in minutes: the budget as deployed (the platform's window of
        # five minutes), counting every call, with a limit that never holds one back (the
        # rate limit section measures a real one).
        SPARK_RATE_LIMIT=UNREACHED_LIMIT,
    )
    app.config.update(extra)
    Session(app)
    app.extensions["bench.spark"] = Spark(app)  # to close it at the end
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
                # As spark_api (and requests, under Authlib) asks: the same answer for all.
                "Accept-Encoding": "gzip, deflate",
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


def sign_in(client: FlaskClient, control: Any) -> float:
    """One whole sign-in through the simulator (:func:`flask_spark.testing.sign_in`);
    returns its wall time in seconds."""
    # The simulator runs in the manager's process: what sign_in needs of it.
    platform = SimpleNamespace(
        platform_url=control.url(), ca_file=control.ca_file(), auto_approve=True
    )
    start = time.perf_counter()
    done = testing_sign_in(client, platform)
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
    parser.add_argument(
        "--rounds", type=int, default=3000, help="rounds of one call to each variant"
    )
    parser.add_argument("--calls", type=int, default=200, help="calls per compression block")
    args = parser.parse_args()

    redis_server = RedisServer()
    redis_server.start()
    manager = SimulatorManager()
    manager.start()
    control = manager.control()
    try:
        run(control, redis_server, args.rounds, args.calls)
    finally:
        control.stop()
        manager.shutdown()
        redis_server.cleanup()


def _grant_token(app: Flask, client: FlaskClient) -> str:
    """The access token the client's browser session is bound to."""
    with client.session_transaction() as sess:
        binding = sess["_spark"]["b"]["idx"]
    state = app.extensions["spark"]
    grant = state.tokens.resolve(binding, state.session_ttl)
    assert grant is not None
    return str(grant.access_token)


def _postgres_url() -> str | None:
    """A fresh PostgreSQL database for the benchmark, if a server answers locally."""
    try:
        import sqlalchemy as sa

        admin = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("DROP DATABASE IF EXISTS flask_spark_bench")
            conn.exec_driver_sql("CREATE DATABASE flask_spark_bench")
        admin.dispose()
    except Exception:  # no server, no driver: the row is left out
        return None
    return "postgresql+psycopg://postgres@127.0.0.1:5432/flask_spark_bench"


def _redis_calls(store: redis.Redis) -> dict[str, int]:
    stats = store.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def round_trips(
    app: Flask, client: FlaskClient, store: redis.Redis, requests: int = 100
) -> tuple[float, float]:
    """Per request of ``/spark``: round trips to the session store (Flask-Session's Redis
    ``GET`` and ``SET``) and to the grant store (Flask-Spark's Redis scripts, whose own
    inner commands Redis counts too and are left out, or its SQL statements)."""
    inner = app.extensions["spark"].tokens.store.inner
    # The grants' database, and on SQLite the rate table's file beside it.
    engines = {getattr(inner, name, None) for name in ("engine", "rate_engine")} - {None}
    statements = [0]
    import sqlalchemy as sa

    def count(*_: Any) -> None:
        statements[0] += 1

    for engine in engines:
        sa.event.listen(engine, "before_cursor_execute", count)
    before = _redis_calls(store)
    for _ in range(requests):
        assert client.get("/spark").status_code == 200
    after = _redis_calls(store)
    for engine in engines:
        sa.event.remove(engine, "before_cursor_execute", count)
    delta = {k: v - before.get(k, 0) for k, v in after.items()}
    sessions = delta.get("get", 0) + delta.get("set", 0)
    scripts = delta.get("evalsha", 0) + delta.get("eval", 0)
    grants = statements[0] if engines else scripts
    return sessions / requests, grants / requests


def run(control: Any, redis_server: RedisServer, rounds: int, calls: int) -> None:
    store = redis.Redis.from_url(redis_server.url, decode_responses=True)
    ca_file = control.ca_file()
    client_id, client_secret = control.client()
    sqlite_dir = Path(tempfile.mkdtemp(prefix="flask-spark-bench-"))
    stores = {"Redis": None, "SQLite": f"sqlite:///{sqlite_dir / 'grants.sqlite3'}"}
    postgres = _postgres_url()
    if postgres is not None:
        stores["PostgreSQL"] = postgres
    # Its own key prefix: a second sign-in to the same store would replace (and revoke)
    # the grant the raw and Authlib views borrow their token from.
    stores["Redis, no rate budget"] = f"{redis_server.url}?prefix=nobudget:"
    apps: dict[str, tuple[Flask, FlaskClient]] = {}
    for name, url in stores.items():
        # The rate budget as by default (counted before each call), with a limit these
        # thousands of calls never reach; one app without it, to show what it costs.
        extra = {"SPARK_RATE_LIMIT": None} if "no rate budget" in name else {}
        app, shared = build_app(control, redis_server.url, url, **extra)
        client = app.test_client()
        sign_in(client, control)
        shared["access_token"] = _grant_token(app, client)  # for the raw and Authlib views
        apps[name] = (app, client)
    app, client = apps["Redis"]
    cookie = client.get_cookie("session")
    assert cookie is not None

    variants: dict[str, Callable[[], Any]] = {"raw": lambda: client.get("/raw")}
    for name, (_, store_client) in apps.items():
        variants[f"spark {name}"] = lambda c=store_client: c.get("/spark")
    variants["authlib"] = lambda: client.get("/authlib")
    for fn in variants.values():  # warm up every path and pool
        for _ in range(20):
            assert fn().status_code == 200
    # Each round makes one call to every variant, in a shuffled order, so that the
    # machine's drift (a busy neighbour, a frequency change) weighs on all of them alike.
    results: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants.items())
    shuffle = random.Random(0).shuffle  # noqa: S311 - an order, not a secret
    for _ in range(rounds):
        shuffle(order)
        for name, fn in order:
            start = time.perf_counter()
            fn()
            results[name].append(time.perf_counter() - start)
    floor = statistics.median(results["raw"])

    print(f"\nOne API call inside a Flask request ({rounds} rounds of one call each, median)")
    print(f"  {'variant':<40}{'per call':>12}{'vs raw':>10}")
    labels = {"raw": "raw keep-alive floor (urllib3)", "authlib": "Authlib Flask client"}
    for name in variants:
        label = labels.get(name, f"Flask-Spark spark_api, grants in {name[6:]}")
        value = statistics.median(results[name])
        print(f"  {label:<40}{value * 1e6:>9.0f} us{value / floor:>9.2f}x")

    print("\nStore round trips of one request to a spark_api view (mean of 100)")
    print(f"  {'grants in':<40}{'session store':>14}{'grant store':>13}")
    for name, (store_app, store_client) in apps.items():
        sessions, grants = round_trips(store_app, store_client, store)
        print(f"  {name:<40}{sessions:>14.2f}{grants:>13.2f}")

    logins = [sign_in(app.test_client(), control) for _ in range(50)]
    grants_ms = [grant_latency(control, client_id, client_secret) for _ in range(50)]
    login_ms, grant_ms = statistics.median(logins) * 1e3, statistics.median(grants_ms) * 1e3
    print("\nSign-in round trip (/login + platform + /callback, median of 50)")
    print(f"  {'sign-in round trip':<40}{login_ms:>9.2f} ms")
    print(f"  {'grant endpoint alone':<40}{grant_ms:>9.2f} ms")
    print(f"  {'ratio':<40}{login_ms / grant_ms:>9.2f}x")

    single = []
    for _ in range(20):
        single.extend(storm(app, cookie.value, control, 1))
    one = statistics.median(single)
    print("\nRefresh storm in one process (one session, expired token, released together)")
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

    compression(app, client, control.ca_file(), calls=max(20, calls // 10))
    replication(control, redis_server, ca_file, records=10_000)

    gunicorn_storm(control, redis_server, grant_ms / 1e3)
    rate_budget(control, redis_server)

    [owner] = store.keys("spark:g:*")
    # SAMPLES 0: every field counted (Redis estimates a large hash from 5 by default).
    grant_bytes = store.memory_usage(owner, samples=0) or 0
    session_bytes = store.memory_usage(f"session:{cookie.value}", samples=0) or 0
    print("\nRedis memory (MEMORY USAGE)")
    print(f"  {'one stored grant (hash)':<40}{grant_bytes:>9} bytes")
    print(f"  {'its session blob':<40}{session_bytes:>9} bytes")
    store.close()
    for store_app, _ in apps.values():
        store_app.extensions["bench.spark"].close(store_app)
        store_app.config["SESSION_REDIS"].close()
    shutil.rmtree(sqlite_dir, ignore_errors=True)


def compression(app: Flask, client: FlaskClient, ca_file: str, calls: int) -> None:
    """One 25-listing page with its photos (``_expand=Photos``), as gzip and as plain JSON:
    bytes on the wire, and the time of the call read and parsed (urllib3 on one keep-alive
    connection), side by side."""
    token = _grant_token(app, client)
    url = f"{app.config['SPARK_API_URL']}/v1/listings?_limit=25&_expand=Photos"
    pool = urllib3.PoolManager(ca_certs=ca_file, retries=False)
    rows = {}
    for name, encoding in (("gzip", "gzip, deflate"), ("plain", "identity")):
        headers = {
            "Authorization": f"OAuth {token}",
            "X-SparkApi-User-Agent": USER_AGENT,
            "Accept-Encoding": encoding,
        }

        def fetch(headers: dict[str, str] = headers) -> int:
            reply = pool.request("GET", url, headers=headers, preload_content=False)
            wire = reply.read(decode_content=False)
            body = wire if reply.headers.get("Content-Encoding") is None else _decoded(wire)
            assert len(json.loads(body)["D"]["Results"]) == 25
            reply.release_conn()
            return len(wire)

        size = fetch()
        seconds = statistics.median(per_call(fetch, calls) for _ in range(5))
        rows[name] = (size, seconds)
    pool.clear()
    plain_size = rows["plain"][0]
    print("\nA 25-listing page with _expand=Photos, compressed and not (bytes, median call)")
    print(f"  {'answer':<40}{'bytes':>10}{'vs plain':>10}{'per call':>12}")
    for name, (size, seconds) in rows.items():
        label = "gzip (what spark_api asks for)" if name == "gzip" else "uncompressed"
        ratio = size / plain_size
        print(f"  {label:<40}{size:>10}{ratio:>9.2f}x{seconds * 1e6:>9.0f} us")


def _decoded(wire: bytes) -> bytes:
    import gzip

    return gzip.decompress(wire)


def replication(control: Any, redis_server: RedisServer, ca_file: str, records: int) -> None:
    """``spark_api.replicate`` of ``records`` listings: records per second, calls made."""
    control.set_replication_records(records)
    app, _ = build_app(control, redis_server.url, SPARK_REPLICATION_URL=control.replication_url())
    result: dict[str, float] = {}

    @app.get("/replicate")
    def run() -> Any:
        start = time.perf_counter()
        copy = spark_api.replicate("/listings")
        count = sum(1 for _ in copy)
        result.update(seconds=time.perf_counter() - start, count=count, calls=copy.calls)
        return "ok"

    client = app.test_client()
    sign_in(client, control)
    assert client.get("/replicate").status_code == 200
    control.set_replication_records(57)
    print(f"\nReplication of {records} listings (spark_api.replicate, pages of 1,000)")
    print(f"  {'records':<16}{'calls':>8}{'seconds':>10}{'records/s':>12}")
    rate = result["count"] / result["seconds"]
    count, calls = int(result["count"]), int(result["calls"])
    print(f"  {count:<16}{calls:>8}{result['seconds']:>10.2f}{rate:>12.0f}")
    app.extensions["bench.spark"].close(app)


def portal_env(control: Any, redis_server: RedisServer, **extra: Any) -> dict[str, str]:
    """The environment of ``tests.portal_app`` on gunicorn, pointed at the simulator and
    the benchmark's Redis; ``extra`` keys become ``FLASK_<key>`` (as JSON)."""
    client_id, client_secret = control.client()
    env = {
        "FLASK_SECRET_KEY": "bench",
        "FLASK_SPARK_CLIENT_ID": client_id,
        "FLASK_SPARK_CLIENT_SECRET": client_secret,
        "FLASK_SPARK_PLATFORM_URL": control.url(),
        "FLASK_SPARK_API_URL": control.url(),
        "FLASK_SPARK_CA_CERTS": control.ca_file(),
        "FLASK_SPARK_USER_AGENT": USER_AGENT,
        "PORTAL_REDIS_URL": redis_server.url,
    }
    env.update({f"FLASK_{key}": json.dumps(value) for key, value in extra.items()})
    return env


#: Bursts of each kind in the gunicorn storm, alternating: the p99 of 2,000 requests is
#: their 20th slowest, not the 3rd of 250, so a few scheduling hiccups do not decide it.
STORM_ROUNDS = 40


def expiry_due_at(due: float, obtained_at: float) -> float:
    """The ``expires_at`` that makes a grant obtained at ``obtained_at`` due for its
    refresh at ``due``: Flask-Spark refreshes ``min(leeway, life / 2)`` before expiry."""
    from flask_spark.config import DEFAULT_TOKEN_LEEWAY

    if due - obtained_at >= DEFAULT_TOKEN_LEEWAY:
        return due + DEFAULT_TOKEN_LEEWAY
    return 2 * due - obtained_at


def gunicorn_storm(control: Any, redis_server: RedisServer, refresh_seconds: float) -> None:
    """50 requests of one session on gunicorn (3 workers x 8 threads, grants in Redis),
    released together: with a fresh token; right after it expired (the platform and the
    stored grant agree it has, as when its ``expires_in`` runs out); and after an
    unannounced expiry (the platform alone, so every call is first answered 1020)."""
    from tests.gunicorn_server import GunicornServer
    from tests.http_browser import CookieBrowser

    env = portal_env(control, redis_server, SPARK_RATE_LIMIT=UNREACHED_LIMIT)
    server = GunicornServer(env, workers=3, threads=8)
    control.register_redirect_uri(f"{server.url}/callback")
    server.start()
    try:
        http = urllib3.PoolManager(ca_certs=control.ca_file(), maxsize=64, retries=False)
        browser = CookieBrowser(http)
        browser.sign_in(server.url)
        headers = {"Cookie": f"session={browser.cookie}"}
        urls = [f"{server.url}/account"] * 50
        for _ in range(2):  # warm every worker's pools
            timed_burst(http, urls, headers)
        grants = redis.Redis.from_url(redis_server.url)
        [grant_key] = grants.keys("spark:g:*")
        fresh: list[float] = []
        expired: list[float] = []
        unannounced: list[float] = []
        before = control.stats()["refreshes"]
        for _ in range(STORM_ROUNDS):
            # The token falls due in a moment: the stored grant is given an expiry that
            # makes it due then (a change every worker's memory follows at once), and an
            # untimed burst reads it everywhere, so that the timed ones find it in memory
            # as they would a grant nearing its natural expiry.
            due = time.time() + 0.8
            obtained = float(grants.hget(grant_key, "obtained_at") or 0)
            grants.hset(grant_key, "expires_at", repr(expiry_due_at(due, obtained)))
            timed_burst(http, urls, headers)
            fresh.extend(timed_burst(http, urls, headers))
            time.sleep(max(0.0, due - time.time()) + 0.01)  # until it is due, not "long enough"
            control.expire_all()  # the platform agrees that it has expired
            expired.extend(timed_burst(http, urls, headers))
            control.expire_all()  # and now without warning: every call gets 1020 first
            unannounced.extend(timed_burst(http, urls, headers))
        refreshes = control.stats()["refreshes"] - before
        grants.close()
        http.clear()
    finally:
        server.stop()
    fresh_p99, expired_p99 = percentile(fresh, 99) * 1e3, percentile(expired, 99) * 1e3
    budget = fresh_p99 + refresh_seconds * 1e3 + 20
    print(
        "\nRefresh storm on gunicorn (3 workers x 8 threads, 50 requests of one session, "
        f"{STORM_ROUNDS} rounds)"
    )
    print(f"  {'p99 with a fresh token':<40}{fresh_p99:>9.2f} ms")
    print(f"  {'p99 right after expiry':<40}{expired_p99:>9.2f} ms")
    print(f"  {'budget: fresh p99 + refresh + 20 ms':<40}{budget:>9.2f} ms")
    late_p99 = percentile(unannounced, 99) * 1e3
    print(f"  {'p99 after an unannounced expiry (1020)':<40}{late_p99:>9.2f} ms")
    print(f"  {'refreshes at the platform':<40}{refreshes:>9}/{2 * STORM_ROUNDS}")


def rate_budget(
    control: Any,
    redis_server: RedisServer,
    limit: int = 200,
    window: float = 10.0,
    seconds: float = 60.0,
) -> None:
    """3 gunicorn workers x 8 threads (grants in Redis) offered twice the simulator's rate
    limit for 60 s, each request one API call: with the shared rate budget and without."""
    from tests.gunicorn_server import GunicornServer
    from tests.http_browser import CookieBrowser

    rate = 2 * limit / window
    control.set_rate_limit(limit, window)
    rows = []
    for label, budget in (("without the budget", None), ("with the shared budget", limit)):
        env = portal_env(control, redis_server, SPARK_RATE_LIMIT=budget, SPARK_RATE_WINDOW=window)
        server = GunicornServer(env, workers=3, threads=8)
        control.register_redirect_uri(f"{server.url}/callback")
        time.sleep(window + 1)  # the platform's window empties of earlier calls
        server.start()
        try:
            http = urllib3.PoolManager(ca_certs=control.ca_file(), maxsize=256, retries=False)
            browser = CookieBrowser(http)
            browser.sign_in(server.url)
            before = control.stats()
            started = time.time()
            statuses = offered_load(
                http,
                f"{server.url}/account",
                {"Cookie": f"session={browser.cookie}"},
                rate,
                seconds,
            )
            after = control.stats()
            http.clear()
        finally:
            server.stop()
        # What the platform served while the load was offered (requests still queued
        # in gunicorn afterwards are answered later, and not counted here).
        served = control.served_between(started, started + seconds)
        refused = after["rate_limited"] - before["rate_limited"]
        rows.append(
            (label, len(statuses), statuses.count(200), statuses.count(503), refused, served)
        )
    control.set_rate_limit(None, 300.0)
    allowed = limit / window
    print(
        f"\nRate limit on gunicorn (3 workers x 8 threads, {rate:.0f} requests/s offered for "
        f"{seconds:.0f} s against a limit of {limit} per {window:.0f} s = {allowed:.0f}/s)"
    )
    print(
        f"  {'':<24}{'sent':>6}{'200':>6}{'503':>6}{'429s at the platform':>22}"
        f"{'platform served/s':>19}"
    )
    for label, sent, ok, failed, refused, served in rows:
        per_second = served / seconds
        print(
            f"  {label:<24}{sent:>6}{ok:>6}{failed:>6}{refused:>22}"
            f"{per_second:>10.1f} ({per_second / allowed:.0%})"
        )


def offered_load(
    http: urllib3.PoolManager, url: str, headers: dict[str, str], rate: float, seconds: float
) -> list[int]:
    """Requests started at ``rate`` a second for ``seconds`` whatever the answers take
    (an open loop, as visitors arrive); the status of each."""
    from concurrent.futures import ThreadPoolExecutor

    def get() -> int:
        return int(http.request("GET", url, headers=headers, redirect=False).status)

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=256) as pool:
        futures = []
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(get))
        return [future.result() for future in futures]


def timed_burst(
    http: urllib3.PoolManager, urls: list[str], headers: dict[str, str]
) -> list[float]:
    """One request per URL from as many threads, released together; their latencies."""
    barrier = threading.Barrier(len(urls))
    latencies: list[float] = []
    lock = threading.Lock()

    def hit(url: str) -> None:
        barrier.wait()
        start = time.perf_counter()
        status = http.request("GET", url, headers=headers, redirect=False).status
        elapsed = time.perf_counter() - start
        assert status == 200, status
        with lock:
            latencies.append(elapsed)

    threads = [threading.Thread(target=hit, args=(u,)) for u in urls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


if __name__ == "__main__":
    main()
