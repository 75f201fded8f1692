"""Fixtures for the grant stores: private servers per test session, a fresh database per
test module, and a clean store of every kind per test.

``tests/conftest.py`` makes them available everywhere with::

    from .store_fixtures import *  # noqa: F403

Servers start only when a test asks for them, so ``-k memory`` needs no Redis cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from flask_spark.sealing import SealedStore, Sealer
from flask_spark.stores import GrantKey, GrantStore, store_from_url
from flask_spark.stores.sql import SQLGrantStore

from .redis_server import RedisServer
from .topologies import ClusterTopology, SentinelTopology, TemporaryDatabase

#: Every kind of grant store, by test id.
STORE_KINDS = ("memory", "sqlite", "postgresql", "mariadb", "redis", "sentinel", "cluster")
#: The same protocol through the token sealer: plain tokens in, sealed ones in the store.
SEALED_KINDS = ("sealed-memory", "sealed-redis")
TEST_TOKEN_KEY = "flask-spark-tests-token-key-0123456789"
#: The kinds that need servers or topologies of their own: in the full suite only, not
#: in the quick profile (``-m "not slow"``), which tries memory, SQLite and Redis.
SERVER_KINDS = frozenset({"postgresql", "mariadb", "sentinel", "cluster"})


def store_param(kind: str) -> object:
    """``kind`` as a test parameter, marked slow when it needs servers of its own."""
    marks = (pytest.mark.slow,) if kind in SERVER_KINDS else ()
    return pytest.param(kind, id=kind, marks=marks)


@pytest.fixture(scope="session")
def sentinel_topology() -> Iterator[SentinelTopology]:
    """A primary, a replica and three sentinels, for the whole session. Tests that kill
    nodes call :meth:`~tests.topologies.SentinelTopology.restart_killed` when done."""
    topology = SentinelTopology()
    topology.start()
    yield topology
    topology.cleanup()


@pytest.fixture(scope="session")
def cluster_topology() -> Iterator[ClusterTopology]:
    """Three Redis Cluster masters, for the whole session."""
    topology = ClusterTopology()
    topology.start()
    yield topology
    topology.cleanup()


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """The URL of a new PostgreSQL database, dropped after the test module."""
    database = TemporaryDatabase("postgresql")
    yield database.url
    database.drop()


@pytest.fixture(scope="module")
def mariadb_url() -> Iterator[str]:
    """The URL of a new MariaDB database, dropped after the test module."""
    database = TemporaryDatabase("mariadb")
    yield database.url
    database.drop()


def _empty_tables(store: GrantStore) -> None:
    """Delete every row of every table in an SQL store's database, on its own (pooled)
    connection: a fresh database per module has no other tables."""
    assert isinstance(store, SQLGrantStore)
    with store.engine.begin() as conn:
        for name in sa.inspect(conn).get_table_names():
            conn.execute(sa.table(name).delete())


def _flush(ports: list[int]) -> None:
    """Empty the nodes on ``ports``; replicas among them (which refuse) follow their
    primaries."""
    for port in ports:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5.0)
        try:
            client.flushall()
        except redis.ReadOnlyError:
            pass
        finally:
            client.close()


def open_clean_store(request: pytest.FixtureRequest, kind: str) -> tuple[str, GrantStore]:
    """The URL of an empty grant store of ``kind`` (one of :data:`STORE_KINDS`) and a
    store built from it with ``store_from_url``. The servers it needs start through the
    fixtures above, asked for only now, so other kinds' servers stay off."""
    if kind.startswith("sealed-"):
        url, inner = open_clean_store(request, kind.removeprefix("sealed-"))
        return url, SealedStore(inner, Sealer([TEST_TOKEN_KEY]))
    if kind == "memory":
        url = "memory://"
    elif kind == "sqlite":
        tmp_path: Path = request.getfixturevalue("tmp_path")
        url = f"sqlite:///{tmp_path / 'grants.sqlite3'}"
    elif kind in ("postgresql", "mariadb"):
        url = request.getfixturevalue("postgres_url" if kind == "postgresql" else "mariadb_url")
        store = store_from_url(url)
        try:
            store.get(GrantKey("-", "-", "-"))  # creates the tables in a new database
            _empty_tables(store)
        except BaseException:
            store.close()
            raise
        return url, store
    elif kind == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        if server.process is None:  # a fault test stopped it
            server.start()
        _flush([server.port])
        url = server.url
    elif kind == "sentinel":
        sentinel: SentinelTopology = request.getfixturevalue("sentinel_topology")
        if sentinel.killed:
            sentinel.restart_killed()
        _flush([sentinel.current_primary()])
        url = sentinel.url
    elif kind == "cluster":
        cluster: ClusterTopology = request.getfixturevalue("cluster_topology")
        if not all(node.alive for node in cluster.nodes):
            cluster.restart_killed()
        _flush([node.port for node in cluster.nodes])
        url = cluster.url
    else:
        raise ValueError(f"no grant store kind {kind!r}; expected one of {STORE_KINDS}")
    return url, store_from_url(url)


def clean_store_url(request: pytest.FixtureRequest, kind: str) -> str:
    """The URL of an empty grant store of ``kind``, for code that builds its own stores
    (other processes, an app's configuration)."""
    url, store = open_clean_store(request, kind)
    store.close()
    return url


@pytest.fixture(params=[store_param(kind) for kind in STORE_KINDS + SEALED_KINDS])
def any_store(request: pytest.FixtureRequest) -> Iterator[GrantStore]:
    """An empty grant store of each kind in turn, built from its URL; closed afterwards."""
    _, store = open_clean_store(request, request.param)
    yield store
    store.close()


__all__ = [
    "any_store",
    "cluster_topology",
    "mariadb_url",
    "postgres_url",
    "sentinel_topology",
]
