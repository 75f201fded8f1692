"""Private Redis topologies and throwaway SQL databases for the grant-store tests.

- :class:`SentinelTopology`: a primary, a replica and three sentinels, so tests can kill
  the primary (or ask for a graceful failover) and watch a store follow the new one;
- :class:`ClusterTopology`: three masters sharing the 16384 hash slots, so tests can kill
  one and see commands fail;
- :class:`TemporaryDatabase`: a uniquely named database on the local PostgreSQL or
  MariaDB server, dropped afterwards.

Every Redis process listens on a free loopback port, keeps nothing on disk but its
configuration and log (in a temporary folder removed by ``cleanup()``), and comes up in a
few seconds or raises :class:`RuntimeError` naming its log file.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .redis_server import free_port

#: The Sentinel service name of :class:`SentinelTopology`.
SERVICE = "flask-spark"
#: Seconds a topology may take to come up (or to settle after a failover) before failing.
START_TIMEOUT = 15.0
#: Cluster hash slots.
SLOTS = 16384


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, log: Path | str | None = None
) -> None:
    """Poll ``check`` until it holds; after ``timeout`` seconds raise a RuntimeError saying
    ``what`` did not happen (and which log file to read). Redis errors count as "not yet"."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() >= deadline:
            where = f"; see {log}" if log is not None else ""
            raise RuntimeError(f"{what} within {timeout:g} s{where}")
        time.sleep(0.05)


@contextmanager
def admin(port: int) -> Iterator[redis.Redis]:
    """A short-lived, decoded client for one node (or sentinel) on ``port`` that tries
    each command once: callers poll, and a retry would only hide a dead node."""
    client = redis.Redis(
        host="127.0.0.1",
        port=port,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        decode_responses=True,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        yield client
    finally:
        client.close()


def command(client: redis.Redis, *args: Any) -> Any:
    """One raw command and its reply (redis-py leaves ``execute_command`` untyped)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def info_fields(reply: Any) -> dict[str, str]:
    """An ``INFO``/``CLUSTER INFO`` reply (text, or the dict redis-py parses it into) as a
    dict of strings."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    fields: dict[str, str] = {}
    for line in str(reply).splitlines():
        name, colon, value = line.strip().partition(":")
        if colon and not name.startswith("#"):
            fields[name] = value
    return fields


def _pairs(reply: Any) -> dict[str, str]:
    """A map reply (RESP3) or flat name/value list (RESP2) as a dict of strings."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    items = [str(v) for v in reply]
    return dict(zip(items[::2], items[1::2], strict=True))


class RedisNode:
    """One ``redis-server`` (or sentinel) process on a free loopback port, configured by a
    file in ``directory`` so that ``CONFIG REWRITE`` (which Sentinel sends) works."""

    def __init__(self, directory: Path, port: int, kind: str, config: list[str]) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed; see README.md")
        self.binary = binary
        self.port = port
        self.kind = kind
        self.config_file = directory / f"{kind}-{port}.conf"
        self.log = directory / f"{kind}-{port}.log"
        self.dump = directory / f"{kind}-{port}.rdb"
        self.base_config = [
            f"port {port}",
            "bind 127.0.0.1",
            "daemonize no",
            f"dir {directory}",
            f"logfile {self.log}",
            f"dbfilename {self.dump.name}",
            *config,
        ]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, extra: list[str] | None = None) -> None:
        """Start the process, empty, with the base configuration plus ``extra`` lines
        (such as ``replicaof``), and wait until it answers ``PING``."""
        self.dump.unlink(missing_ok=True)
        self.config_file.write_text("\n".join([*self.base_config, *(extra or [])]) + "\n")
        command = [self.binary, str(self.config_file)]
        if self.kind == "sentinel":
            command.append("--sentinel")
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        process = self.process

        def answers() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"{self.kind} on port {self.port} exited; see {self.log}")
            with admin(self.port) as client:
                return bool(client.ping())

        wait_until(
            answers, START_TIMEOUT, f"{self.kind} on port {self.port} did not answer", self.log
        )

    def terminate(self) -> None:
        """Ask the process to shut down, without waiting (see :meth:`stop`)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no goodbye to replicas, sentinels or cluster peers."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """Shut the process down and wait for it (SIGKILL after 10 s)."""
        self.terminate()
        if self.process is not None and self.process.poll() is None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None


def stop_all(nodes: list[RedisNode]) -> None:
    """Stop ``nodes``, all shutting down at once."""
    for node in nodes:
        node.terminate()
    for node in nodes:
        node.stop()


_DATA_NODE_CONFIG = [
    'save ""',
    "appendonly no",
    "repl-diskless-sync yes",
    "repl-diskless-sync-delay 0",
    "repl-diskless-load swapdb",
    "repl-timeout 5",
]


class SentinelTopology:
    """One primary, one replica and three sentinels (quorum 2) watching service
    :data:`SERVICE`, everything on loopback.

    Sentinels call a node down after 1.5 s without answers, so a killed primary is
    replaced within about 3 s; :meth:`restart_killed` brings killed nodes back as
    replicas, so a test can fail over again and again.
    """

    #: Not 1000: with a down-after no longer than Sentinel's 1 s ping period, sentinels
    #: now and then took a just-promoted primary for down and failed over again.
    down_after_ms = 1500
    failover_timeout_ms = 2000

    def __init__(self, service: str = SERVICE) -> None:
        self.service = service
        self.dir = Path(tempfile.mkdtemp(prefix="flask-spark-sentinel-"))
        primary, replica, *sentinels = free_ports(5)
        self.nodes = {
            port: RedisNode(self.dir, port, "redis", _DATA_NODE_CONFIG)
            for port in (primary, replica)
        }
        self.sentinel_ports = sentinels
        self.sentinels = [
            RedisNode(
                self.dir,
                port,
                "sentinel",
                [
                    "sentinel resolve-hostnames no",
                    f"sentinel monitor {service} 127.0.0.1 {primary} 2",
                    f"sentinel down-after-milliseconds {service} {self.down_after_ms}",
                    f"sentinel failover-timeout {service} {self.failover_timeout_ms}",
                    f"sentinel parallel-syncs {service} 1",
                ],
            )
            for port in sentinels
        ]
        self._first_primary = primary
        self.killed: list[int] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.service}"

    def start(self) -> None:
        """Start everything; return once all sentinels agree on the primary, know one
        another and the replica, and the replica is in sync."""
        try:
            primary = self._first_primary
            self.nodes[primary].start()
            for port, node in self.nodes.items():
                if port != primary:
                    node.start([f"replicaof 127.0.0.1 {primary}"])
            self._wait_replicas_in_sync(primary)
            for sentinel in self.sentinels:
                sentinel.start()
            self._wait_settled(primary)
        except BaseException:
            self.stop()  # the logs stay, for the error message that names one
            raise

    # -- what the sentinels say ----------------------------------------------------------

    def _sentinel_primary(self, port: int) -> int | None:
        with admin(port) as client:
            address = command(client, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        return int(address[1]) if address else None

    def current_primary(self) -> int:
        """The primary's port, as the first sentinel that answers says."""
        for sentinel in self.sentinels:
            if not sentinel.alive:
                continue
            try:
                port = self._sentinel_primary(sentinel.port)
            except redis.RedisError:
                continue
            if port is not None:
                return port
        raise RuntimeError(f"no sentinel names a primary; see the logs in {self.dir}")

    def _agreed_primary(self) -> int | None:
        ports = {self._sentinel_primary(s.port) for s in self.sentinels if s.alive}
        return ports.pop() if len(ports) == 1 else None

    def _role(self, port: int) -> dict[str, str]:
        with admin(port) as client:
            return info_fields(command(client, "INFO", "replication"))

    # -- waiting -------------------------------------------------------------------------

    def _wait_replicas_in_sync(self, primary: int) -> None:
        replicas = [p for p, node in self.nodes.items() if p != primary and node.alive]

        def in_sync() -> bool:
            for port in replicas:
                role = self._role(port)
                if role.get("role") != "slave" or role.get("master_port") != str(primary):
                    return False
                if role.get("master_link_status") != "up":
                    return False
            with admin(primary) as client:
                return int(command(client, "WAIT", len(replicas), 100)) >= len(replicas)

        wait_until(
            in_sync,
            START_TIMEOUT,
            f"the replicas of 127.0.0.1:{primary} did not get in sync",
            self.nodes[primary].log,
        )

    def _wait_settled(self, primary: int) -> None:
        """Every sentinel names ``primary``, sees the two other sentinels, and lists every
        live replica as reachable (so it could fail over to it). Whether a replica is in
        sync is asked of the nodes themselves: a sentinel refreshes what it knows of a
        replica only every 10 s."""
        replicas = {p for p, node in self.nodes.items() if p != primary and node.alive}

        def settled() -> bool:
            for sentinel in self.sentinels:
                if self._sentinel_primary(sentinel.port) != primary:
                    return False
                with admin(sentinel.port) as client:
                    master = _pairs(command(client, "SENTINEL", "MASTER", self.service))
                    listed = [
                        _pairs(item)
                        for item in command(client, "SENTINEL", "REPLICAS", self.service)
                    ]
                if master.get("flags") != "master":
                    return False
                if int(master.get("num-other-sentinels", 0)) < len(self.sentinels) - 1:
                    return False
                healthy = {
                    int(r["port"])
                    for r in listed
                    if set(r.get("flags", "").split(",")) == {"slave"}
                }
                if not replicas <= healthy:
                    return False
            return True

        wait_until(
            settled,
            START_TIMEOUT,
            f"the sentinels did not settle on 127.0.0.1:{primary}",
            self.sentinels[0].log,
        )

    # -- faults --------------------------------------------------------------------------

    def kill_primary(self) -> int:
        """SIGKILL the current primary; returns its port."""
        port = self.current_primary()
        self.nodes[port].kill()
        self.killed.append(port)
        return port

    def failover(self) -> int:
        """Ask a sentinel for a graceful failover; returns the old primary's port."""
        port = self.current_primary()
        with admin(self.sentinel_ports[0]) as client:
            command(client, "SENTINEL", "FAILOVER", self.service)
        return port

    def wait_for_new_primary(self, old_port: int, timeout: float = START_TIMEOUT) -> int:
        """Wait until every live sentinel names the same primary other than ``old_port``
        and that node says it is a primary; returns its port.

        An old primary still running (a graceful failover) is made a replica of the new
        one right away, and this waits until it is in sync, instead of leaving that to
        Sentinel's own, slower reconfiguration."""
        found: list[int] = []

        def promoted() -> bool:
            port = self._agreed_primary()
            if port is None or port == old_port or self._role(port).get("role") != "master":
                return False
            found.append(port)
            return True

        wait_until(
            promoted,
            timeout,
            f"the sentinels did not agree on a new primary after 127.0.0.1:{old_port}",
            self.sentinels[0].log,
        )
        primary = found[-1]
        old = self.nodes[old_port]
        if old.alive:
            with admin(old_port) as client:
                command(client, "REPLICAOF", "127.0.0.1", str(primary))
            self._wait_replicas_in_sync(primary)
            self._wait_settled(primary)
        return primary

    def restart_killed(self) -> None:
        """Start every killed node again, empty, as a replica of the current primary (once
        there is one), and wait until the topology is as healthy as after :meth:`start`."""
        primary = self.current_primary()
        if primary in self.killed:  # the sentinels have not replaced it yet
            primary = self.wait_for_new_primary(primary)
        for port in self.killed:
            self.nodes[port].start([f"replicaof 127.0.0.1 {primary}"])
        self.killed.clear()
        self._wait_replicas_in_sync(primary)
        self._wait_settled(primary)

    def stop(self) -> None:
        """Stop every process; the folder and its logs stay."""
        stop_all([*self.sentinels, *self.nodes.values()])

    def cleanup(self) -> None:
        """Stop every process and remove the folder."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class ClusterTopology:
    """Three masters (and ``replicas_per_master`` replicas each) sharing the hash slots.

    ``cluster-node-timeout`` is 1 s and full coverage is required, so a killed master
    takes the whole cluster to ``cluster_state:fail`` within a few seconds.
    """

    node_timeout_ms = 1000

    def __init__(self, masters: int = 3, replicas_per_master: int = 0) -> None:
        if masters < 3:
            raise ValueError("a cluster that can agree on a failure needs three masters")
        self.dir = Path(tempfile.mkdtemp(prefix="flask-spark-cluster-"))
        count = masters * (1 + replicas_per_master)
        ports = free_ports(2 * count)
        self.nodes = [
            RedisNode(
                self.dir,
                port,
                "cluster",
                [
                    *_DATA_NODE_CONFIG,
                    "cluster-enabled yes",
                    f"cluster-port {bus}",
                    f"cluster-config-file nodes-{port}.conf",
                    f"cluster-node-timeout {self.node_timeout_ms}",
                    "cluster-require-full-coverage yes",
                ],
            )
            for port, bus in zip(ports[:count], ports[count:], strict=True)
        ]
        #: Each node's cluster bus port, set explicitly: ``port + 10000`` may not be free.
        self.bus_ports = dict(zip(ports[:count], ports[count:], strict=True))
        self.masters = self.nodes[:masters]
        self.replicas = self.nodes[masters:]
        self.replicas_per_master = replicas_per_master

    @property
    def master_ports(self) -> list[int]:
        return [node.port for node in self.masters]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.master_ports)

    def start(self) -> None:
        """Start the nodes, give each master its share of the slots, introduce them and
        attach the replicas; return once every node says ``cluster_state:ok``."""
        try:
            for node in self.nodes:
                node.start()
            share = SLOTS // len(self.masters)
            for i, node in enumerate(self.masters):
                first = i * share
                last = SLOTS - 1 if i == len(self.masters) - 1 else first + share - 1
                with admin(node.port) as client:
                    command(client, "CLUSTER", "ADDSLOTSRANGE", first, last)
                    command(client, "CLUSTER", "SET-CONFIG-EPOCH", i + 1)
            with admin(self.masters[0].port) as client:
                for node in self.nodes[1:]:
                    command(
                        client,
                        "CLUSTER",
                        "MEET",
                        "127.0.0.1",
                        node.port,
                        self.bus_ports[node.port],
                    )
            self._wait_known()
            for i, node in enumerate(self.replicas):
                master = self.masters[i // self.replicas_per_master]
                with admin(master.port) as client:
                    master_id = command(client, "CLUSTER", "MYID")
                with admin(node.port) as client:
                    command(client, "CLUSTER", "REPLICATE", master_id)
            self.wait_for_state("ok")
        except BaseException:
            self.stop()  # the logs stay, for the error message that names one
            raise

    def _wait_known(self) -> None:
        def known() -> bool:
            for node in self.nodes:
                with admin(node.port) as client:
                    fields = info_fields(command(client, "CLUSTER", "INFO"))
                if int(fields.get("cluster_known_nodes", 0)) != len(self.nodes):
                    return False
            return True

        wait_until(known, START_TIMEOUT, "the cluster nodes did not meet", self.nodes[0].log)

    def cluster_state(self, port: int) -> str:
        """What the node on ``port`` says: ``ok`` or ``fail``."""
        with admin(port) as client:
            return info_fields(command(client, "CLUSTER", "INFO"))["cluster_state"]

    def wait_for_state(self, state: str, timeout: float = START_TIMEOUT) -> None:
        """Wait until every live node says ``cluster_state:<state>`` (and, for ``ok``,
        every live replica's link to its master is up)."""

        def reached() -> bool:
            live = [node for node in self.nodes if node.alive]
            if state == "ok" and any(self._link_down(node.port) for node in live):
                return False
            return all(self.cluster_state(node.port) == state for node in live)

        wait_until(
            reached, timeout, f"the cluster did not reach cluster_state:{state}", self.nodes[0].log
        )

    def _link_down(self, port: int) -> bool:
        with admin(port) as client:
            fields = info_fields(command(client, "INFO", "replication"))
        return fields.get("role") == "slave" and fields.get("master_link_status") != "up"

    def kill_master(self, index: int) -> int:
        """SIGKILL master ``index``; returns its port."""
        node = self.masters[index]
        node.kill()
        return node.port

    def restart_killed(self) -> None:
        """Start killed nodes again (empty, same node id and slots) and wait for ``ok``."""
        for node in self.nodes:
            if not node.alive:
                node.start()
        self.wait_for_state("ok")

    def stop(self) -> None:
        """Stop every node; the folder and its logs stay."""
        stop_all(self.nodes)

    def cleanup(self) -> None:
        """Stop every node and remove the folder."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


#: Where the local database servers listen, and as whom the tests connect.
DATABASE_SERVERS = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306",
}


class TemporaryDatabase:
    """A new, uniquely named database (``flask_spark_test_<random>``) on the local
    PostgreSQL or MariaDB server; :meth:`drop` removes it."""

    def __init__(self, kind: str) -> None:
        if kind not in DATABASE_SERVERS:
            raise ValueError(f"kind must be one of {sorted(DATABASE_SERVERS)}, not {kind!r}")
        self.kind = kind
        self.name = f"flask_spark_test_{secrets.token_hex(6)}"
        self.dropped = False
        with self._admin() as cursor:
            cursor.execute(f"CREATE DATABASE {self.name}")

    @property
    def url(self) -> str:
        return f"{DATABASE_SERVERS[self.kind]}/{self.name}"

    @contextmanager
    def _admin(self) -> Iterator[Any]:
        """An autocommit DB-API cursor on the server, outside the temporary database;
        the driver's errors become a RuntimeError naming the server."""
        if self.kind == "postgresql":
            import psycopg

            errors: tuple[type[Exception], ...] = (psycopg.Error, OSError)

            def connect() -> Any:
                return psycopg.connect(
                    host="127.0.0.1",
                    port=5432,
                    user="postgres",
                    dbname="postgres",
                    autocommit=True,
                    connect_timeout=5,
                )
        else:
            import pymysql  # type: ignore[import-untyped]

            errors = (pymysql.MySQLError, OSError)

            def connect() -> Any:
                return pymysql.connect(
                    host="127.0.0.1", port=3306, user="root", connect_timeout=5, autocommit=True
                )

        try:
            connection = connect()
            try:
                with connection.cursor() as cursor:
                    yield cursor
            finally:
                connection.close()
        except errors as exc:
            server = DATABASE_SERVERS[self.kind]
            raise RuntimeError(f"the {self.kind} server at {server} failed: {exc}") from exc

    def drop(self) -> None:
        """Drop the database, ending any connection still open to it first."""
        if self.dropped:
            return
        with self._admin() as cursor:
            if self.kind == "postgresql":
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    (self.name,),
                )
                cursor.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
            else:
                cursor.execute(
                    "SELECT id FROM information_schema.processlist"
                    " WHERE db = %s AND id <> CONNECTION_ID()",
                    (self.name,),
                )
                for (thread,) in cursor.fetchall():
                    with suppress(Exception):  # it may have ended by itself meanwhile
                        cursor.execute(f"KILL CONNECTION {int(thread)}")
                cursor.execute(f"DROP DATABASE IF EXISTS {self.name}")
        self.dropped = True

    def __enter__(self) -> TemporaryDatabase:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.drop()
