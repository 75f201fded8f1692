"""Store failures under real gunicorn workers: a Sentinel failover right at an expiry, and
a Redis Cluster master killed, on both sign-in flows. Nobody is signed out, no refresh
token is rejected, no request waits past the lease plus a second, and no page is a 500."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pytest
import urllib3

from flask_spark.stores.base import GrantKey, state_digest
from flask_spark.testing import ACCOUNTS, Fault, SparkPlatform

from .gunicorn_server import GunicornServer, portal_env
from .http_browser import CookieBrowser
from .redis_server import RedisServer
from .store_fixtures import clean_store_url
from .topologies import ClusterTopology, SentinelTopology, admin, command

pytestmark = pytest.mark.slow

#: The refresh lease in these tests: longer than a failover, short enough to bound waits.
LEASE_SECONDS = 8.0

#: Each sign-in flow, with where it gives an unstored grant back.
REVOKE_PATHS = {"oauth2": "/v1/oauth2/token/", "openid": "/openid/revoke"}


def start(
    platform: SparkPlatform,
    redis_server: RedisServer,
    store_url: str,
    running: list[GunicornServer],
    flow: str = "oauth2",
) -> GunicornServer:
    env = portal_env(
        platform,
        redis_server,
        SPARK_GRANT_STORE=store_url,
        SPARK_AUTH_FLOW=flow,
        SPARK_REFRESH_LEASE_SECONDS=LEASE_SECONDS,
        SPARK_TIMEOUT=2,
    )
    server = GunicornServer(env, workers=3, threads=8)
    platform.register_client(
        platform.client_id, platform.client_secret, (f"{server.url}/callback",)
    )
    server.start()
    running.append(server)
    return server


def timed_requests(
    browsers: list[CookieBrowser], url: str
) -> tuple[Callable[[], list[tuple[int, float]]], threading.Event]:
    """Send one request per browser from as many threads once the returned event is set;
    the returned function joins them and gives each ``(status, seconds)``."""
    go = threading.Event()
    results: list[tuple[int, float]] = []
    lock = threading.Lock()

    def hit(browser: CookieBrowser) -> None:
        go.wait()
        started = time.monotonic()
        status = browser.get(url).status
        with lock:
            results.append((status, time.monotonic() - started))

    threads = [threading.Thread(target=hit, args=(b,)) for b in browsers]
    for t in threads:
        t.start()

    def join() -> list[tuple[int, float]]:
        for t in threads:
            t.join(60)
        return results

    return join, go


@pytest.mark.parametrize("flow", list(REVOKE_PATHS))
@pytest.mark.parametrize("fault", ["kill", "failover"])
def test_a_sentinel_failover_at_expiry_signs_nobody_out(
    request: pytest.FixtureRequest,
    spark_platform: SparkPlatform,
    redis_server: RedisServer,
    http: urllib3.PoolManager,
    servers: list[GunicornServer],
    fault: str,
    flow: str,
) -> None:
    topology: SentinelTopology = request.getfixturevalue("sentinel_topology")
    store_url = clean_store_url(request, "sentinel")
    server = start(spark_platform, redis_server, store_url, servers, flow)
    browsers = [CookieBrowser(http) for _ in range(10)]
    accounts = [ACCOUNTS[i % len(ACCOUNTS)]["Id"] for i in range(len(browsers))]
    for browser, account in zip(browsers, accounts, strict=True):
        browser.sign_in(server.url, user=account)

    spark_platform.expire_all()
    spark_platform.add_fault(Fault("grant", "delay", delay=0.3, count=None))
    join, go = timed_requests(browsers * 2, f"{server.url}/account")
    go.set()
    time.sleep(0.15)  # the fault lands while the refreshes are at the platform
    old = topology.kill_primary() if fault == "kill" else topology.failover()
    topology.wait_for_new_primary(old)
    during = join()
    spark_platform.clear_faults()
    if fault == "kill":
        topology.restart_killed()

    assert {status for status, _ in during} <= {200, 503}
    assert max(seconds for _, seconds in during) <= LEASE_SECONDS + 1
    after = [signed_in_as(browser, server.url) for browser in browsers]
    assert after == [(account, 200) for account in accounts]  # nobody signed out
    assert spark_platform.stats.rejected_refreshes == 0


def signed_in_as(browser: CookieBrowser, base: str) -> tuple[str | None, int]:
    """Who the browser is signed in as, and what its ``/account`` answers, once the store
    answers again: a worker's first request after a failover may still find a connection
    to the old primary (a 503 with ``Retry-After``, which a user would retry)."""
    for _ in range(5):
        who = browser.get(f"{base}/whoami")
        if who.status == 503:
            continue
        assert who.status == 200
        account = browser.get(f"{base}/account")
        if account.status == 503:
            continue
        return who.json()["account"], account.status
    raise AssertionError("the store never answered again")


def _slot_owner(cluster: ClusterTopology, key: str) -> int:
    """The port of the master serving ``key``'s hash slot."""
    with admin(cluster.master_ports[0]) as client:
        slot = int(command(client, "CLUSTER", "KEYSLOT", key))
        for first, last, owner, *_ in command(client, "CLUSTER", "SLOTS"):
            if int(first) <= slot <= int(last):
                return int(owner[1])
    raise AssertionError(f"no master serves slot {slot}")


@pytest.mark.parametrize("flow", list(REVOKE_PATHS))
def test_a_killed_cluster_master_gives_503_never_500(
    request: pytest.FixtureRequest,
    spark_platform: SparkPlatform,
    redis_server: RedisServer,
    http: urllib3.PoolManager,
    servers: list[GunicornServer],
    flow: str,
) -> None:
    cluster: ClusterTopology = request.getfixturevalue("cluster_topology")
    store_url = clean_store_url(request, "cluster")
    # Only the dead master's slots stop answering; the others go on.
    for port in cluster.master_ports:
        with admin(port) as client:
            command(client, "CONFIG", "SET", "cluster-require-full-coverage", "no")
    try:
        server = start(spark_platform, redis_server, store_url, servers, flow)
        agent = ACCOUNTS[0]["Id"]
        signed_in = CookieBrowser(http)
        signed_in.sign_in(server.url, user=agent)
        grant_key = GrantKey(spark_platform.client_id, agent, "idx")
        victim = _slot_owner(cluster, f"spark:g:{{{grant_key.id}}}")

        # A second browser of the agent at the consent page, whose pending sign-in is on
        # a master that stays up.
        late = CookieBrowser(http)
        for _ in range(50):
            late.cookie = None
            location = late.start_login(server.url)
            oauth_state = parse_qs(urlsplit(location).query)["state"][0]
            pending = "spark:p:" + state_digest(f"{oauth_state}\x00{late.cookie}")
            if _slot_owner(cluster, pending) != victim:
                break
        callback = late.authorize(location, user=agent)

        index = cluster.master_ports.index(victim)
        cluster.kill_master(index)
        revoked = spark_platform.stats.revocations
        answer = late.get(callback)  # exchanged, but the grant cannot be stored
        assert answer.status == 503
        assert b"storage is unavailable" in answer.data
        assert spark_platform.stats.code_exchanges == 2
        assert spark_platform.stats.revocations == revoked + 1  # given back
        assert spark_platform.requests_for("revoke")[-1].path.startswith(REVOKE_PATHS[flow])

        statuses = [
            signed_in.get(f"{server.url}{path}").status
            for path in ("/account", "/whoami", "/", "/login", "/visit")
        ]
        statuses.append(
            signed_in.request(
                "POST", f"{server.url}/logout", headers={"Origin": server.url}
            ).status
        )
        assert 500 not in statuses
        assert statuses[:2] == [503, 503]
    finally:
        cluster.restart_killed()  # empty: without replicas, that master's keys are gone
        for port in cluster.master_ports:
            with admin(port) as client:
                command(client, "CONFIG", "SET", "cluster-require-full-coverage", "yes")
    again = CookieBrowser(http)
    again.sign_in(server.url, user=agent)  # the cluster serves sign-ins again
    assert again.get(f"{server.url}/account").status == 200
