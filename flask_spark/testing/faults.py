"""Injected failures: :class:`Fault` and the answers each kind produces."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from werkzeug.wrappers import Response

from .pages import html_response

__all__ = ["FAULT_KINDS", "ROUTES", "Fault"]

#: The WSGI environ key that asks the simulator's server to send an answer chunk by chunk.
STREAM_KEY = "flask_spark.testing.stream"
#: The WSGI environ key that asks the simulator's server to close the connection without
#: sending the answer.
DROP_KEY = "flask_spark.testing.drop"

#: The routes a fault can target; ``"any"`` matches every request.
ROUTES = frozenset({"authorize", "grant", "data", "revoke", "userinfo", "discovery", "any"})

#: The kinds of fault.
FAULT_KINDS = frozenset(
    {
        "status",
        "rate_limit",
        "malformed",
        "html",
        "missing_fields",
        "delay",
        "drop",
        "tamper",
        "trickle",
        "id_token",
    }
)

# A Spark code for an HTTP status, used by "status" faults on data routes.
_CODE_FOR_STATUS = {
    401: 1000,
    403: 1015,
    404: 404,
    405: 405,
    409: 1055,
    429: 1550,
    500: 1026,
    503: 1023,
}

MESSAGES = {
    404: "Not found",
    405: "Method not allowed",
    1000: "Invalid API key and/or request signed improperly",
    1015: "API user required or unavailable",
    1016: "The X-SparkApi-User-Agent header is required",
    1020: "Session token has expired",
    1021: "Use the replication endpoint for this key",
    1023: "Account not yet available",
    1026: "An unexpected problem occurred with the data",
    1035: (
        'Invalid JSON or Content-Type: send a JSON body wrapped in {"D": ...} '
        "with Content-Type: application/json"
    ),
    1040: "The _filter syntax is invalid",
    1050: "Missing or invalid parameter",
    1055: "Conflict",
    1060: "Validation failed",
    1550: "Over rate limit",
}


@dataclasses.dataclass(frozen=True)
class Fault:
    """A failure the simulator answers with instead of (or before) the normal reply.

    Add one with :meth:`SparkPlatform.add_fault`. Faults apply in the order added, each to
    the next request(s) of its ``route``; the instance itself is never changed, so one
    ``Fault`` can be added to several platforms or tests.

    :param route: ``"authorize"`` (``/oauth2``, ``/auth/vow/<portal>``,
        ``/openid/authorize``), ``"grant"`` (``/v1/oauth2/grant``, ``/openid/token``),
        ``"data"``, ``"revoke"`` (also ``/openid/revoke``), ``"userinfo"``,
        ``"discovery"`` (the discovery document and the JWKS) or ``"any"``.
    :param kind: what goes wrong:

        - ``"status"``: answer ``status`` (default 500) with a Spark error envelope; the
          grant endpoint answers ``{"error": "server_error", ...}`` and the authorization
          endpoint an HTML page.
        - ``"rate_limit"``: code 1550 with ``Retry-After: <retry_after>``, status 429 by
          default (older deployments answer 503: pass ``status=503``).
        - ``"malformed"``: status 200 with truncated, invalid JSON.
        - ``"html"``: status 200 with a ``text/html`` page (a proxy's maintenance page).
        - ``"missing_fields"``: grant only; status 200 JSON without ``access_token``.
        - ``"delay"``: sleep ``delay`` seconds, then answer normally (for timeouts).
        - ``"drop"``: close the connection without answering.
        - ``"tamper"``: answer normally, but with the body ``tamper`` makes of the normal
          JSON answer (a hostile platform: ``lambda answer: {**answer, "access_token":
          "AT\\r\\nX-Injected: 1"}``); bytes it returns are sent as they are.
        - ``"trickle"``: send the normal answer ``chunk`` bytes at a time, ``delay``
          seconds apart (a platform that never quite stops answering).
        - ``"id_token"``: ``/openid/token`` only; answer normally, but with an id_token
          whose claims ``claims`` changes (``None`` removes one: ``{"iss":
          "https://elsewhere.example"}``, ``{"nonce": None}``, ``{"exp": 0}``) and that
          is signed as ``signing`` says: ``"valid"``, ``"bad_signature"`` (its ``kid``,
          another key) or ``"unknown_kid"`` (a key the JWKS does not list).
    :param count: how many matching requests it applies to; ``None`` for every one until
        :meth:`SparkPlatform.reset`.
    :param status: the HTTP status for ``"status"`` and ``"rate_limit"``.
    :param retry_after: seconds sent in ``Retry-After`` by ``"rate_limit"``.
    :param delay: seconds to wait for ``"delay"``.
    :param body: replaces the body of ``"status"``, ``"rate_limit"``, ``"malformed"``,
        ``"html"`` and ``"missing_fields"`` answers.
    :param code: the Spark ``Code`` of a ``"status"`` envelope (default: one matching
        ``status``, e.g. 1026 for 500, 1023 for 503).
    :param tamper: for ``"tamper"``, the normal JSON answer (parsed) to the new body: JSON
        data, or bytes sent as they are.
    :param chunk: for ``"trickle"``, bytes sent at a time.
    :param claims: for ``"id_token"``, the claims to change.
    :param signing: for ``"id_token"``, how it is signed.
    """

    route: str
    kind: str
    count: int | None = 1
    status: int | None = None
    retry_after: int = 1
    delay: float = 0.0
    body: bytes | str | None = None
    code: int | None = None
    tamper: Callable[[Any], Any] | None = dataclasses.field(default=None, compare=False)
    chunk: int = 1
    claims: dict[str, Any] | None = dataclasses.field(default=None, compare=False)
    signing: str = "valid"

    def __post_init__(self) -> None:
        if self.route not in ROUTES:
            raise ValueError(f"route must be one of {sorted(ROUTES)}, not {self.route!r}")
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {sorted(FAULT_KINDS)}, not {self.kind!r}")
        if self.kind == "missing_fields" and self.route not in {"grant", "any"}:
            raise ValueError("a missing_fields fault applies to the grant endpoint only")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be at least 1, or None for every request")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError("status must be an HTTP status code")
        if self.retry_after < 0 or self.delay < 0:
            raise ValueError("retry_after and delay must not be negative")
        if (self.kind == "tamper") != (self.tamper is not None):
            raise ValueError("a tamper fault, and only one, takes a tamper function")
        if self.chunk < 1:
            raise ValueError("chunk must be at least 1")
        if self.kind == "id_token" and self.route not in {"grant", "any"}:
            raise ValueError("an id_token fault applies to the token endpoint only")
        if self.signing not in {"valid", "bad_signature", "unknown_kid"}:
            raise ValueError("signing must be 'valid', 'bad_signature' or 'unknown_kid'")

    def applies_to(self, route: str) -> bool:
        """Whether this fault targets a request of ``route``."""
        if self.kind in {"missing_fields", "id_token"} and route != "grant":
            return False
        return self.route in {"any", route}

    def alter(self, normal: Response) -> Response:
        """The answer of a ``"tamper"`` or ``"trickle"`` fault, made from the ``normal`` one."""
        if self.kind == "trickle":
            data = normal.get_data()
            normal.response = _trickle(data, self.chunk, self.delay)
            normal.headers["Content-Length"] = str(len(data))
            return normal
        assert self.tamper is not None
        try:
            parsed = json.loads(normal.get_data())
        except ValueError:
            parsed = None
        altered = self.tamper(parsed)
        body = altered if isinstance(altered, bytes) else json.dumps(altered).encode()
        normal.set_data(body)
        return normal

    def response(self, route: str) -> Response:
        """The answer for a request of ``route`` (not for ``"delay"``, ``"drop"``,
        ``"tamper"`` or ``"trickle"``)."""
        body = self.body.encode() if isinstance(self.body, str) else self.body
        if self.kind == "status":
            return self._status_response(route, body)
        if self.kind == "rate_limit":
            status = self.status or 429
            headers = {"Retry-After": str(self.retry_after)}
            if body is None and route == "authorize":
                return html_response(
                    status, "Too many requests", "Over rate limit", headers=headers
                )
            if body is None:
                return envelope_error(status, 1550, headers=headers)
            return Response(body, status, headers=headers, content_type="application/json")
        if self.kind == "malformed":
            if body is None:
                body = (
                    b'{"access_token": "'
                    if route == "grant"
                    else b'{"D": {"Success": true, "Results": [{"Id": "2024'
                )
            return Response(body, 200, content_type="application/json")
        if self.kind == "html":
            if body is not None:
                return Response(body, 200, content_type="text/html; charset=utf-8")
            return html_response(
                200,
                "Down for maintenance",
                "The service is temporarily unavailable. Please try again later.",
            )
        if self.kind == "missing_fields":
            if body is None:
                body = json.dumps({"expires_in": 86400}).encode()
            return Response(body, 200, content_type="application/json")
        raise ValueError(f"a {self.kind} fault has no response of its own")

    def _status_response(self, route: str, body: bytes | None) -> Response:
        status = self.status or 500
        if body is not None:
            kind = "text/html; charset=utf-8" if route == "authorize" else "application/json"
            return Response(body, status, content_type=kind)
        if route == "authorize":
            return html_response(status, "Server error", f"The server answered {status}.")
        if route == "grant":
            return json_response(
                status,
                {
                    "error": "server_error",
                    "error_description": "The authorization server encountered an "
                    "unexpected condition",
                },
            )
        return envelope_error(status, self.code or _CODE_FOR_STATUS.get(status, status))


def _trickle(data: bytes, chunk: int, delay: float) -> Iterator[bytes]:
    for start in range(0, len(data), chunk):
        if start:
            time.sleep(delay)
        yield data[start : start + chunk]


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON response."""
    return Response(json.dumps(payload), status, headers=headers, content_type="application/json")


def envelope_error(
    status: int,
    code: int,
    message: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """A Spark failure: ``{"D": {"Success": false, "Code": n, "Message": "..."}}``."""
    text = message or MESSAGES.get(code, "Error")
    return json_response(
        status, {"D": {"Success": False, "Code": code, "Message": text}}, headers=headers
    )
