"""How a process learns that bindings or grants changed elsewhere
(:class:`~flask_spark.stores.base.ChangeWatch`), so that it can serve what it read from
memory until they do: an SQLite file's WAL index (or ``data_version``), and Redis's client
tracking.

Each watch says ``None`` whenever it cannot vouch for what it saw (not connected yet, a
connection lost, a forked child): every request then reads the store, as without one.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis import Redis
    from redis.client import PubSub

__all__ = ["RedisWatch", "SQLiteWatch"]


#: SQLite's unix VFS keeps a WAL-mode file's WAL index in ``<file>-shm``. It begins with
#: two copies of a 48-byte header, which every commit rewrites (the second copy first),
#: and whose first field is the index format's version ("The WAL-Index Header" in
#: https://www.sqlite.org/walformat.html).
_WAL_INDEX_HEADER = 48
_WAL_INDEX_FORMAT = 3007000

# Descriptors of -shm files, one per file (device and inode) and process, never closed:
# closing any descriptor of a file releases every POSIX lock the process holds on it,
# which would take away the locks SQLite's own connections of this process hold there.
# (One of a file that was deleted and made anew, which no connection can use any more,
# is closed.) Kept through a fork: a descriptor is as good in the child.
_shm_lock = threading.Lock()
_shm_files: dict[str, int] = {}


def _wal_index(path: str) -> int | None:
    """A descriptor to read the WAL index header of the SQLite file ``path`` with, or
    ``None`` when there is none to read (not in WAL mode, another VFS, another
    system)."""
    if not hasattr(os, "pread"):  # pragma: no cover - POSIX has it
        return None
    shm = f"{path}-shm"
    with _shm_lock:
        try:
            now = os.stat(shm)
        except OSError:
            return None
        fd = _shm_files.get(shm)
        if fd is not None:
            held = os.fstat(fd)
            if (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino):
                return fd
            os.close(fd)  # of a file that is gone: no lock of any connection is on it
            del _shm_files[shm]
        try:
            fd = os.open(shm, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return None
        _shm_files[shm] = fd
        return fd


class SQLiteWatch:
    """Tells when any connection, of this process or another, commits to an SQLite
    file: from the header of its WAL index, which every commit rewrites, else from the
    file's ``data_version``.

    The header is what SQLite's own readers look at to learn of a commit: reading it
    costs one ``pread`` of 96 bytes, where ``PRAGMA data_version`` runs a statement and
    takes the WAL's read locks (measured between requests: about 10 microseconds against
    35). It is used only while a connection of this watch holds the file open,
    so SQLite can neither remove the index nor make it anew; a header in the middle of
    a commit (its two copies differ) tells nothing, and the request reads the store.

    Coarse: any commit, of any table, counts as a change.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._epoch = 0  # a new connection numbers its versions anew
        self._shm: int | None = None

    def __repr__(self) -> str:
        return "<SQLiteWatch>"

    def version(self) -> tuple[int, int] | None:
        with self._lock:
            try:
                if self._conn is None or self._pid != os.getpid():
                    # A connection inherited through fork is left alone, never used.
                    self._conn = sqlite3.connect(
                        self._path, check_same_thread=False, isolation_level=None
                    )
                    self._pid = os.getpid()
                    self._epoch += 1
                    # A first read: the connection now holds the file (and its WAL
                    # index) open for as long as it lives.
                    self._conn.execute("PRAGMA data_version").fetchone()
                    self._shm = self._header_source()
                if self._shm is not None:
                    header = os.pread(self._shm, 2 * _WAL_INDEX_HEADER, 0)
                    if header[:_WAL_INDEX_HEADER] != header[_WAL_INDEX_HEADER:]:
                        return None  # a commit is writing it
                    return self._epoch, int.from_bytes(header[:_WAL_INDEX_HEADER], "little")
                (value,) = self._conn.execute("PRAGMA data_version").fetchone()
            except (sqlite3.Error, OSError):
                self._conn = None
                return None
            return self._epoch, int(value)

    def _header_source(self) -> int | None:
        """The WAL index to read headers from, if this file has one SQLite is using."""
        assert self._conn is not None
        (mode,) = self._conn.execute("PRAGMA journal_mode").fetchone()
        if str(mode).lower() != "wal":
            return None
        fd = _wal_index(self._path)
        if fd is None:
            return None
        header = os.pread(fd, 2 * _WAL_INDEX_HEADER, 0)
        first = header[:_WAL_INDEX_HEADER]
        if (
            len(header) < 2 * _WAL_INDEX_HEADER
            or int.from_bytes(first[:4], sys.byteorder) != _WAL_INDEX_FORMAT
            or not first[12]  # isInit
        ):
            return None
        return fd

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
            self._shm = None


#: The connection settings a watch connection copies from the store's client.
_COPIED = (
    "host",
    "port",
    "path",
    "db",
    "username",
    "password",
    "credential_provider",
    "socket_connect_timeout",
    "ssl_keyfile",
    "ssl_certfile",
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_ca_data",
    "ssl_ca_path",
    "ssl_check_hostname",
    "ssl_password",
    "ssl_min_version",
    "ssl_ciphers",
)


class RedisWatch:
    """Redis's server-assisted client tracking, in broadcasting mode: a connection of
    its own asks Redis (``CLIENT TRACKING ON REDIRECT <itself> BCAST PREFIX ...``) to
    tell it of every change to a key under the given prefixes, and subscribes to
    ``__redis__:invalidate``, where Redis sends those messages. Each :meth:`version`
    reads what arrived without waiting: every message counts as a change.

    Redis queues the message to this connection as it runs the write, before it answers
    the writer; so a request that follows a sign-out or a refresh made elsewhere finds
    the message already here. The connection speaks RESP2, never retries (a reconnection
    would lose the tracking), and is asked for a ``PING`` after :attr:`ping_after`
    seconds of silence: with no answer :attr:`ping_after` seconds later, it is given up.
    After a failure, :attr:`retry_after` seconds pass before it connects again.
    """

    ping_after = 1.0
    retry_after = 1.0

    def __init__(self, client: Redis, prefixes: list[str]) -> None:
        pool = client.connection_pool
        self._connection_class = pool.connection_class
        self._settings = {k: v for k, v in pool.connection_kwargs.items() if k in _COPIED}
        self._prefixes = prefixes
        self._lock = threading.Lock()
        self._pubsub: PubSub | None = None
        self._pid = 0
        self._epoch = 0  # one per connection
        self._changes = 0
        self._heard_at = 0.0  # when the connection last sent something
        self._pinged_at: float | None = None
        self._failed_at = -float("inf")

    def __repr__(self) -> str:
        return "<RedisWatch>"

    def version(self) -> tuple[int, int] | None:
        # Briefly contended by the request threads; one that would wait longer (another
        # thread is connecting) reads the store instead.
        if not self._lock.acquire(timeout=0.05):
            return None
        try:
            return self._version()
        finally:
            self._lock.release()

    def _version(self) -> tuple[int, int] | None:
        from redis.exceptions import RedisError

        now = time.monotonic()
        if self._pubsub is None or self._pid != os.getpid():
            self._pubsub = None  # one inherited through fork is left alone
            if now - self._failed_at < self.retry_after:
                return None
            try:
                self._pubsub = self._connect()
            except (RedisError, OSError):
                self._failed(now)
                return None
            self._pid = os.getpid()
            self._epoch += 1
            self._heard_at, self._pinged_at = now, None
        pubsub = self._pubsub
        try:
            # Most requests find nothing: a look at the socket, before redis-py's reading.
            # (redis-py types the connection by its first value, None.)
            connection: Any = pubsub.connection
            while connection is not None and connection.can_read(timeout=0):
                if pubsub.get_message(timeout=0) is None:
                    break
                self._changes += 1
                self._heard_at, self._pinged_at = now, None
            if now - self._heard_at >= self.ping_after:
                if self._pinged_at is None:
                    pubsub.ping()
                    self._pinged_at = now
                elif now - self._pinged_at >= self.ping_after:
                    self._failed(now)  # silent: it may have missed changes
                    return None
        except (RedisError, OSError):
            self._failed(now)
            return None
        return self._epoch, self._changes

    def _connect(self) -> PubSub:
        from redis import ConnectionPool, Redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = Redis(
            connection_pool=ConnectionPool(
                connection_class=self._connection_class,
                protocol=2,  # tracking messages as pub/sub messages
                retry=Retry(NoBackoff(), 0),
                socket_timeout=2.0,
                **self._settings,
            )
        )
        pubsub: PubSub = client.pubsub()  # type: ignore[no-untyped-call, unused-ignore]
        try:
            # redis-py leaves these two untyped.
            pubsub.execute_command("CLIENT", "ID")  # type: ignore[no-untyped-call, unused-ignore]
            own_id = pubsub.parse_response()  # type: ignore[no-untyped-call, unused-ignore]
            arguments: list[Any] = ["CLIENT", "TRACKING", "ON", "REDIRECT", own_id, "BCAST"]
            for prefix in self._prefixes:
                arguments += ["PREFIX", prefix]
            pubsub.execute_command(*arguments)  # type: ignore[no-untyped-call, unused-ignore]
            pubsub.parse_response()  # type: ignore[no-untyped-call, unused-ignore]
            pubsub.subscribe("__redis__:invalidate")
            if pubsub.get_message(timeout=2) is None:  # the subscription's confirmation
                raise OSError("no answer from Redis")
        except BaseException:
            pubsub.close()
            raise
        return pubsub

    def _failed(self, now: float) -> None:
        if self._pubsub is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):  # it is being given up anyway
                self._pubsub.close()
        self._pubsub = None
        self._failed_at = now

    def close(self) -> None:
        with self._lock:
            self._failed(time.monotonic())
