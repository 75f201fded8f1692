"""The Spark API client that :data:`flask_spark.spark_api` resolves to in each request."""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

from flask import Flask

from .config import SparkConfig
from .errors import (
    NotSignedIn,
    PlatformUnavailable,
    RateLimited,
    ReauthenticationRequired,
    SparkAPIError,
    StoreUnavailable,
)
from .grant import TokenRecord
from .signals import token_refreshed
from .tokens import GrantRef, TokenManager
from .transport import Reply, Transport

Renewal = Literal["refreshed", "adopted"]
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
_BAD_PATH = re.compile(r"[\x00-\x20\x7f\\#?]|://|^//|(^|/)\.\.?(/|$)")
#: Spark's code for an expired session token.
CODE_TOKEN_EXPIRED = 1020
#: Spark's code for an invalid key or token.
CODE_INVALID_KEY = 1000
#: Spark's code for "over the rate limit".
CODE_RATE_LIMITED = 1550


@dataclass(frozen=True)
class SparkResponse:
    """One answer of the Spark API.

    :param status: the HTTP status.
    :param envelope: the whole ``D`` object (``Success``, ``Results``, ``Pagination``, …).
    """

    status: int
    envelope: dict[str, Any] = field(default_factory=dict)

    @property
    def results(self) -> list[Any]:
        """``D.Results``, or an empty list when the answer had none (202 Accepted)."""
        results = self.envelope.get("Results")
        return results if isinstance(results, list) else []

    @property
    def pagination(self) -> dict[str, Any] | None:
        """``D.Pagination`` when ``_pagination=1`` was asked for."""
        value = self.envelope.get("Pagination")
        return value if isinstance(value, dict) else None


def _api_path(path: str) -> str:
    """``path`` below ``/v1/``; ``"my/account"``, ``"/my/account"`` and
    ``"/v1/my/account"`` are all the same. Anything that could leave the API is refused."""
    if not isinstance(path, str) or not path or _BAD_PATH.search(path):
        raise ValueError(
            "path must be a plain path below /v1/, such as '/my/account' "
            "(pass query parameters as keyword arguments)"
        )
    path = path.lstrip("/")
    if path.startswith("v1/"):
        path = path[3:]
    return "/v1/" + path


def _query(params: Mapping[str, Any]) -> str:
    pairs = []
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        pairs.append((key, str(value)))
    return urlencode(pairs)


def _envelope(reply: Reply) -> dict[str, Any] | None:
    try:
        data = reply.json()
    except ValueError:
        return None
    envelope = data.get("D") if isinstance(data, dict) else None
    return envelope if isinstance(envelope, dict) else None


def _spark_code(envelope: dict[str, Any] | None) -> int | None:
    """The envelope's Spark ``Code``, when it is a whole number."""
    code = envelope.get("Code") if envelope else None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


class SparkClient:
    """Calls the Spark API with the tokens of one grant.

    Made by :data:`~flask_spark.spark_api` at most once per request; not meant to outlive
    it. ``get``/``post``/``put``/``delete`` return ``D.Results``; :meth:`request` returns
    the whole :class:`SparkResponse`.
    """

    def __init__(
        self,
        app: Flask,
        config: SparkConfig,
        transport: Transport,
        tokens: TokenManager,
        user: GrantRef | None,
        app_wide: GrantRef | None,
    ) -> None:
        self._app = app
        self._config = config
        self._transport = transport
        self._tokens = tokens
        self._user = user
        self._app_wide = app_wide
        self._ref: GrantRef | None = None
        self._record: TokenRecord | None = None
        self._loaded = False
        self._app_refused = False
        self._base_headers = {
            "Accept": "application/json",
            "X-SparkApi-User-Agent": config.user_agent,
        }

    # -- who ------------------------------------------------------------------------

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if self._user is not None:
            record = self._tokens.load(self._user)
            if record is not None:
                self._ref, self._record = self._user, record
                return
        if self._app_wide is not None:
            try:
                self._record = self._tokens.load(self._app_wide)
            except ReauthenticationRequired:
                self._app_refused = True  # raised by a call, not by a mere check
                return
            self._ref = self._app_wide

    @property
    def authenticated(self) -> bool:
        """Whether the current browser session is signed in to this portal (the app-wide
        token of single-session keys does not count)."""
        self._load()
        return self._ref is not None and self._ref is self._user

    @property
    def available(self) -> bool:
        """Whether calls can be made: a signed-in user or single-session keys."""
        self._load()
        return self._record is not None

    # -- calls ----------------------------------------------------------------------

    def get(self, path: str, **params: Any) -> list[Any]:
        """``GET /v1/<path>`` with query ``params``; returns ``D.Results``."""
        return self.request("GET", path, params=params).results

    def post(self, path: str, data: Any = None, **params: Any) -> list[Any]:
        """``POST /v1/<path>``; ``data`` is sent as ``{"D": data}``. Never retried."""
        return self.request("POST", path, params=params, data=data).results

    def put(self, path: str, data: Any = None, **params: Any) -> list[Any]:
        """``PUT /v1/<path>``; ``data`` is sent as ``{"D": data}``."""
        return self.request("PUT", path, params=params, data=data).results

    def delete(self, path: str, **params: Any) -> list[Any]:
        """``DELETE /v1/<path>``."""
        return self.request("DELETE", path, params=params).results

    def paginate(self, path: str, **params: Any) -> Iterator[Any]:
        """Every result of a listing, page after page (``_pagination=1``, ``_page``,
        ``_limit``; 25 a page unless ``_limit`` says otherwise)."""
        params = dict(params)
        params.setdefault("_limit", 25)
        params["_pagination"] = 1
        page = int(params.pop("_page", 1))
        while True:
            response = self.request("GET", path, params={**params, "_page": page})
            yield from response.results
            info = response.pagination or {}
            total = info.get("TotalPages")
            if not response.results or not isinstance(total, int) or page >= total:
                return
            page += 1

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        data: Any = None,
    ) -> SparkResponse:
        """Send one API call with refresh and bounded retry; return the whole answer.

        :raises NotSignedIn: no grant for this session (and no single-session keys).
        :raises ReauthenticationRequired: the platform refused the refresh token.
        :raises RateLimited: still over the limit after the allowed retries.
        :raises PlatformUnavailable: timeouts, 5xx, or an answer that is not Spark JSON.
        :raises SparkAPIError: any other Spark error, with its code and message.
        """
        method = method.upper()
        url = self._config.api_url + _api_path(path)
        if params:
            query = _query(params)
            if query:
                url = f"{url}?{query}"
        body = None if data is None else json.dumps({"D": data}).encode()
        self._load()
        if self._record is None or self._ref is None:
            if self._app_refused:
                raise ReauthenticationRequired(
                    "The single-session tokens were refused; configure a new pair"
                )
            raise NotSignedIn()
        if self._tokens.is_due(self._record):
            try:
                self._refresh()
            except (PlatformUnavailable, StoreUnavailable):
                # Early, inside the leeway: the current token still works, so use it; a
                # real expiry comes back as 1020 and is refreshed then.
                if time.time() >= self._record["expires_at"]:
                    raise
        reply = self._send(method, url, body)
        # At most two retries and one refresh at the platform: a token another request
        # stored may itself have expired since, but a token just refreshed is final.
        for _ in range(2):
            if reply.status != 401:
                break
            renewal = self._renew(self._code(reply))
            if renewal is None:
                break
            reply = self._send(method, url, body)
            if renewal == "refreshed":
                break
        if reply.status == 401 and self._code(reply) == CODE_TOKEN_EXPIRED:
            raise ReauthenticationRequired("The platform still reports the token expired")
        return self._result(reply)

    # -- internals ------------------------------------------------------------------

    def _renew(self, code: int | None) -> Renewal | None:
        """After a 401: get another token worth a retry, or ``None``.

        Code 1020 (expired): the server's word beats our clock, so refresh (single flight:
        another request may already have, and then its token is used). Code 1000 (unknown
        token): another request may have refreshed meanwhile, which kills the old access
        token; use the stored one if it changed.
        """
        if code == CODE_TOKEN_EXPIRED:
            return "refreshed" if self._refresh() else "adopted"
        if code == CODE_INVALID_KEY:
            assert self._ref is not None
            assert self._record is not None
            stored = self._tokens.load(self._ref, fresh=True)
            if stored is not None and stored["access_token"] != self._record["access_token"]:
                self._record = stored
                return "adopted"
        return None

    def _refresh(self) -> bool:
        """Refresh (single flight); whether this call reached the platform."""
        assert self._ref is not None
        assert self._record is not None
        self._record, refreshed = self._tokens.refresh(self._ref, self._record)
        if refreshed:
            token_refreshed.send(self._app, scope=self._ref.scope, app_wide=self._ref.is_app)
        return refreshed

    def _send(self, method: str, url: str, body: bytes | None) -> Reply:
        assert self._record is not None
        headers = dict(self._base_headers)
        headers["Authorization"] = f"OAuth {self._record['access_token']}"
        if body is not None:
            headers["Content-Type"] = "application/json"
        attempts = 1 + (self._config.retries if method in _IDEMPOTENT else 0)
        for attempt in range(attempts):
            reply = self._transport.request(method, url, headers=headers, body=body)
            if attempt + 1 == attempts or not self._retryable(reply):
                return reply
            wait = reply.retry_after()
            if wait is None:
                wait = min(self._config.max_retry_wait, 0.25 * 2**attempt) * (
                    0.5 + random.random() / 2  # noqa: S311 - jitter, not security
                )
            if wait > self._config.max_retry_wait:
                return reply
            time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _retryable(self, reply: Reply) -> bool:
        return reply.status in (429, 503) or (
            reply.status >= 400 and self._code(reply) == CODE_RATE_LIMITED
        )

    @staticmethod
    def _code(reply: Reply) -> int | None:
        return _spark_code(_envelope(reply))

    def _result(self, reply: Reply) -> SparkResponse:
        envelope = _envelope(reply)
        if 200 <= reply.status < 300:
            if envelope is None:
                if not reply.body.strip():
                    return SparkResponse(reply.status, {"Success": True})
                raise PlatformUnavailable(
                    f"The Spark API answered HTTP {reply.status} without a D envelope"
                )
            if envelope.get("Success") is not False:
                return SparkResponse(reply.status, envelope)
        code = _spark_code(envelope)
        message = envelope.get("Message") if envelope else None
        if not isinstance(message, str):
            message = f"HTTP {reply.status}"
        message = message[:500]
        if code == CODE_RATE_LIMITED or reply.status == 429:
            raise RateLimited(
                reply.status, code, message, envelope, retry_after=reply.retry_after()
            )
        if reply.status >= 500:
            detail = "" if code is None else f", code {code}"
            raise PlatformUnavailable(
                f"The Spark API answered HTTP {reply.status}{detail}",
                retry_after=reply.retry_after(),
            )
        if reply.status == 401 and code == CODE_INVALID_KEY and self._ref is not None:
            # The grant was revoked (sign-out elsewhere, or at the platform).
            assert self._record is not None
            self._tokens.discard(self._ref, self._record)
            raise ReauthenticationRequired("The platform no longer accepts this sign-in")
        raise SparkAPIError(reply.status, code, message, envelope)
