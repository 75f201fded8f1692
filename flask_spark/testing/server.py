""":class:`SimulatorServer`: serve a :class:`SparkPlatform` on a loopback port, over real
HTTPS with a throwaway CA (or plain HTTP), from background threads.

The HTTP server itself is cheroot's, set up in :mod:`flask_spark.testing.http_server`.
"""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import sys
import tempfile
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import TYPE_CHECKING

from ..config import is_loopback_host
from .platform import SparkPlatform

if TYPE_CHECKING:
    from cheroot.wsgi import Server

__all__ = ["SimulatorServer", "serve"]

_EXTRA = "Flask-Spark's testing extra installs: pip install 'Flask-Spark[testing]'"


class SimulatorServer:
    """Serve a :class:`SparkPlatform` on ``host:port`` from background threads.

    With ``tls=True`` (the default) it speaks real HTTPS with a certificate for
    ``127.0.0.1``, ``::1`` and ``localhost`` from a throwaway CA made by ``trustme``; the CA
    certificate is written to a temporary file, :attr:`ca_file`, for clients to trust.
    With ``tls=False`` it speaks plain HTTP (for a local demo). Only loopback addresses
    are accepted. HTTP/1.1 keep-alive works; every open connection has a thread of its
    own, so a slow answer never holds up another client. The server is cheroot's, which
    the ``testing`` extra installs.

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
        if not is_loopback_host(host):
            raise ValueError(f"the simulator only listens on loopback addresses, not {host!r}")
        self.platform = platform if platform is not None else SparkPlatform()
        self.tls = tls
        self.host = host.strip("[]")
        self.port = port
        self.ca_file: str | None = None
        """The CA certificate (PEM) clients must trust; ``None`` without TLS or while
        stopped."""
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
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
                f"The simulator's HTTPS needs trustme, which {_EXTRA}", name="trustme"
            ) from None

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "::1", "localhost")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
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
        :raises ModuleNotFoundError: without the ``testing`` extra (cheroot, and trustme
            for HTTPS).
        """
        if self._server is not None:
            raise RuntimeError("the simulator server is already running")
        try:
            from . import http_server  # lazily: the platform alone does not need cheroot
        except ModuleNotFoundError as exc:
            if exc.name is None or exc.name.partition(".")[0] != "cheroot":
                raise
            raise ModuleNotFoundError(
                f"The simulator's server is cheroot, which {_EXTRA}", name="cheroot"
            ) from None
        context = self._ssl_context() if self.tls else None
        # localhost is served on IPv4, whatever the resolver prefers.
        bind_host = "127.0.0.1" if self.host == "localhost" else self.host
        try:
            server = http_server.make_server(bind_host, self.port, self.platform, context)
        except OSError as exc:
            self._cleanup_files()
            raise OSError(f"cannot listen on {self.host}:{self.port}") from exc
        except BaseException:
            self._cleanup_files()
            raise
        self.port = server.bind_addr[1]
        self._server = server
        try:
            self.platform.serve_at(self.url, self.ca_file)
        except BaseException:
            server.stop()
            self._server = None
            self._cleanup_files()
            raise
        self._thread = threading.Thread(target=server.serve, name=server.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every connection, join the threads and delete the CA
        file. Safe to call twice."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.stop()  # closes the connections and joins their threads
        if thread is not None:
            thread.join()
        self.platform.serve_at(None, None)
        self._server = self._thread = None
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
    listens; returns the exit status: 1 when the port cannot be bound (naming
    ``option``) or the testing extra is missing (naming it)."""
    server = SimulatorServer(platform, tls=tls, host=host, port=port)
    try:
        server.start()
    except ModuleNotFoundError as exc:  # cheroot, or trustme for HTTPS
        print(f"error: {exc}", file=sys.stderr)
        return 1
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
