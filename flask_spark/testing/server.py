""":class:`SimulatorServer`: serve a :class:`SparkPlatform` on a loopback port, over real
HTTPS with a throwaway CA (or plain HTTP), from a background thread."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import IO, Any, cast

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wsgi import LimitedStream

from .faults import STREAM_KEY
from .platform import SparkPlatform

__all__ = ["SimulatorServer", "is_loopback", "serve"]

logger = logging.getLogger("flask_spark.testing")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# Request bodies left unread by the application (say, a 413 answer) up to this size are
# drained, so the client sees the answer and the connection can stay open; a bigger
# leftover closes the connection instead.
_DRAIN_LIMIT = 16 * 1024 * 1024


class _Handler(WSGIRequestHandler):
    """HTTP/1.1 keep-alive, no access log (paths carry tokens), no tracebacks for clients
    that hang up, and connections tracked so :meth:`SimulatorServer.stop` can close idle
    keep-alive connections.

    Werkzeug's own ``run_wsgi`` closes every connection (it cannot tell where a request
    body ends); this one reads exactly ``Content-Length`` bytes of body, so it can keep
    the connection open. The simulator's application answers with byte bodies that
    carry a ``Content-Length``; anything else closes the connection after the answer.
    """

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):  # no Nagle delay on small answers
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tracker: _Tracker = self.server._simulator_tracker  # type: ignore[attr-defined]
        tracker.add(self.connection)

    def finish(self) -> None:
        tracker: _Tracker = self.server._simulator_tracker  # type: ignore[attr-defined]
        tracker.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def handle(self) -> None:
        try:
            super().handle()
        except OSError as exc:  # handshake failures, resets: the client's problem
            logger.debug("simulator connection closed: %s", type(exc).__name__)

    def run_wsgi(self) -> None:
        """Run the application for one request and write its answer."""
        if self.headers.get("Expect", "").strip().lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.environ = environ = self.make_environ()
        body_stream: LimitedStream | None = None
        if "wsgi.input_terminated" not in environ:  # not chunked: bounded by Content-Length
            try:
                length = max(0, int(environ.get("CONTENT_LENGTH") or 0))
            except ValueError:
                self.send_error(400, "Bad Content-Length")
                self.close_connection = True
                return
            body_stream = LimitedStream(cast("IO[bytes]", self.rfile), length)
            environ["wsgi.input"] = body_stream
            environ["wsgi.input_terminated"] = True
        answer: list[Any] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            answer[:] = [status, headers]
            return self.wfile.write

        try:
            chunks = self.server.app(environ, start_response)
            if environ.get(STREAM_KEY):
                self._stream(answer, chunks)
                return
            try:
                body = b"".join(chunks)
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
        except Exception as exc:  # the application never raises; be safe anyway
            logger.debug("simulator application error: %s", type(exc).__name__)
            answer, body = ["500 Internal Server Error", []], b""
        keep_alive = body_stream is not None
        if body_stream is not None and not body_stream.is_exhausted:
            keep_alive = False
            if body_stream.limit - body_stream.tell() <= _DRAIN_LIMIT:
                with contextlib.suppress(Exception):  # a client gone mid-body
                    body_stream.exhaust()
                    keep_alive = True
        status, headers = answer
        code, _, reason = status.partition(" ")
        self.send_response(int(code), reason)
        has_length = False
        for name, value in headers:
            lowered = name.lower()
            if lowered == "connection":
                continue
            has_length = has_length or lowered == "content-length"
            self.send_header(name, value)
        if not has_length:
            self.send_header("Content-Length", str(len(body)))
        if not keep_alive:
            self.send_header("Connection", "close")  # also sets self.close_connection
        # Head and body in one write (one TLS record, one segment for small answers).
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(body)
        self.flush_headers()

    def _stream(self, answer: list[Any], chunks: Any) -> None:
        """Send each chunk as the application yields it (a trickled answer), until the
        client goes away; the connection is closed after it."""
        status, headers = answer
        code, _, reason = status.partition(" ")
        self.send_response(int(code), reason)
        for name, value in headers:
            if name.lower() != "connection":
                self.send_header(name, value)
        self.send_header("Connection", "close")
        try:
            self.end_headers()
            for chunk in chunks:
                self.wfile.write(chunk)
                self.wfile.flush()
        except OSError:
            pass  # the client hung up: stop sending
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """No access log: request lines carry tokens (``/v1/oauth2/token/<token>``)."""

    def log(self, type: str, message: str, *args: Any) -> None:
        """Errors go to the ``flask_spark.testing`` logger at debug level, without
        details that could hold a token."""
        logger.debug("simulator server %s event", type)


class _Tracker:
    """The open connections of a server, to shut them down when it stops."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connections: set[socket.socket] = set()
        self.stopping = False

    def add(self, connection: socket.socket) -> None:
        with self.lock:
            self.connections.add(connection)
            stopping = self.stopping
        if stopping:
            _shutdown(connection)

    def discard(self, connection: socket.socket) -> None:
        with self.lock:
            self.connections.discard(connection)

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            connections = list(self.connections)
        for connection in connections:
            _shutdown(connection)


def _shutdown(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)


class _LazyHandshakeContext(ssl.SSLContext):
    """Server-side TLS whose handshake runs in the connection's own thread, not in the
    accept loop, so one slow or failing client cannot stall the others."""

    def wrap_socket(self, sock: socket.socket, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        kwargs["do_handshake_on_connect"] = False
        return super().wrap_socket(sock, *args, **kwargs)


class SimulatorServer:
    """Serve a :class:`SparkPlatform` on ``host:port`` from a background thread.

    With ``tls=True`` (the default) it speaks real HTTPS with a certificate for
    ``127.0.0.1``, ``::1`` and ``localhost`` from a throwaway CA made by ``trustme``; the CA
    certificate is written to a temporary file, :attr:`ca_file`, for clients to trust.
    With ``tls=False`` it speaks plain HTTP (for a local demo). Only loopback addresses
    are accepted. HTTP/1.1 keep-alive works; each connection gets its own thread.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`::

        with SimulatorServer(SparkPlatform()) as server:
            server.url, server.ca_file

    :param platform: the platform to serve; a default :class:`SparkPlatform` if omitted.
    :param tls: HTTPS with a throwaway CA, or plain HTTP.
    :param host: a loopback address or ``localhost``.
    :param port: the port; ``0`` picks a free one.
    """

    def __init__(
        self,
        platform: SparkPlatform | None = None,
        *,
        tls: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if not is_loopback(host):
            raise ValueError(f"the simulator only listens on loopback addresses, not {host!r}")
        self.platform = platform if platform is not None else SparkPlatform()
        self.tls = tls
        self.host = host.strip("[]")
        self.port = port
        self.ca_file: str | None = None
        """The CA certificate (PEM) clients must trust; ``None`` without TLS or while
        stopped."""
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._tracker: _Tracker | None = None
        self._tempdir: str | None = None

    @property
    def url(self) -> str:
        """``https://HOST:PORT`` (or ``http://``), no trailing slash.

        :raises RuntimeError: when the server is not running.
        """
        if self._server is None:
            raise RuntimeError("the simulator server is not running")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def _ssl_context(self) -> ssl.SSLContext:
        try:
            import trustme  # lazily: plain HTTP does not need it
        except ImportError:
            raise ModuleNotFoundError(
                "The simulator's HTTPS needs trustme, which Flask-Spark's testing extra "
                "installs: pip install 'Flask-Spark[testing]'",
                name="trustme",
            ) from None

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "::1", "localhost")
        context = _LazyHandshakeContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        cert.configure_cert(context)
        self._tempdir = tempfile.mkdtemp(prefix="flask-spark-simulator-")
        self.ca_file = os.path.join(self._tempdir, "ca.pem")
        ca.cert_pem.write_to_path(self.ca_file)
        return context

    def start(self) -> SimulatorServer:
        """Start serving; returns the server itself.

        :raises OSError: if the port cannot be bound.
        :raises RuntimeError: if it is already running, or the platform is served elsewhere.
        """
        if self._server is not None:
            raise RuntimeError("the simulator server is already running")
        context = self._ssl_context() if self.tls else None
        try:
            server = make_server(
                self.host,
                self.port,
                self.platform,
                threaded=True,
                request_handler=_Handler,
                ssl_context=context,
            )
        except SystemExit as exc:  # werkzeug exits when the port is taken
            self._cleanup_files()
            raise OSError(f"cannot listen on {self.host}:{self.port}") from exc
        except BaseException:
            self._cleanup_files()
            raise
        tracker = _Tracker()
        server._simulator_tracker = tracker  # type: ignore[attr-defined]
        # Join the connection threads on stop, after their sockets are shut down.
        server.daemon_threads = False  # type: ignore[attr-defined]  # a ThreadingMixIn
        server.log = lambda *args, **kwargs: None  # type: ignore[method-assign]
        self.port = server.port
        self._server, self._tracker = server, tracker
        try:
            self.platform.serve_at(self.url, self.ca_file)
        except BaseException:
            server.server_close()
            self._server = self._tracker = None
            self._cleanup_files()
            raise
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"flask-spark-simulator:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every connection, join the threads and delete the CA
        file. Safe to call twice."""
        server, thread, tracker = self._server, self._thread, self._tracker
        if server is None:
            return
        server.shutdown()
        if tracker is not None:
            tracker.stop()
        server.server_close()  # joins the connection threads
        if thread is not None:
            thread.join()
        self.platform.serve_at(None, None)
        self._server = self._thread = self._tracker = None
        self._cleanup_files()

    def _cleanup_files(self) -> None:
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
        self._tempdir = None
        self.ca_file = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve(
    platform: SparkPlatform,
    describe: Callable[[SimulatorServer], str],
    *,
    tls: bool,
    host: str,
    port: int,
    option: str = "--port",
) -> int:
    """Serve ``platform`` until Ctrl-C or SIGTERM, printing ``describe(server)`` once it
    listens; returns the exit status (1 when the port cannot be bound, naming ``option``)."""
    server = SimulatorServer(platform, tls=tls, host=host, port=port)
    try:
        server.start()
    except OSError as exc:  # the port cannot be bound
        print(f"error: {exc}: choose another with {option} (0 picks a free one)", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        print(describe(server), flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()
    return 0
