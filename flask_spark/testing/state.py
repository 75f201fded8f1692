""":class:`PlatformState`: the simulated platform's state, and every change to it.

Clients, codes and grants, counters, recorded requests, faults, rate windows, the OpenID
keys and where the platform is served, all under one lock. Two sides work through its
methods: :class:`~flask_spark.testing.SparkPlatform`'s control API (for tests) and the
request handlers of :mod:`flask_spark.testing.routes` (its request-handling API).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import threading
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Any

from . import data
from .faults import Fault
from .oauth import Client, Grant, GrantInfo, GrantStore
from .openid import OpenIDProvider, profile_claims
from .records import STAT_NAMES, RecordedRequest, Stats

#: The reset (a generation number) before which the request being handled in this
#: context started; ``None`` outside a request (the control API).
_started_in: ContextVar[int | None] = ContextVar("flask_spark_simulator_request", default=None)

__all__ = ["PlatformState", "Settings"]


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a test can set on a platform (see :class:`SparkPlatform`'s parameters)."""

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

    def validate(self) -> None:
        """:raises ValueError: when a value is out of range."""
        if self.token_lifetime < 0 or self.code_lifetime < 0 or self.latency < 0:
            raise ValueError("lifetimes and latency must not be negative")
        if self.rate_limit is not None and self.rate_limit < 1:
            raise ValueError("rate_limit must be at least 1, or None")
        if self.rate_limit_status not in {429, 503}:
            raise ValueError("rate_limit_status must be 429 or 503")
        if self.superseded_token_code not in {1000, 1020}:
            raise ValueError("superseded_token_code must be 1000 or 1020")
        if self.replication_records < 0:
            raise ValueError("replication_records must not be negative")


class PlatformState:
    """The state of one simulated platform; each method holds the lock.

    :param initial: the settings :meth:`reset` restores.
    :param default_client: the client key that survives :meth:`reset`.
    :param clock: the platform's clock (code and token expiry, the rate limiter).
    """

    def __init__(
        self, initial: Settings, default_client: Client, clock: Callable[[], float]
    ) -> None:
        initial.validate()
        self.clock = clock
        self._initial = initial
        self._default_client = default_client
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        # Bumped by each reset: a request started before it (one a test gave up on) is
        # neither recorded nor counted, nor takes a fault, after it.
        self._generation = 0
        self._url: str | None = None
        self._ca_file: str | None = None
        self._settings = initial
        self._issued: set[str] = set()
        self._store = GrantStore([], self._issued, clock)
        self._counters: dict[str, int] = {}
        self._requests: list[RecordedRequest] = []
        self._faults: list[list[Any]] = []  # [fault, remaining or None]
        self._windows: dict[str, deque[float]] = {}
        self._openid_provider: OpenIDProvider | None = None  # its keys are made on first use
        self.reset()

    # -- where it is served -----------------------------------------------------------

    def serve_at(self, url: str | None, ca_file: str | None) -> None:
        """Record the origin a server serves the platform at, and its CA file; ``None``
        when it stops.

        :raises RuntimeError: when another server serves it already.
        """
        with self._lock:
            if url is not None and self._url is not None:
                raise RuntimeError("this SparkPlatform is already being served")
            self._url = url
            self._ca_file = ca_file

    @property
    def url(self) -> str | None:
        """The origin it is served at, or ``None``."""
        with self._lock:
            return self._url

    @property
    def ca_file(self) -> str | None:
        """The CA certificate of the server that serves it, or ``None``."""
        with self._lock:
            return self._ca_file

    def served_url(self) -> str:
        """The origin it is served at.

        :raises RuntimeError: when no server serves it.
        """
        url = self.url
        if url is None:
            raise RuntimeError("this SparkPlatform is not being served: use SimulatorServer")
        return url

    # -- settings ---------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        """The current settings (an immutable snapshot)."""
        with self._lock:
            return self._settings

    def change(self, **changes: Any) -> None:
        """Change some settings.

        :raises ValueError: when a value is out of range (nothing changes then).
        """
        with self._lock:
            settings = dataclasses.replace(self._settings, **changes)
            settings.validate()
            self._settings = settings

    # -- control ----------------------------------------------------------------------

    def reset(self) -> None:
        """Back to the initial settings and the default client, with nothing issued,
        counted, recorded or queued."""
        with self._lock:
            self._generation += 1
            self._settings = self._initial
            self._issued = {self._default_client.client_secret}
            self._store = GrantStore([self._default_client], self._issued, self.clock)
            self._counters = dict.fromkeys(STAT_NAMES, 0)
            self._requests = []
            self._faults = []
            self._windows = {}
            self._openid_provider = None

    def register_client(self, client: Client) -> None:
        """Add a client key, or replace one with the same id."""
        with self._lock:
            self._store.clients[client.client_id] = client
            self._issued.add(client.client_secret)

    def expire_all(self) -> None:
        """Expire every access token issued so far."""
        with self._lock:
            for grant in self._store.by_access.values():
                grant.expired = True

    def expire(self, access_token: str) -> None:
        """:raises KeyError: if it is not a live access token."""
        with self._lock:
            self._store.live(access_token).expired = True

    def revoke_refresh_token(self, refresh_token: str) -> None:
        """:raises KeyError: if it is not a live refresh token."""
        with self._lock:
            if self._store.by_refresh.pop(refresh_token, None) is None:
                raise KeyError("not a live refresh token")

    def revoke_grant(self, access_token: str) -> None:
        """:raises KeyError: if it is not a live access token."""
        with self._lock:
            self._store.drop(self._store.live(access_token))

    def issue_tokens(
        self, client_id: str, user_id: str, role: str, portal: str | None
    ) -> dict[str, Any]:
        """A new grant, as a single session key comes with; the token answer.

        :raises KeyError: if there is no such client.
        """
        with self._lock:
            if client_id not in self._store.clients:
                raise KeyError(f"no client {client_id!r}")
            return self._store.new_grant(
                client_id, user_id, role, portal, self._settings.token_lifetime
            )

    def user_id_for(self, access_token: str) -> str:
        """:raises KeyError: if it is not a live access token."""
        with self._lock:
            return self._store.live(access_token).user_id

    def grant_for(self, access_token: str) -> GrantInfo:
        """:raises KeyError: if it is not a live access token."""
        with self._lock:
            return self._store.info(self._store.live(access_token))

    def issued_values(self) -> set[str]:
        """Every value issued since the last :meth:`reset`, secrets included."""
        with self._lock:
            return set(self._issued)

    def add_fault(self, fault: Fault) -> None:
        """Queue a fault, after those queued already."""
        with self._lock:
            self._faults.append([fault, fault.count])

    def clear_faults(self) -> None:
        """Drop every queued fault."""
        with self._lock:
            self._faults.clear()

    def stats(self) -> Stats:
        """A snapshot of the counters."""
        with self._lock:
            return Stats(**self._counters)

    def requests(self, route: str | None = None) -> list[RecordedRequest]:
        """The recorded requests, or those of one route."""
        with self._lock:
            if route is None:
                return list(self._requests)
            return [r for r in self._requests if r.route == route]

    @property
    def in_flight(self) -> int:
        """Requests started and not yet finished."""
        with self._lock:
            return self._in_flight

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is in flight; ``False`` after ``timeout`` seconds."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    # -- OpenID Connect keys -----------------------------------------------------------

    def _openid(self) -> OpenIDProvider:
        with self._lock:
            if self._openid_provider is None:
                self._openid_provider = OpenIDProvider(self.clock)
            return self._openid_provider

    def signing_kid(self) -> str:
        """The ``kid`` id_tokens are signed with now."""
        with self._lock:
            return self._openid().signing_kid

    def rotate_signing_key(self, *, keep_old: bool) -> str:
        """Sign with a new key from now on; its ``kid``."""
        with self._lock:
            return self._openid().rotate(keep_old=keep_old)

    def jwks(self) -> dict[str, Any]:
        """The JWKS document."""
        with self._lock:
            return self._openid().jwks()

    # -- request handling: each request is started, then finished ----------------------

    def started(self) -> Token[int | None]:
        """A request is being handled (in this thread, until :meth:`finished`)."""
        with self._lock:
            self._in_flight += 1
            return _started_in.set(self._generation)

    def finished(self, entry: RecordedRequest | None, started: Token[int | None]) -> None:
        """A request :meth:`started` is done; record it unless ``None`` or it started
        before the last :meth:`reset`."""
        with self._lock:
            if entry is not None and self._counts():
                self._requests.append(entry)
            self._in_flight -= 1
            self._idle.notify_all()
        _started_in.reset(started)

    def _counts(self) -> bool:
        """Whether what is done now counts (under the lock): a control call, or a request
        that started after the last :meth:`reset`."""
        started = _started_in.get()
        return started is None or started == self._generation

    def count(self, name: str) -> None:
        """Add one to a counter of :class:`Stats`."""
        with self._lock:
            if self._counts():
                self._counters[name] += 1

    def take_fault(self, route: str) -> Fault | None:
        """The first queued fault for a request of ``route``, counted as used once (none
        for a request that started before the last :meth:`reset`)."""
        with self._lock:
            if not self._counts():
                return None
            for entry in self._faults:
                fault: Fault = entry[0]
                if fault.applies_to(route):
                    if entry[1] is not None:
                        entry[1] -= 1
                        if entry[1] <= 0:
                            self._faults.remove(entry)
                    return fault
            return None

    # -- request handling: authorization and grants ------------------------------------

    def client(self, client_id: str | None) -> Client | None:
        """The registered client ``client_id``, or ``None``."""
        with self._lock:
            return self._store.clients.get(client_id or "")

    def known_redirect_uri(self, uri: str) -> bool:
        """Whether any client registered ``uri``."""
        with self._lock:
            return any(uri in c.redirect_uris for c in self._store.clients.values())

    def issue_code(
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
        """An authorization code (counted as an authorization)."""
        with self._lock:
            self.count("authorizations")
            return self._store.issue_code(
                client_id, redirect_uri, user_id, role, portal, flow=flow, nonce=nonce
            )

    def grant_request(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """``POST /v1/oauth2/grant``: the status and the JSON answer."""
        with self._lock:
            settings = self._settings
            status, answer, counter = self._store.grant_request(
                body, settings.token_lifetime, settings.code_lifetime
            )
            if counter is not None:
                self.count(counter)
            return status, answer

    def openid_token_request(
        self, body: dict[str, Any], changes: dict[str, Any] | None, signing: str
    ) -> tuple[int, dict[str, Any]]:
        """``POST /openid/token`` (``body`` holds the client's credentials, however it sent
        them): the grant's answer with a ``token_type`` and a fresh ``id_token``, whose
        claims ``changes`` alters and that is signed as ``signing`` says."""
        with self._lock:
            settings = self._settings
            status, answer, counter = self._store.grant_request(
                body, settings.token_lifetime, settings.code_lifetime, flow="openid"
            )
            if counter is not None:
                self.count(counter)
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
            answer["id_token"] = self._openid().id_token(
                issuer=self.served_url(),
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

    def userinfo(self, access_token: str | None) -> dict[str, Any] | None:
        """The standard claims of a live, unexpired OpenID access token's account."""
        with self._lock:
            grant = self._store.authenticate(access_token, 1000)
            if isinstance(grant, int) or grant.flow != "openid":
                return None
            return {"sub": grant.user_id, **profile_claims(data.account(grant.user_id))}

    def openid_revoke(self, client_id: str, client_secret: str, token: str) -> bool | None:
        """RFC 7009: revoke the grant of an access or refresh token of the client; ``None``
        when the client did not authenticate, else whether there was such a grant."""
        with self._lock:
            if self._store.authenticate_client(client_id, client_secret) is None:
                return None
            grant = self._store.by_access.get(token) or self._store.by_refresh.get(token)
            if grant is None or grant.client_id != client_id:
                return False
            self._store.drop(grant)
            self.count("revocations")
            return True

    def revoke(self, access_token: str) -> bool:
        """Revoke by access token (an expired one too); whether there was such a grant."""
        with self._lock:
            grant = self._store.by_access.get(access_token)
            if grant is None:
                return False
            self._store.drop(grant)
            self.count("revocations")
            return True

    # -- request handling: data --------------------------------------------------------

    def authenticate(self, access_token: str | None) -> Grant | int:
        """The grant of a live access token, else the Spark code to answer (1000, 1020)."""
        with self._lock:
            return self._store.authenticate(access_token, self._settings.superseded_token_code)

    def over_rate_limit(self, client_id: str) -> int | None:
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
                self.count("rate_limited")
                return max(1, math.ceil(times[0] + window - now))
            times.append(now)
            return None

    def contacts(self, grant: Grant) -> list[dict[str, Any]]:
        """Copies of the contacts made under ``grant``."""
        with self._lock:
            return copy.deepcopy(grant.contacts)

    def new_contact(self, grant: Grant, fields: dict[str, Any]) -> dict[str, Any]:
        """Make a contact under ``grant``; its record."""
        with self._lock:
            return self._store.new_contact(grant, fields)

    def update_contact(self, grant: Grant, contact_id: str, fields: dict[str, Any]) -> bool:
        """Change a contact; whether there was one."""
        with self._lock:
            return self._store.update_contact(grant, contact_id, fields)

    def delete_contact(self, grant: Grant, contact_id: str) -> bool:
        """Delete a contact; whether there was one."""
        with self._lock:
            return self._store.delete_contact(grant, contact_id)
