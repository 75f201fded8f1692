"""HTTP to the platform: one pool of keep-alive connections per app and process.

urllib3's :class:`~urllib3.PoolManager` is safe to share across threads. The pool is made
lazily and again after a fork, so gunicorn's ``--preload`` never shares sockets between
workers. Each call has a wall-clock deadline (:mod:`flask_spark.deadlines`) and a cap on
the bytes of its answer.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from http.client import HTTPException
from time import time
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from .deadlines import POOL_CLASSES, watch
from .errors import PlatformUnavailable

_TOKEN_PATH = re.compile(r"(/oauth2/token/)[^\s\"?]+")
_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")
#: Sent with every call; urllib3 decodes the answer (and the byte cap counts decoded bytes).
ACCEPT_ENCODING = "gzip, deflate"


class _RedactTokenPaths(logging.Filter):
    """urllib3 logs each request line at DEBUG; the revocation URL carries the access token
    in its path, so that part is replaced before the line is emitted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args and isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_PATH.sub(r"\1[redacted]", a) if isinstance(a, str) else a
                for a in record.args
            )
        return True


def _install_log_filter() -> None:
    logger = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, _RedactTokenPaths) for f in logger.filters):
        logger.addFilter(_RedactTokenPaths())


@dataclass(frozen=True)
class Reply:
    """An HTTP answer from the platform."""

    status: int
    #: Looked up by lower-case name (urllib3's headers ignore case).
    headers: Mapping[str, str]
    body: bytes

    @property
    def request_id(self) -> str | None:
        """The platform's ``X-Request-Id``, if it is a plausible one (printable ASCII, at
        most 128 characters): it goes into logs and error messages."""
        value = self.headers.get("x-request-id")
        if value is None or not _REQUEST_ID.fullmatch(value):
            return None
        return value

    def json(self) -> Any:
        """The body parsed as JSON.

        :raises ValueError: the body is not JSON.
        """
        return json.loads(self.body)

    def retry_after(self) -> float | None:
        """The ``Retry-After`` header in seconds (delta or HTTP date), if present and sane."""
        value = self.headers.get("retry-after")
        if value is None:
            return None
        value = value.strip()
        try:
            seconds = float(value)
        except ValueError:
            try:
                seconds = parsedate_to_datetime(value).timestamp() - time()
            except (TypeError, ValueError, IndexError):
                return None
        if seconds != seconds:  # NaN
            return None
        return max(0.0, min(seconds, 86400.0))


class Transport:
    """Sends requests to the platform over a shared keep-alive pool.

    :param timeout: seconds a whole call may take, connect to last byte.
    :param ca_certs: a CA bundle to trust instead of the system's (the simulator's CA).
    :param pool_size: keep-alive connections kept per host.
    :param max_bytes: the largest answer body read, unless a call says otherwise.
    """

    def __init__(
        self, timeout: float, ca_certs: str | None, pool_size: int, max_bytes: int
    ) -> None:
        self.timeout = timeout
        self.ca_certs = ca_certs
        self.pool_size = pool_size
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._pool: urllib3.PoolManager | None = None
        self._pid = 0
        # Made once: urllib3 checks a timeout's values as it is made, and copies it per call.
        self._timeout = urllib3.Timeout(connect=timeout, read=timeout)
        _install_log_filter()

    def _manager(self) -> urllib3.PoolManager:
        pool = self._pool
        if pool is not None and self._pid == os.getpid():
            return pool
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                manager = urllib3.PoolManager(
                    num_pools=8,
                    maxsize=self.pool_size,
                    block=False,
                    retries=False,
                    ca_certs=self.ca_certs,
                    cert_reqs="CERT_REQUIRED",
                )
                manager.pool_classes_by_scheme = POOL_CLASSES
                self._pool = manager
                self._pid = os.getpid()
            return self._pool

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        body: bytes | None = None,
        timeout: float | None = None,
        max_bytes: int | None = None,
    ) -> Reply:
        """Send one request; no retries happen here.

        :param timeout: seconds for the whole call (default: the transport's).
        :param max_bytes: the largest body read (default: the transport's).
        :raises PlatformUnavailable: connection refused, TLS failure, the deadline passed,
            or the answer was larger than ``max_bytes``.
        """
        seconds = self.timeout if timeout is None else timeout
        limit = self.max_bytes if max_bytes is None else max_bytes
        headers = {"Accept-Encoding": ACCEPT_ENCODING, **headers}
        response: urllib3.BaseHTTPResponse | None = None
        with watch(seconds) as deadline:
            try:
                response = self._manager().request(
                    method,
                    url,
                    headers=headers,
                    body=body,
                    redirect=False,
                    preload_content=False,
                    timeout=(
                        self._timeout
                        if timeout is None
                        else urllib3.Timeout(connect=seconds, read=seconds)
                    ),
                )
                data = response.read(limit + 1)
            except (Urllib3Error, OSError, HTTPException) as exc:
                if response is not None:
                    response.close()
                    response.release_conn()
                # The exception text can hold the URL (and so a token in a revocation path).
                what = "timed out" if deadline.expired else type(exc).__name__
                raise PlatformUnavailable(
                    f"The Spark platform could not be reached ({what})"
                ) from None
        # Only now, with the deadline finished, may the connection serve another call.
        if len(data) > limit:
            response.close()
            response.release_conn()
            raise PlatformUnavailable(f"The Spark platform answered more than {limit} bytes")
        response.release_conn()
        return Reply(
            status=response.status,
            headers=response.headers,
            body=data,
        )

    def close(self) -> None:
        """Close every pooled connection of this process."""
        with self._lock:
            if self._pool is not None:
                self._pool.clear()
                self._pool = None
