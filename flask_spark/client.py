"""The Spark API client that :data:`flask_spark.spark_api` resolves to in each request."""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

from .errors import (
    NotSignedIn,
    PlatformUnavailable,
    RateLimited,
    ReauthenticationRequired,
    SparkAPIError,
    StoreUnavailable,
)
from .instance import Instance
from .signals import token_refreshed
from .stores.base import Grant
from .token_format import authorization
from .transport import Reply

log = logging.getLogger("flask_spark")

#: Finds the grant a client calls with: ``(grant, belongs_to_a_signed_in_user)``.
GrantLoader = Callable[[], "tuple[Grant | None, bool]"]

Renewal = Literal["refreshed", "adopted"]
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
_BAD_PATH = re.compile(r"[\x00-\x20\x7f\\#?]|://|^//|(^|/)\.\.?(/|$)")
#: Spark's code for an expired session token.
CODE_TOKEN_EXPIRED = 1020
#: Spark's code for an invalid key or token.
CODE_INVALID_KEY = 1000
#: Spark's code for "use the replication host".
CODE_USE_REPLICATION = 1021
#: The largest ``_limit`` the replication host takes, per resource (else 200).
REPLICATION_PAGE = {"listings": 1000, "accounts": 1000}
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
    #: The platform's ``X-Request-Id`` for the call (what FBS support asks for).
    request_id: str | None = None

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


@dataclass(frozen=True)
class _Call:
    """One API call as sent: the URL, the body, and whether it is a ``GET`` sent as a
    ``POST`` with ``X-HTTP-Method-Override``."""

    url: str
    body: bytes | None
    override: bool = False


class Replication:
    """The iterator :meth:`SparkClient.replicate` returns: every record, page by page.

    :ivar skiptoken: the ``Id`` of the last record yielded (``None`` before the first):
        pass it as ``_skiptoken`` to a later ``replicate`` to go on from there.
    :ivar calls: the pages fetched so far.
    """

    def __init__(
        self, fetch: Callable[..., SparkResponse], path: str, params: Mapping[str, Any]
    ) -> None:
        self._fetch = fetch
        params = dict(params)
        token = params.pop("_skiptoken", None)
        self.skiptoken: str | None = None if token is None else str(token)
        resource = _api_path(path).split("/")[2]
        params.setdefault("_limit", REPLICATION_PAGE.get(resource, 200))
        self._params = params
        self.calls = 0
        self._records = self._walk()

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        return next(self._records)

    def _walk(self) -> Iterator[Any]:
        limit = int(self._params["_limit"])
        while True:
            page = dict(self._params)
            if self.skiptoken is not None:
                page["_skiptoken"] = self.skiptoken
            response = self._fetch(**page)
            self.calls += 1
            for record in response.results:
                record_id = record.get("Id") if isinstance(record, dict) else None
                if isinstance(record_id, str):
                    self.skiptoken = record_id
                yield record
            if len(response.results) < limit:
                return


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

    :data:`~flask_spark.spark_api` makes one per request, and
    :meth:`~flask_spark.Spark.client_for` one per job; not meant to outlive either.
    ``get``/``post``/``put``/``delete`` return ``D.Results``; :meth:`request` returns the
    whole :class:`SparkResponse`. Made by Flask-Spark only, never by an app.
    """

    def __init__(self, instance: Instance, loader: GrantLoader, sender: object) -> None:
        #: Who sends this client's signals (the app).
        self._app = sender
        self._instance = instance.name
        self._budget = instance.budget
        self._config = instance.config
        self._transport = instance.transport
        self._tokens = instance.tokens
        self._loader = loader
        self._grant: Grant | None = None
        self._is_user = False
        self._loaded = False
        self._base_headers = {
            "Accept": "application/json",
            "X-SparkApi-User-Agent": instance.config.user_agent,
        }

    def __repr__(self) -> str:
        who = "unloaded" if not self._loaded else repr(self._grant.key if self._grant else None)
        return f"<SparkClient {who}>"

    # -- who ------------------------------------------------------------------------

    def _load(self) -> None:
        if not self._loaded:
            self._grant, self._is_user = self._loader()
            self._loaded = True

    @property
    def authenticated(self) -> bool:
        """Whether a signed-in user's grant (for the current portal) is behind this client:
        the app-wide token of single-session keys does not count."""
        self._load()
        return self._grant is not None and self._is_user and not self._grant.ended

    @property
    def available(self) -> bool:
        """Whether calls can be made: a signed-in user or single-session keys."""
        self._load()
        return self._grant is not None and not self._grant.ended

    # -- calls ----------------------------------------------------------------------

    def get(self, path: str, **params: Any) -> list[Any]:
        """``GET /v1/<path>`` with query ``params``; returns ``D.Results``."""
        return self.request("GET", path, params=params).results

    def post(self, path: str, data: Any = None, **params: Any) -> list[Any]:
        """``POST /v1/<path>``; ``data`` is sent as ``{"D": data}``. Never retried."""
        return self.request("POST", path, params=params, data=data).results

    def patch(self, path: str, data: Any = None, **params: Any) -> list[Any]:
        """``PATCH /v1/<path>``; ``data`` is sent as ``{"D": data}``. Never retried."""
        return self.request("PATCH", path, params=params, data=data).results

    def count(self, path: str, **params: Any) -> int:
        """How many records ``GET /v1/<path>`` with ``params`` would page through
        (``_pagination=count``: the platform counts, no record is sent).

        :raises PlatformUnavailable: the answer held no count.
        """
        params = {key: value for key, value in params.items() if key not in {"_page", "_limit"}}
        response = self.request("GET", path, params={**params, "_pagination": "count"})
        total = (response.pagination or {}).get("TotalRows")
        if not isinstance(total, int) or isinstance(total, bool) or total < 0:
            raise PlatformUnavailable(
                "The Spark API answered a count without TotalRows", request_id=response.request_id
            )
        return total

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

    def replicate(self, path: str, **params: Any) -> Replication:
        """Every record of ``GET /v1/<path>`` from the replication host
        (:data:`SPARK_REPLICATION_URL`), at the largest page it allows (1,000 listings or
        accounts, else 200), paged with ``_skiptoken``. Lazy: one call per page as you
        iterate. To resume, pass ``_skiptoken=`` the :attr:`Replication.skiptoken` of an
        earlier run (the ``Id`` of the last record it yielded)."""
        return Replication(
            lambda **page: self._call("GET", path, params=page, base=self._config.replication_url),
            path,
            params,
        )

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
        return self._call(method, path, params=params, data=data, base=self._config.api_url)

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        data: Any = None,
        base: str,
    ) -> SparkResponse:
        """:meth:`request`, to the API at ``base``. A missing sign-in names this client's
        instance, so that the default handler sends the browser to its ``/login``."""
        method = method.upper()
        api_path = _api_path(path)
        call = self._prepare(method, base + api_path, params, data)
        try:
            self._ready_grant()
            reply = self._send_renewing(method, call)
            self._drop_if_revoked(reply)
        except NotSignedIn as exc:
            if exc.instance is None:
                exc.instance = self._instance
            raise
        assert self._grant is not None  # _ready_grant raised without one
        try:
            return _result(reply, self._grant.access_token)
        except (SparkAPIError, PlatformUnavailable) as exc:
            log.warning(
                "Spark API call failed: %s %s answered HTTP %s, code %s, request id %s",
                method,
                api_path,
                reply.status,
                getattr(exc, "code", None),
                reply.request_id or "none",
            )
            raise

    def _prepare(
        self, method: str, url: str, params: Mapping[str, Any] | None, data: Any
    ) -> _Call:
        """The call as it goes on the wire: its URL and body, and whether a ``GET`` too
        long for a URL (HTTP 414) goes as a ``POST`` that says it is a ``GET``, the
        parameters form-encoded in its body, as FBS's own clients send it."""
        query = _query(params) if params else ""
        body = None if data is None else json.dumps({"D": data}).encode()
        if not query:
            return _Call(url, body)
        if method == "GET" and len(url) + 1 + len(query) > self._config.max_url_length:
            return _Call(url, query.encode(), override=True)
        return _Call(f"{url}?{query}", body)

    def _ready_grant(self) -> None:
        """Load the grant and make its token fit to send: refreshed when due, or the
        new one when another request is refreshing it.

        :raises NotSignedIn: there is no grant.
        :raises ReauthenticationRequired: the app-wide grant has ended.
        """
        self._load()
        if self._grant is None:
            raise NotSignedIn()
        if self._grant.ended:
            raise ReauthenticationRequired(
                "The single-session tokens were refused; configure a new pair"
            )
        if self._tokens.is_personal(self._grant):
            return
        if self._tokens.is_due(self._grant):
            try:
                self._refresh()
            except (PlatformUnavailable, StoreUnavailable):
                # Early, inside the leeway: the current token still works, so use it; a
                # real expiry comes back as 1020 and is refreshed then.
                if time.time() >= self._grant.expires_at:
                    raise
        elif self._tokens.refreshing(self._grant):
            # Another request is refreshing this grant: wait for its tokens rather than
            # send a call the platform would refuse (and count). If that refresh fails,
            # its answer is this call's too, as for the calls queued behind it after a
            # 1020: the platform may have taken the refresh token after all.
            self._grant = self._tokens.settled(self._grant)

    def _send_renewing(self, method: str, call: _Call) -> Reply:
        """Send the call; after a 401, renew the token and send it again: at most two
        retries and one refresh at the platform (a token another request stored may
        itself have expired since, but a token just refreshed is final)."""
        assert self._grant is not None
        reply = self._send(method, call)
        if reply.status == 401 and self._tokens.is_personal(self._grant):
            raise ReauthenticationRequired(
                "The platform refused the personal access token: replace SPARK_ACCESS_TOKEN "
                "(there is nothing to refresh)"
            )
        for _ in range(2):
            if reply.status != 401:
                break
            renewal = self._renew(self._code(reply))
            if renewal is None:
                break
            reply = self._send(method, call)
            if renewal == "refreshed":
                break
        return reply

    def _drop_if_revoked(self, reply: Reply) -> None:
        """A 401 that renewing did not cure ends the sign-in: with code 1000 the grant was
        revoked (signed out elsewhere, or at the platform) and is dropped.

        :raises ReauthenticationRequired: for codes 1020 and 1000.
        """
        if reply.status != 401:  # the body is read once more: only for this status
            return
        code = self._code(reply)
        if code == CODE_TOKEN_EXPIRED:
            raise ReauthenticationRequired("The platform still reports the token expired")
        if code == CODE_INVALID_KEY:
            assert self._grant is not None
            self._tokens.discard(self._grant)
            raise ReauthenticationRequired("The platform no longer accepts this sign-in")

    # -- internals ------------------------------------------------------------------

    def _renew(self, code: int | None) -> Renewal | None:
        """After a 401: get another token worth a retry, or ``None``.

        Code 1020 (expired): the server's word beats our clock, so refresh (single flight:
        another request may already have, and then its token is used). Code 1000 (unknown
        token): another request may have refreshed meanwhile, which kills the old access
        token; use the stored one if it changed, or wait for the refresh still under way
        (its holder may be saving through a store failover).
        """
        if code == CODE_TOKEN_EXPIRED:
            return "refreshed" if self._refresh() else "adopted"
        if code == CODE_INVALID_KEY:
            assert self._grant is not None
            stored = self._tokens.get(self._grant.key, fresh=True)
            if stored is not None and stored.access_token not in ("", self._grant.access_token):
                self._grant = stored
                return "adopted"
            if stored is not None and stored.lease_until > time.time():
                return "refreshed" if self._refresh() else "adopted"
        return None

    def _refresh(self) -> bool:
        """Refresh (single flight); whether this call reached the platform."""
        assert self._grant is not None
        self._grant, refreshed = self._tokens.refresh(self._grant)
        if refreshed:
            key = self._grant.key
            token_refreshed.send(
                self._app,
                instance=self._instance,
                scope=key.scope,
                app_wide=key == self._tokens.app_key,
                account_id=None if key == self._tokens.app_key else key.account_id,
            )
        return refreshed

    def _send(self, method: str, call: _Call) -> Reply:
        """Send the call, retrying an idempotent one that was answered 429/503/1550.
        With :attr:`_Call.override`, a ``GET`` goes as a ``POST`` whose body holds its
        query."""
        assert self._grant is not None
        headers = dict(self._base_headers)
        try:
            scheme = (
                "Bearer" if self._tokens.is_personal(self._grant) else self._config.token_scheme
            )
            headers["Authorization"] = authorization(self._grant.access_token, scheme)
        except ValueError:
            # Checked where it entered; a record changed behind our back is no sign-in.
            raise ReauthenticationRequired("The stored sign-in is unusable") from None
        wire = method
        if call.override:
            wire = "POST"
            headers["X-HTTP-Method-Override"] = "GET"
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif call.body is not None:
            headers["Content-Type"] = "application/json"
        attempts = 1 + (self._config.retries if method in _IDEMPOTENT else 0)
        for attempt in range(attempts):
            if self._budget is not None:
                self._budget.spend()
            reply = self._transport.request(wire, call.url, headers=headers, body=call.body)
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


def _result(reply: Reply, token: str = "") -> SparkResponse:
    """The answer as a :class:`SparkResponse`, or the typed error it means (whose message
    never repeats ``token``, should the platform echo it)."""
    envelope = _envelope(reply)
    if 200 <= reply.status < 300:
        if envelope is None:
            if not reply.body.strip():
                return SparkResponse(reply.status, {"Success": True}, reply.request_id)
            raise PlatformUnavailable(
                f"The Spark API answered HTTP {reply.status} without a D envelope",
                request_id=reply.request_id,
            )
        if envelope.get("Success") is not False:
            return SparkResponse(reply.status, envelope, reply.request_id)
    code = _spark_code(envelope)
    message = envelope.get("Message") if envelope else None
    if not isinstance(message, str):
        message = f"HTTP {reply.status}"
    if code == CODE_USE_REPLICATION:
        message += " (bulk copies go to the replication host: use spark_api.replicate())"
    if token:
        message = message.replace(token, "[token]")
    message = message[:500]
    request_id = reply.request_id
    if code == CODE_RATE_LIMITED or reply.status == 429:
        raise RateLimited(
            reply.status,
            code,
            message,
            envelope,
            retry_after=reply.retry_after(),
            request_id=request_id,
        )
    if reply.status >= 500:
        detail = "" if code is None else f", code {code}"
        raise PlatformUnavailable(
            f"The Spark API answered HTTP {reply.status}{detail}",
            retry_after=reply.retry_after(),
            request_id=request_id,
        )
    raise SparkAPIError(reply.status, code, message, envelope, request_id)
