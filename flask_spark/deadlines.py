"""A wall-clock deadline for each call to the platform, from connect to last byte.

urllib3's timeouts bound each socket operation: a server that sends one byte a second
never trips them. Here one watchdog thread per process holds the deadline of every call
in flight; when one passes, it shuts the call's socket down, so the blocked read returns
at once and the call fails as timed out. The connection classes below tell the watchdog
which socket the current thread's call is using; they change nothing else.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = ["POOL_CLASSES", "Deadline", "watch"]


class Deadline:
    """One call's deadline. :attr:`expired` tells whether the watchdog cut the call."""

    __slots__ = ("at", "done", "expired", "sock")

    def __init__(self, at: float) -> None:
        self.at = at
        # The socket itself, not the connection: http.client lets go of the socket of an
        # answer that closes the connection, while the body is still being read from it.
        self.sock: socket.socket | None = None
        self.done = False
        self.expired = False


class _Watchdog:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Deadline]] = []
        self._seq = itertools.count()
        self._pid = 0

    def add(self, deadline: Deadline) -> None:
        with self._cond:
            if self._pid != os.getpid():  # first use, or a forked child: no thread yet
                self._heap.clear()
                self._pid = os.getpid()
                threading.Thread(
                    target=self._run, name="flask-spark-deadlines", daemon=True
                ).start()
            heapq.heappush(self._heap, (deadline.at, next(self._seq), deadline))
            if self._heap[0][2] is deadline:
                self._cond.notify()

    def finish(self, deadline: Deadline) -> None:
        """The call is over: its socket must not be touched from now on."""
        with self._cond:
            deadline.done = True

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                _, _, deadline = heapq.heappop(self._heap)
                deadline.expired = True
                # Under the lock: ``finish`` (called before the connection goes back to
                # the pool) cannot slip in between, so only this call's socket is cut.
                _cut(deadline.sock)


def _cut(sock: socket.socket | None) -> None:
    if sock is not None:
        # The plain socket's shutdown, beneath TLS: the reader wakes up with EOF.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


_watchdog = _Watchdog()
_current = threading.local()


class watch:
    """``with watch(seconds) as deadline:``: the calls this thread makes inside are cut
    when ``seconds`` have passed. The body must release its connection only after the
    block ends."""

    def __init__(self, seconds: float) -> None:
        self.deadline = Deadline(time.monotonic() + seconds)

    def __enter__(self) -> Deadline:
        _current.deadline = self.deadline
        _watchdog.add(self.deadline)
        return self.deadline

    def __exit__(self, *exc: object) -> None:
        _watchdog.finish(self.deadline)
        _current.deadline = None


def _claim(conn: HTTPConnection) -> None:
    """Tell the current call's deadline which socket ``conn`` is using."""
    deadline: Deadline | None = getattr(_current, "deadline", None)
    if deadline is None:
        return
    if deadline.expired:
        raise TimeoutError("the call's deadline passed")
    sock = conn.sock
    if isinstance(sock, socket.socket):
        deadline.sock = sock


class _WatchedHTTPConnection(HTTPConnection):
    def connect(self) -> None:
        _claim(self)
        super().connect()
        _claim(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _claim(self)
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    """The same claims, made around TLS connections (``super()`` reaches
    :class:`HTTPSConnection` first)."""


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


#: For :attr:`urllib3.PoolManager.pool_classes_by_scheme`.
POOL_CLASSES: dict[str, type[HTTPConnectionPool]] = {
    "http": _WatchedHTTPPool,
    "https": _WatchedHTTPSPool,
}
