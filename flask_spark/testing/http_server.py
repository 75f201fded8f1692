"""The simulator's HTTP server: cheroot's WSGI server, set up for a test platform.

:func:`make_server` builds one; :class:`~flask_spark.testing.SimulatorServer` runs and
stops it. What it adds to cheroot, each through cheroot's documented extension points
(the gateway, connection class, thread pool and TLS adapter interfaces, ``error_log``):

- a thread for every open connection, however many, as Werkzeug's server had: a slow
  answer (a ``"delay"`` or ``"trickle"`` fault) never makes another client wait, and a
  keep-alive request goes straight to the thread waiting for it;
- the TLS handshake in that thread, not in the one that accepts connections, so a client
  that never finishes its handshake stalls nobody else;
- request heads read with the C :class:`io.BufferedReader` rather than cheroot's
  pure-Python one;
- answers written by :class:`~flask_spark.testing.gateway.Gateway`;
- no access log (request lines carry tokens) and no tracebacks: only debug lines on the
  ``flask_spark.testing`` logger, naming no more than an exception's type.
"""

from __future__ import annotations

import contextlib
import io
import logging
import queue
import selectors
import socket
import ssl
import threading
from typing import TYPE_CHECKING, Any

from cheroot.makefile import MakeFile
from cheroot.server import HTTPConnection
from cheroot.ssl import Adapter
from cheroot.wsgi import Server

from .gateway import Gateway, log_event

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["make_server"]

# A keep-alive connection is closed when its next request does not come within this many
# seconds, and a read or write that makes no progress for as long fails.
_TIMEOUT = 60
# How often the accepting thread looks up from its selector: the longest stop() waits
# for it.
_POLL_INTERVAL = 0.05


class _Received(socket.SocketIO):
    """A socket's raw reader that counts the bytes it received."""

    received = 0

    def readinto(self, b: Any) -> int | None:
        n = super().readinto(b)
        if n:
            self.received += n
        return n


class _Reader(io.BufferedReader):
    """cheroot's socket reader (``read``, ``readline``, ``has_data``) on the C
    :class:`io.BufferedReader` instead of cheroot's pure-Python one: reading a
    request's head line by line is much of what the server does for each request."""

    raw: _Received

    def __init__(self, sock: socket.socket, bufsize: int) -> None:
        super().__init__(_Received(sock, "rb"), bufsize)
        self.bytes_read = 0  # what has been read from it, by cheroot's name

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.bytes_read += len(data)
        return data

    def read1(self, size: int = -1) -> bytes:
        data = super().read1(size)
        self.bytes_read += len(data)
        return data

    def readline(self, size: int | None = -1) -> bytes:
        data = super().readline(size)
        self.bytes_read += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        n = super().readinto(buffer)
        self.bytes_read += n
        return n

    def readinto1(self, buffer: Any) -> int:
        n = super().readinto1(buffer)
        self.bytes_read += n
        return n

    def has_data(self) -> bool:
        """Whether bytes received are waiting in the buffer."""
        return self.raw.received > self.bytes_read


def _make_file(sock: socket.socket, mode: str = "r", bufsize: int = io.DEFAULT_BUFFER_SIZE) -> Any:
    """cheroot's ``makefile`` interface: the fast reader, or cheroot's writer."""
    return _Reader(sock, bufsize) if "r" in mode else MakeFile(sock, mode, bufsize)


class _Connection(HTTPConnection):
    """A connection that reads with :class:`_Reader`."""

    def __init__(self, server: Any, sock: socket.socket, makefile: Any = None) -> None:
        super().__init__(server, sock, _make_file)


class _Workers:
    """cheroot's thread pool interface (``min``, ``start``, ``put``, ``get``, ``stop``)
    with a thread for every open connection, as Werkzeug's server had: it serves the
    connection's requests one after another, waiting for the next one in between, so a
    keep-alive request goes straight to the thread that waits for it. Threads are reused
    when their connection closes, and a new one starts when none is free. Stopping shuts
    down every connection and joins every thread."""

    min = 1

    def __init__(self, server: _Server) -> None:
        self.server = server
        self._queue: queue.SimpleQueue[HTTPConnection | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._free = 0
        self._threads: list[threading.Thread] = []
        self._open: set[HTTPConnection] = set()
        self._stopping = False

    def start(self) -> None:
        """Threads start as connections come."""

    def get(self) -> HTTPConnection | None:
        """The next connection to serve (``None``: the thread is to end)."""
        return self._queue.get()

    def put(self, conn: HTTPConnection) -> None:
        """Serve ``conn`` (a new connection) in a free thread, or a new one."""
        with self._lock:
            if self._stopping:
                _close(conn)
                return
            self._open.add(conn)
            self._queue.put(conn)
            if self._free:
                self._free -= 1
                return
            thread = threading.Thread(
                target=self._run, name=f"{self.server.thread_name} worker", daemon=True
            )
            thread.start()  # under the lock, so that stop() can join it
            self._threads.append(thread)

    def _run(self) -> None:
        while (conn := self.get()) is not None:
            try:
                self._serve(conn)
            finally:
                _close(conn)
                with self._lock:
                    self._open.discard(conn)
                    self._free += 1

    def _serve(self, conn: HTTPConnection) -> None:
        """Serve requests on ``conn`` for as long as it is kept alive and the next one
        comes within the timeout."""
        if self._stopping:
            return
        waiting: selectors.BaseSelector | None = None
        try:
            # Serves one request; whether to keep the connection open. (cheroot's stub
            # leaves it unannotated.)
            while conn.communicate() and not self._stopping:  # type: ignore[no-untyped-call]
                if _has_input(conn):  # pipelined: read already
                    continue
                if waiting is None:
                    waiting = selectors.DefaultSelector()
                    waiting.register(conn.socket, selectors.EVENT_READ)
                if not waiting.select(_TIMEOUT):
                    return  # idle for too long
        except Exception:  # handshake failures, resets: the client's problem
            log_event("connection closed")
        finally:
            if waiting is not None:
                waiting.close()

    def stop(self, timeout: float | None = None) -> None:
        """Shut down every connection, then join every thread (each finishes the request
        it is on, which then fails to write)."""
        with self._lock:
            self._stopping = True
            connections = list(self._open)
            threads = list(self._threads)
        for conn in connections:
            _shutdown(conn)
        for _ in threads:
            self._queue.put(None)
        for thread in threads:
            thread.join()


def _has_input(conn: HTTPConnection) -> bool:
    """Whether bytes of the next request were read from the socket already."""
    if conn.rfile.has_data():
        return True
    pending = getattr(conn.socket, "pending", None)  # decrypted, not yet read
    return pending is not None and pending() > 0


def _shutdown(conn: HTTPConnection) -> None:
    with contextlib.suppress(OSError):
        conn.socket.shutdown(socket.SHUT_RDWR)


def _close(conn: HTTPConnection) -> None:
    with contextlib.suppress(OSError, ValueError):  # closed already
        conn.close()


class _LazyHandshakeTLS(Adapter):
    """cheroot's TLS adapter interface over an :class:`ssl.SSLContext`, leaving the
    handshake to the connection's first read, in its own thread."""

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(certificate=None, private_key=None)
        self.context = context

    def bind(self, sock: socket.socket) -> socket.socket:
        return sock

    def wrap(self, sock: socket.socket) -> tuple[ssl.SSLSocket, dict[str, str]]:
        tls = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return tls, {}

    def get_environ(self) -> dict[str, str]:
        return {}

    def makefile(
        self, sock: socket.socket, mode: str = "r", bufsize: int = io.DEFAULT_BUFFER_SIZE
    ) -> Any:
        return _make_file(sock, mode, bufsize)


class _Server(Server):
    """cheroot's WSGI server, logging as the simulator does."""

    thread_name = "flask-spark-simulator"
    """What the names of its threads start with."""

    @staticmethod
    def bind_socket(socket_: socket.socket, bind_addr: Any) -> socket.socket:
        """Bind, closing the socket when that fails (cheroot leaves it open)."""
        try:
            socket_.bind(bind_addr)
        except OSError:
            socket_.close()
            raise
        return socket_

    def stop(self) -> None:
        """Stop serving, then let go of the application: cheroot keeps every server it
        made in its statistics registry (``logging.statistics``) for as long as the
        process runs, and the platform, with all it recorded, should not stay with it."""
        super().stop()
        self.wsgi_app = None
        self.ssl_adapter = None

    def error_log(self, msg: str = "", level: int = 20, traceback: bool = False) -> None:
        """A debug line instead of cheroot's message and traceback on stderr: they could
        hold a token."""
        log_event(f"server event ({logging.getLevelName(level).lower()})")


def make_server(
    host: str, port: int, app: WSGIApplication, context: ssl.SSLContext | None
) -> _Server:
    """A server for ``app`` bound to ``host:port`` (``0``: a free port), with TLS when
    ``context`` is given; :meth:`~cheroot.server.HTTPServer.serve` runs it (in a thread of
    its own) and :meth:`~cheroot.server.HTTPServer.stop` stops it.

    :raises OSError: if the port cannot be bound.
    """
    server = _Server((host, port), app, server_name=host, timeout=_TIMEOUT)
    server.gateway = Gateway
    server.ConnectionClass = _Connection
    server.requests = _Workers(server)
    server.expiration_interval = _POLL_INTERVAL
    if context is not None:
        server.ssl_adapter = _LazyHandshakeTLS(context)
    server.prepare()
    server.thread_name = f"flask-spark-simulator:{server.bind_addr[1]}"
    return server
