"""What the simulator counts and records: :class:`Stats` and :class:`RecordedRequest`."""

from __future__ import annotations

import dataclasses
from typing import Any

from werkzeug.datastructures import Headers

__all__ = ["RecordedRequest", "Stats"]


@dataclasses.dataclass(frozen=True)
class Stats:
    """A snapshot of the simulator's counters (``platform.stats`` makes a new one per read).

    :ivar authorizations: authorization requests that issued a code.
    :ivar denials: authorization requests answered with ``error=access_denied``.
    :ivar code_exchanges: successful ``authorization_code`` grants.
    :ivar rejected_code_exchanges: ``authorization_code`` grants refused (bad client,
        unknown, spent, expired or mismatched code).
    :ivar refreshes: successful ``refresh_token`` grants.
    :ivar rejected_refreshes: ``refresh_token`` grants refused (bad client, unknown or
        already rotated refresh token).
    :ivar data_calls: every request under ``/v1/`` other than the grant and revocation
        endpoints, whatever the outcome.
    :ivar revocations: successful ``DELETE /v1/oauth2/token/<token>``.
    :ivar grant_calls: every ``POST /v1/oauth2/grant``, whatever the outcome (faults too).
    :ivar rate_limited: data calls the rate limiter answered with code 1550 (not counting
        faults set with ``rate_limit_next``).
    """

    authorizations: int = 0
    denials: int = 0
    code_exchanges: int = 0
    rejected_code_exchanges: int = 0
    refreshes: int = 0
    rejected_refreshes: int = 0
    data_calls: int = 0
    revocations: int = 0
    grant_calls: int = 0
    rate_limited: int = 0


STAT_NAMES: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(Stats))


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    """One request the simulator served, as it arrived on the wire.

    :ivar method: the HTTP method.
    :ivar path: the URL path, without the query string.
    :ivar query: query parameters (the first value of each).
    :ivar headers: the request headers, as Werkzeug's
        :class:`~werkzeug.datastructures.Headers`: look-ups ignore case
        (``headers["x-sparkapi-user-agent"]``), and iterating gives ``(name, value)``
        pairs, names spelled as the WSGI environ gives them (``X-Sparkapi-User-Agent``).
    :ivar body: the raw request body.
    :ivar json: the body parsed as JSON, or ``None`` if it is empty or not JSON.
    :ivar auth_scheme: the scheme of the ``Authorization`` header as sent
        (``"OAuth"``, ``"Bearer"``...), or ``None`` without one.
    :ivar route: ``"authorize"``, ``"grant"``, ``"data"``, ``"revoke"`` or ``"other"``.
    :ivar status: the HTTP status answered, ``0`` if the connection was dropped.
    :ivar request_id: the ``X-Request-Id`` the answer carried.
    :ivar response_encoding: the answer's ``Content-Encoding`` (``"gzip"``, ``"deflate"``)
        or ``None`` when it went uncompressed.
    :ivar response_bytes: the answer's body as sent on the wire.
    :ivar response_plain_bytes: the same body before compression.
    :ivar received_at: when it arrived, by the platform's clock.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: Headers
    body: bytes
    json: Any | None
    auth_scheme: str | None
    route: str
    status: int
    request_id: str = ""
    response_encoding: str | None = None
    response_bytes: int = 0
    response_plain_bytes: int = 0
    received_at: float = 0.0
