"""How the simulator's server answers one request: cheroot's WSGI gateway, for the
simulator's platform.

The platform answers with byte bodies that carry a ``Content-Length``, and marks the
answers its faults change in the WSGI environ (:data:`~flask_spark.testing.faults.STREAM_KEY`,
:data:`~flask_spark.testing.faults.DROP_KEY`). The gateway writes each answer in one piece
(head and body: one TLS record, one segment for small answers), drains a request body
the platform left unread up to 16 MiB so the connection stays usable, sends a trickled
answer chunk by chunk and closes the connection after it, and drops a connection
without a word when asked.
"""

from __future__ import annotations

import email.utils
import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any

from cheroot.wsgi import Gateway_10

from .faults import DROP_KEY, STREAM_KEY

__all__ = ["Gateway", "log_event"]

logger = logging.getLogger("flask_spark.testing")

# Request bodies left unread by the application (say, a 413 answer) up to this size are
# drained, so the client sees the answer and the connection can stay open; a bigger
# leftover closes the connection instead.
_DRAIN_LIMIT = 16 * 1024 * 1024
_DRAIN_BLOCK = 64 * 1024


def log_event(what: str) -> None:
    """A debug line: ``what`` and the type of the exception being handled, if any (its
    message could hold a token, as could a request line)."""
    exc = sys.exc_info()[1]
    logger.debug("simulator %s%s", what, f": {type(exc).__name__}" if exc else "")


class Gateway(Gateway_10):
    """Runs the application for one request and writes its answer.

    The simulator's application answers with byte bodies that carry a
    ``Content-Length``, and marks the answers its faults change in the environ
    (:data:`~flask_spark.testing.faults.STREAM_KEY`,
    :data:`~flask_spark.testing.faults.DROP_KEY`).
    """

    def __init__(self, req: Any) -> None:
        # Request headers whose name holds an underscore are left out of the environ, as
        # Werkzeug's server did: X_Token cannot pass for X-Token. (cheroot's
        # DropUnderscoreHeaderReader would, but it fails on bytes names.)
        headers = req.inheaders
        for name in [name for name in headers if b"_" in name]:
            del headers[name]
        super().__init__(req)  # makes the environ

    def respond(self) -> None:
        req = self.req
        environ = self.env
        if not req.chunked_read and req.rfile.remaining < 0:
            # cheroot takes any integer; a negative one would read the body to the end.
            req.simple_response("400 Bad Request", "Malformed Content-Length Header.")
            req.close_connection = True
            req.ready = False  # cheroot sends nothing more for this request
            return
        expect = req.inheaders.get(b"Expect")
        if expect is not None and expect != b"100-continue" and expect.lower() == b"100-continue":
            # cheroot answers the usual spelling itself; the header ignores case.
            req.conn.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        answer: list[Any] = ["500 Internal Server Error", []]
        written: list[bytes] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            answer[:] = [status, headers]
            return written.append

        try:
            chunks: Iterable[bytes] = req.server.wsgi_app(environ, start_response)
            if environ.get(STREAM_KEY):
                self._stream(answer[0], answer[1], chunks)
                return
            try:
                body = b"".join(chunks)
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
            if written:
                body = b"".join(written) + body
        except Exception:  # the application never raises; be safe anyway
            log_event("application error")
            answer, body = ["500 Internal Server Error", []], b""
        if environ.get(DROP_KEY):  # close the connection without a word
            req.close_connection = True
            req.ready = False  # cheroot sends nothing more for this request
            return
        keep_alive = not req.close_connection and not req.chunked_read
        if not req.chunked_read and req.rfile.remaining:
            # Even when closing: unread bytes would reset the connection under the answer.
            keep_alive = self._drain(req.rfile) and keep_alive
        status, headers = answer
        head = self._head(status, headers, len(body), keep_alive)
        req.close_connection = not keep_alive
        req.sent_headers = True
        req.conn.socket.sendall(head if req.method == b"HEAD" else head + body)

    @staticmethod
    def _drain(body: Any) -> bool:
        """Read what is left of a request body the application did not read; whether the
        connection can go on."""
        if body.remaining > _DRAIN_LIMIT:
            return False
        try:
            while body.read(_DRAIN_BLOCK):
                pass
        except OSError:  # a client gone mid-body
            return False
        return True

    def _head(
        self, status: str, headers: list[tuple[str, str]], length: int | None, keep_alive: bool
    ) -> bytes:
        """The status line and headers, with a ``Content-Length`` of ``length`` unless the
        application gave one (or ``length`` is ``None``)."""
        lines = [f"HTTP/1.1 {status}\r\n"]
        has_length = False
        for name, value in headers:
            lowered = name.lower()
            if lowered == "connection":
                continue
            has_length = has_length or lowered == "content-length"
            lines.append(f"{name}: {value}\r\n")
        if not has_length and length is not None:
            lines.append(f"Content-Length: {length}\r\n")
        if not keep_alive:
            lines.append("Connection: close\r\n")
        elif self.req.response_protocol == "HTTP/1.0":  # it asked with Connection: Keep-Alive
            lines.append("Connection: Keep-Alive\r\n")
        lines.append(f"Date: {email.utils.formatdate(usegmt=True)}\r\n")
        lines.append(f"Server: {self.req.server.version}\r\n\r\n")
        return "".join(lines).encode("latin-1")

    def _stream(
        self, status: str, headers: list[tuple[str, str]], chunks: Iterable[bytes]
    ) -> None:
        """Send each chunk as the application yields it (a trickled answer), until the
        client goes away; the connection is closed after it."""
        req = self.req
        req.close_connection = True
        req.sent_headers = True
        try:
            req.conn.socket.sendall(self._head(status, headers, None, keep_alive=False))
            for chunk in chunks:
                req.conn.socket.sendall(chunk)
        except OSError:
            pass  # the client hung up: stop sending
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
