""":class:`SparkPlatform`: the simulated FBS Spark platform's state and control API.

The WSGI side (parsing requests, building answers) is in :mod:`flask_spark.testing.routes`;
everything that changes state happens here, under one lock.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from . import data
from .faults import Fault
from .oauth import Client, Grant, GrantInfo, GrantStore
from .openid import OpenIDProvider, profile_claims
from .records import STAT_NAMES, RecordedRequest, Stats

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["GrantInfo", "SparkPlatform"]


@dataclasses.dataclass(frozen=True)
class _Settings:
    token_lifetime: int
    code_lifetime: float
    auto_approve: bool
    latency: float
    force_deny: bool
    rate_limit: int | None
    rate_window: float
    rate_limit_status: int
    superseded_token_code: int
    replication_records: int
    replication_only: bool
    openid_claims_in_id_token: bool
    openid_auth_methods: tuple[str, ...]


class SparkPlatform:
    """A simulated FBS Spark platform: the OAuth 2 endpoints and a small data API, as a
    plain WSGI application with a thread-safe control API for tests.

    Serve it with :class:`~flask_spark.testing.SimulatorServer`, which sets :attr:`url`,
    :attr:`platform_url`, :attr:`api_url` and :attr:`ca_file` while it runs. The
    authorization endpoints (``/oauth2``, ``/auth/vow/<portal>``) and the API (``/v1/...``)
    share one origin.

    :param client_id: the default client's key.
    :param client_secret: the default client's secret.
    :param redirect_uris: the redirect URIs registered for the default client; an
        authorization request must name one of them exactly.
    :param auto_approve: redirect straight back with a code; when false the authorization
        endpoint shows a consent page where a user is picked and approves or denies.
    :param token_lifetime: seconds an access token lives (its ``expires_in``).
    :param code_lifetime: seconds an authorization code can be exchanged.
    :param latency: seconds added to every request.
    :param force_deny: every authorization is answered with ``error=access_denied``.
    :param rate_limit: data requests allowed per client key in ``rate_window`` seconds
        before code 1550; ``None`` (the default) for no limit.
    :param rate_window: the rate limiter's window in seconds (the platform's is 300).
    :param rate_limit_status: the status of a 1550 answer: 429, or 503 as older
        deployments answered.
    :param superseded_token_code: the answer to an access token that a refresh replaced:
        1020 (expired, the default: the platform keeps the session record, and a client
        that lost a refresh race just refreshes with the newer token it has stored) or
        1000 (invalid key). A revoked grant's tokens always get 1000.
    :param replication_records: how many listings the replication host
        (:attr:`replication_url`) holds: the data set's own, then made-up ones.
    :param replication_only: the key may only use the replication host: data calls to the
        normal API answer 403 with code 1021.
    :param openid_claims_in_id_token: OpenID Connect id_tokens carry the standard claims
        (``name``, ``email``...); when false only ``sub`` and the protocol's own claims, so
        a client has to ask the userinfo endpoint.
    :param openid_auth_methods: how the token endpoint takes the client's credentials, as
        discovery lists them: ``client_secret_post`` and ``client_secret_basic`` (both,
        by default, as the platform's published copy lists them).
    :param clock: the platform's clock for code and token expiry and the rate limiter;
        ``time.time`` by default, injectable to test expiry without sleeping.
    """

    def __init__(
        self,
        client_id: str = "flask-spark-test",
        client_secret: str = "flask-spark-secret",  # noqa: S107 (the simulator's test key)
        redirect_uris: Iterable[str] = ("http://localhost/callback",),
        *,
        auto_approve: bool = True,
        token_lifetime: int = 86400,
        code_lifetime: float = 60,
        latency: float = 0.0,
        force_deny: bool = False,
        rate_limit: int | None = None,
        rate_window: float = 300.0,
        rate_limit_status: int = 429,
        superseded_token_code: int = 1020,
        replication_records: int | None = None,
        replication_only: bool = False,
        openid_claims_in_id_token: bool = True,
        openid_auth_methods: Iterable[str] = ("client_secret_post", "client_secret_basic"),
        clock: Callable[[], float] = time.time,
    ) -> None:
        from .routes import Router

        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uris = tuple(redirect_uris)
        self.clock = clock
        self._initial = _Settings(
            token_lifetime=token_lifetime,
            code_lifetime=code_lifetime,
            auto_approve=auto_approve,
            latency=latency,
            force_deny=force_deny,
            rate_limit=rate_limit,
            rate_window=rate_window,
            rate_limit_status=rate_limit_status,
            superseded_token_code=superseded_token_code,
            replication_records=(
                len(data.LISTINGS) if replication_records is None else replication_records
            ),
            replication_only=replication_only,
            openid_claims_in_id_token=openid_claims_in_id_token,
            openid_auth_methods=tuple(openid_auth_methods),
        )
        self._validate(self._initial)
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._issued: set[str] = set()
        self._settings = self._initial
        self._store = GrantStore([], self._issued, clock)
        self._counters: dict[str, int] = {}
        self._requests: list[RecordedRequest] = []
        self._faults: list[list[Any]] = []  # [fault, remaining or None]
        self._windows: dict[str, deque[float]] = {}
        self._url: str | None = None
        self._ca_file: str | None = None
        self._openid_provider: OpenIDProvider | None = None  # its keys are made on first use
        self._router = Router(self)
        self.reset()

    @staticmethod
    def _validate(settings: _Settings) -> None:
        if settings.token_lifetime < 0 or settings.code_lifetime < 0 or settings.latency < 0:
            raise ValueError("lifetimes and latency must not be negative")
        if settings.rate_limit is not None and settings.rate_limit < 1:
            raise ValueError("rate_limit must be at least 1, or None")
        if settings.rate_limit_status not in {429, 503}:
            raise ValueError("rate_limit_status must be 429 or 503")
        if settings.superseded_token_code not in {1000, 1020}:
            raise ValueError("superseded_token_code must be 1000 or 1020")
        if settings.replication_records < 0:
            raise ValueError("replication_records must not be negative")

    # -- WSGI -------------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        """The WSGI application."""
        return self._router(environ, start_response)

    # -- where it is served -----------------------------------------------------------

    def _serve_at(self, url: str | None, ca_file: str | None) -> None:
        with self._lock:
            if url is not None and self._url is not None:
                raise RuntimeError("this SparkPlatform is already being served")
            self._url = url
            self._ca_file = ca_file

    @property
    def url(self) -> str:
        """The origin it is served at, e.g. ``https://127.0.0.1:PORT`` (no trailing slash).

        :raises RuntimeError: when no :class:`SimulatorServer` is serving it.
        """
        with self._lock:
            if self._url is None:
                raise RuntimeError("this SparkPlatform is not being served: use SimulatorServer")
            return self._url

    @property
    def platform_url(self) -> str:
        """The base of the authorization endpoints (the same origin as :attr:`url`)."""
        return self.url

    @property
    def api_url(self) -> str:
        """The base of the API, without ``/v1`` (the same origin as :attr:`url`)."""
        return self.url

    @property
    def replication_url(self) -> str:
        """The base of the replication host (``SPARK_REPLICATION_URL``): served on the same
        origin, under ``/replication``."""
        return self.url + "/replication"

    @property
    def ca_file(self) -> str | None:
        """The CA certificate (PEM) that signed the server's certificate, or ``None``."""
        with self._lock:
            return self._ca_file

    # -- settings ---------------------------------------------------------------------

    def _setting(self, name: str) -> Any:
        with self._lock:
            return getattr(self._settings, name)

    def _set(self, **changes: Any) -> None:
        with self._lock:
            settings = dataclasses.replace(self._settings, **changes)
            self._validate(settings)
            self._settings = settings

    @property
    def token_lifetime(self) -> int:
        """Seconds an access token issued from now on lives (its ``expires_in``)."""
        return int(self._setting("token_lifetime"))

    @token_lifetime.setter
    def token_lifetime(self, value: int) -> None:
        self._set(token_lifetime=int(value))

    @property
    def code_lifetime(self) -> float:
        """Seconds an authorization code can be exchanged."""
        return float(self._setting("code_lifetime"))

    @code_lifetime.setter
    def code_lifetime(self, value: float) -> None:
        self._set(code_lifetime=float(value))

    @property
    def auto_approve(self) -> bool:
        """Whether authorization redirects back at once, without a consent page."""
        return bool(self._setting("auto_approve"))

    @auto_approve.setter
    def auto_approve(self, value: bool) -> None:
        self._set(auto_approve=bool(value))

    @property
    def latency(self) -> float:
        """Seconds added to every request."""
        return float(self._setting("latency"))

    @latency.setter
    def latency(self, value: float) -> None:
        self._set(latency=float(value))

    @property
    def force_deny(self) -> bool:
        """When true, every authorization redirects back with ``error=access_denied``."""
        return bool(self._setting("force_deny"))

    @force_deny.setter
    def force_deny(self, value: bool) -> None:
        self._set(force_deny=bool(value))

    @property
    def rate_limit(self) -> int | None:
        """Data requests allowed per client key per :attr:`rate_window`; ``None``: no limit."""
        with self._lock:
            return self._settings.rate_limit

    @rate_limit.setter
    def rate_limit(self, value: int | None) -> None:
        self._set(rate_limit=value)

    @property
    def rate_window(self) -> float:
        """The rate limiter's window, in seconds."""
        return float(self._setting("rate_window"))

    @rate_window.setter
    def rate_window(self, value: float) -> None:
        self._set(rate_window=float(value))

    @property
    def superseded_token_code(self) -> int:
        """The Spark code for an access token replaced by a refresh (1020 or 1000)."""
        return int(self._setting("superseded_token_code"))

    @superseded_token_code.setter
    def superseded_token_code(self, value: int) -> None:
        self._set(superseded_token_code=int(value))

    @property
    def rate_limit_status(self) -> int:
        """The HTTP status of the rate limiter's code 1550 answers (429 or 503)."""
        return int(self._setting("rate_limit_status"))

    @rate_limit_status.setter
    def rate_limit_status(self, value: int) -> None:
        self._set(rate_limit_status=int(value))

    @property
    def replication_records(self) -> int:
        """How many listings the replication host holds."""
        return int(self._setting("replication_records"))

    @replication_records.setter
    def replication_records(self, value: int) -> None:
        self._set(replication_records=int(value))

    @property
    def replication_only(self) -> bool:
        """When true, data calls to the normal API answer 403 with code 1021."""
        return bool(self._setting("replication_only"))

    @replication_only.setter
    def replication_only(self, value: bool) -> None:
        self._set(replication_only=bool(value))

    @property
    def openid_claims_in_id_token(self) -> bool:
        """Whether id_tokens carry the standard claims (else only the userinfo endpoint)."""
        return bool(self._setting("openid_claims_in_id_token"))

    @openid_claims_in_id_token.setter
    def openid_claims_in_id_token(self, value: bool) -> None:
        self._set(openid_claims_in_id_token=bool(value))

    @property
    def openid_auth_methods(self) -> tuple[str, ...]:
        """How the OpenID token endpoint takes client credentials (``client_secret_post``,
        ``client_secret_basic``); a request that uses another is ``invalid_client``."""
        return tuple(self._setting("openid_auth_methods"))

    @openid_auth_methods.setter
    def openid_auth_methods(self, value: Iterable[str]) -> None:
        self._set(openid_auth_methods=tuple(value))

    # -- OpenID Connect ---------------------------------------------------------------

    @property
    def _openid(self) -> OpenIDProvider:
        with self._lock:
            if self._openid_provider is None:
                self._openid_provider = OpenIDProvider(self.clock)
            return self._openid_provider

    @property
    def openid_configuration_url(self) -> str:
        """The discovery document's URL (``<platform>/.well-known/openid-configuration``)."""
        return f"{self.platform_url}/.well-known/openid-configuration"

    @property
    def signing_kid(self) -> str:
        """The ``kid`` of the key id_tokens are signed with now."""
        return self._openid.signing_kid

    def rotate_signing_key(self, *, keep_old: bool = True) -> str:
        """Sign id_tokens with a new key from now on, as a platform rotating its keys
        does; the JWKS lists the new key, and the old ones too unless ``keep_old`` is
        false. Returns the new ``kid``."""
        with self._lock:
            return self._openid.rotate(keep_old=keep_old)

    # -- control ----------------------------------------------------------------------

    def reset(self) -> None:
        """Forget all grants, codes, issued values, counters, recorded requests, faults,
        rate-limit windows and clients added with :meth:`register_client`; restore the
        constructor's settings. Requests in flight finish against the new state."""
        with self._lock:
            self._settings = self._initial
            self._issued = {self.client_secret}
            default = Client(self.client_id, self.client_secret, self.redirect_uris)
            self._store = GrantStore([default], self._issued, self.clock)
            self._counters = dict.fromkeys(STAT_NAMES, 0)
            self._requests = []
            self._faults = []
            self._windows = {}
            self._openid_provider = None

    def register_client(
        self, client_id: str, client_secret: str, redirect_uris: Iterable[str]
    ) -> None:
        """Register another client key (or replace one) until the next :meth:`reset`."""
        uris = tuple(redirect_uris)
        if not client_id or not client_secret or not uris:
            raise ValueError("a client needs an id, a secret and at least one redirect URI")
        with self._lock:
            self._store.clients[client_id] = Client(client_id, client_secret, uris)
            self._issued.add(client_secret)

    @property
    def accounts(self) -> tuple[dict[str, Any], ...]:
        """Copies of the built-in accounts a user can sign in as; the first is the default."""
        return copy.deepcopy(data.ACCOUNTS)

    def consumers(self, portal: str) -> tuple[dict[str, Any], ...]:
        """Copies of the consumers who can sign in to the VOW portal ``portal``
        (``/auth/vow/<portal>``) instead of :attr:`accounts`; the first is the default.
        Each has an account ``Id`` of its own and ``UserType`` ``"VowConsumer"``."""
        return data.consumers(portal)

    def expire_all(self) -> None:
        """Expire every access token issued so far: data calls with one get code 1020."""
        with self._lock:
            for grant in self._store.by_access.values():
                grant.expired = True

    def expire(self, access_token: str) -> None:
        """Expire one live access token.

        :raises KeyError: if it is not a live access token.
        """
        with self._lock:
            self._store.live(access_token).expired = True

    def revoke_refresh_token(self, refresh_token: str) -> None:
        """Make a refresh token unusable (the access token keeps working until it expires).

        :raises KeyError: if it is not a live refresh token.
        """
        with self._lock:
            grant = self._store.by_refresh.pop(refresh_token, None)
            if grant is None:
                raise KeyError("not a live refresh token")

    def revoke_grant(self, access_token: str) -> None:
        """Revoke the whole grant of an access token: both of its tokens stop working.

        :raises KeyError: if it is not a live access token.
        """
        with self._lock:
            self._store.drop(self._store.live(access_token))

    def issue_tokens(
        self,
        user: str | None = None,
        *,
        client_id: str | None = None,
        role: str = "idx",
        portal: str | None = None,
    ) -> dict[str, Any]:
        """Issue a grant directly, as for a "single session" key that comes with tokens.

        :param user: the ``Id`` of one of :attr:`accounts` (of :meth:`consumers` with
            ``portal``); the first by default.
        :param client_id: the client it belongs to; the default client by default.
        :returns: ``{"access_token", "refresh_token", "expires_in"}``.
        """
        choices = data.consumers(portal) if portal is not None else data.ACCOUNTS
        user_id = user or choices[0]["Id"]
        if user_id not in {item["Id"] for item in choices}:
            raise KeyError(f"no such user {user_id[:40]!r}")
        with self._lock:
            owner = client_id or self.client_id
            if owner not in self._store.clients:
                raise KeyError(f"no client {owner!r}")
            return self._store.new_grant(
                owner, user_id, role, portal, self._settings.token_lifetime
            )

    def user_for(self, access_token: str) -> dict[str, Any]:
        """The account (as ``/v1/my/account`` shows it) a live access token belongs to.

        :raises KeyError: if it is not a live access token.
        """
        with self._lock:
            return data.account(self._store.live(access_token).user_id)

    def grant_for(self, access_token: str) -> GrantInfo:
        """What the platform knows about the grant of a live access token.

        :raises KeyError: if it is not a live access token.
        """
        with self._lock:
            return self._store.info(self._store.live(access_token))

    def issued_values(self) -> set[str]:
        """Every code, access token and refresh token issued since the last :meth:`reset`,
        and the client secrets registered since: what must never show up in a log, a
        cookie or a page."""
        with self._lock:
            return set(self._issued)

    # -- faults -----------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        """Queue a :class:`Fault`; faults apply first-in first-out to matching requests."""
        with self._lock:
            self._faults.append([fault, fault.count])

    def clear_faults(self) -> None:
        """Drop every queued fault."""
        with self._lock:
            self._faults.clear()

    def rate_limit_next(
        self, route: str = "data", *, status: int = 429, retry_after: int = 1, count: int = 1
    ) -> None:
        """Answer the next ``count`` requests of ``route`` with code 1550 and
        ``Retry-After``."""
        self.add_fault(
            Fault(route, "rate_limit", count=count, status=status, retry_after=retry_after)
        )

    def fail_next(
        self, route: str, status: int = 500, *, count: int = 1, code: int | None = None
    ) -> None:
        """Answer the next ``count`` requests of ``route`` with ``status``."""
        self.add_fault(Fault(route, "status", count=count, status=status, code=code))

    def delay_next(self, route: str, delay: float, *, count: int = 1) -> None:
        """Wait ``delay`` seconds before answering the next ``count`` requests of ``route``."""
        self.add_fault(Fault(route, "delay", count=count, delay=delay))

    def _take_fault(self, route: str) -> Fault | None:
        with self._lock:
            for entry in self._faults:
                fault: Fault = entry[0]
                if fault.applies_to(route):
                    if entry[1] is not None:
                        entry[1] -= 1
                        if entry[1] <= 0:
                            self._faults.remove(entry)
                    return fault
            return None

    # -- counters and records ---------------------------------------------------------

    @property
    def stats(self) -> Stats:
        """A snapshot of the counters (see :class:`Stats`)."""
        with self._lock:
            return Stats(**self._counters)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the list of every request served since the last :meth:`reset`."""
        with self._lock:
            return list(self._requests)

    def requests_for(self, route: str) -> list[RecordedRequest]:
        """The recorded requests of one route (``"authorize"``, ``"grant"``, ``"data"``,
        ``"revoke"`` or ``"other"``)."""
        with self._lock:
            return [r for r in self._requests if r.route == route]

    @property
    def in_flight(self) -> int:
        """How many requests are being handled right now (not yet recorded)."""
        with self._lock:
            return self._in_flight

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no request is being handled, e.g. one a client gave up on during a
        ``"delay"`` fault, so its record and counters are final. Returns ``False`` if
        requests were still in flight after ``timeout`` seconds."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def _started(self) -> None:
        with self._lock:
            self._in_flight += 1

    def _count(self, name: str) -> None:
        with self._lock:
            self._counters[name] += 1

    def _record(self, entry: RecordedRequest | None) -> None:
        """A request that :meth:`_started` is finished; record it unless ``None``."""
        with self._lock:
            if entry is not None:
                self._requests.append(entry)
            self._in_flight -= 1
            self._idle.notify_all()

    # -- used by the WSGI side (routes.py), each under the lock --------------------------

    def _client(self, client_id: str | None) -> Client | None:
        with self._lock:
            return self._store.clients.get(client_id or "")

    def _known_redirect_uri(self, uri: str) -> bool:
        with self._lock:
            return any(uri in c.redirect_uris for c in self._store.clients.values())

    def _issue_code(
        self,
        client_id: str,
        redirect_uri: str,
        user_id: str,
        role: str,
        portal: str | None,
        *,
        flow: str = "oauth2",
        nonce: str | None = None,
    ) -> str:
        with self._lock:
            self._counters["authorizations"] += 1
            return self._store.issue_code(
                client_id, redirect_uri, user_id, role, portal, flow=flow, nonce=nonce
            )

    def _grant_request(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            settings = self._settings
            status, answer, counter = self._store.grant_request(
                body, settings.token_lifetime, settings.code_lifetime
            )
            if counter is not None:
                self._counters[counter] += 1
            return status, answer

    def _openid_token_request(
        self, body: dict[str, Any], changes: dict[str, Any] | None, signing: str
    ) -> tuple[int, dict[str, Any]]:
        """``POST /openid/token`` (``body`` holds the client's credentials, however it sent
        them): the grant's answer with a ``token_type`` and a fresh ``id_token``."""
        with self._lock:
            settings = self._settings
            status, answer, counter = self._store.grant_request(
                body, settings.token_lifetime, settings.code_lifetime, flow="openid"
            )
            if counter is not None:
                self._counters[counter] += 1
            if status != 200:
                return status, answer
            grant = self._store.by_access[answer["access_token"]]
            nonce = None
            if body.get("grant_type") == "authorization_code":
                nonce = self._store.codes[body["code"]].nonce
            profile = None
            if settings.openid_claims_in_id_token:
                profile = profile_claims(data.account(grant.user_id))
            answer["token_type"] = "Bearer"  # noqa: S105 - a token type, not a secret
            answer["scope"] = "openid profile email"
            answer["id_token"] = self._openid.id_token(
                issuer=self.platform_url,
                client_id=grant.client_id,
                subject=grant.user_id,
                access_token=grant.access_token,
                nonce=nonce,
                profile=profile,
                changes=changes,
                signing=signing,
            )
            self._issued.add(answer["id_token"])
            return status, answer

    def _userinfo(self, access_token: str | None) -> dict[str, Any] | None:
        """The standard claims of a live, unexpired OpenID access token's account."""
        with self._lock:
            grant = self._store.authenticate(access_token, 1000)
            if isinstance(grant, int) or grant.flow != "openid":
                return None
            return {"sub": grant.user_id, **profile_claims(data.account(grant.user_id))}

    def _openid_revoke(self, client_id: str, client_secret: str, token: str) -> bool | None:
        """RFC 7009: revoke the grant of an access or refresh token of the client; ``None``
        when the client did not authenticate, else whether there was such a grant."""
        with self._lock:
            if self._store.authenticate_client(client_id, client_secret) is None:
                return None
            grant = self._store.by_access.get(token) or self._store.by_refresh.get(token)
            if grant is None or grant.client_id != client_id:
                return False
            self._store.drop(grant)
            self._counters["revocations"] += 1
            return True

    def _authenticate(self, access_token: str | None) -> Grant | int:
        with self._lock:
            return self._store.authenticate(access_token, self._settings.superseded_token_code)

    def _revoke(self, access_token: str) -> bool:
        """Revoke by access token (an expired one too); whether there was such a grant."""
        with self._lock:
            grant = self._store.by_access.get(access_token)
            if grant is None:
                return False
            self._store.drop(grant)
            self._counters["revocations"] += 1
            return True

    def _over_rate_limit(self, client_id: str) -> int | None:
        """Count a data request; the ``Retry-After`` seconds if it is over the limit."""
        with self._lock:
            limit, window = self._settings.rate_limit, self._settings.rate_window
            if limit is None:
                return None
            now = self.clock()
            times = self._windows.setdefault(client_id, deque())
            while times and times[0] <= now - window:
                times.popleft()
            if len(times) >= limit:
                self._counters["rate_limited"] += 1
                return max(1, math.ceil(times[0] + window - now))
            times.append(now)
            return None

    def _contacts(self, grant: Grant) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(grant.contacts)

    def _new_contact(self, grant: Grant, fields: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return self._store.new_contact(grant, fields)

    def _update_contact(self, grant: Grant, contact_id: str, fields: dict[str, Any]) -> bool:
        with self._lock:
            return self._store.update_contact(grant, contact_id, fields)

    def _delete_contact(self, grant: Grant, contact_id: str) -> bool:
        with self._lock:
            return self._store.delete_contact(grant, contact_id)
