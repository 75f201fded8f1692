""":class:`SparkPlatform`: the simulated FBS Spark platform's control API, and its WSGI
application.

Its state, and every change to it, is in :mod:`flask_spark.testing.state`; the WSGI side
(parsing requests, building answers) in :mod:`flask_spark.testing.routes`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from . import data
from .faults import Fault
from .oauth import Client, GrantInfo
from .records import RecordedRequest, Stats
from .routes import Router
from .state import PlatformState, Settings

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["GrantInfo", "SparkPlatform"]


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
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uris = tuple(redirect_uris)
        self.clock = clock
        initial = Settings(
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
        default = Client(client_id, client_secret, self.redirect_uris)
        self._state = PlatformState(initial, default, clock)
        self._router = Router(self._state)

    # -- WSGI -------------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        """The WSGI application."""
        return self._router(environ, start_response)

    # -- where it is served -----------------------------------------------------------

    def serve_at(self, url: str | None, ca_file: str | None = None) -> None:
        """Say where a server serves the platform: the origin (``https://HOST:PORT``, no
        trailing slash) and the CA certificate clients must trust; ``None`` when it stops.
        :class:`~flask_spark.testing.SimulatorServer` calls it; call it yourself only
        when you serve the platform (a WSGI application) with another server.

        :raises RuntimeError: if a server serves it already.
        """
        self._state.serve_at(url, ca_file)

    @property
    def url(self) -> str:
        """The origin it is served at, e.g. ``https://127.0.0.1:PORT`` (no trailing slash).

        :raises RuntimeError: when no :class:`SimulatorServer` is serving it.
        """
        return self._state.served_url()

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
        return self._state.ca_file

    # -- settings ---------------------------------------------------------------------

    @property
    def token_lifetime(self) -> int:
        """Seconds an access token issued from now on lives (its ``expires_in``)."""
        return self._state.settings.token_lifetime

    @token_lifetime.setter
    def token_lifetime(self, value: int) -> None:
        self._state.change(token_lifetime=int(value))

    @property
    def code_lifetime(self) -> float:
        """Seconds an authorization code can be exchanged."""
        return self._state.settings.code_lifetime

    @code_lifetime.setter
    def code_lifetime(self, value: float) -> None:
        self._state.change(code_lifetime=float(value))

    @property
    def auto_approve(self) -> bool:
        """Whether authorization redirects back at once, without a consent page."""
        return self._state.settings.auto_approve

    @auto_approve.setter
    def auto_approve(self, value: bool) -> None:
        self._state.change(auto_approve=bool(value))

    @property
    def latency(self) -> float:
        """Seconds added to every request."""
        return self._state.settings.latency

    @latency.setter
    def latency(self, value: float) -> None:
        self._state.change(latency=float(value))

    @property
    def force_deny(self) -> bool:
        """When true, every authorization redirects back with ``error=access_denied``."""
        return self._state.settings.force_deny

    @force_deny.setter
    def force_deny(self, value: bool) -> None:
        self._state.change(force_deny=bool(value))

    @property
    def rate_limit(self) -> int | None:
        """Data requests allowed per client key per :attr:`rate_window`; ``None``: no limit."""
        return self._state.settings.rate_limit

    @rate_limit.setter
    def rate_limit(self, value: int | None) -> None:
        self._state.change(rate_limit=value)

    @property
    def rate_window(self) -> float:
        """The rate limiter's window, in seconds."""
        return self._state.settings.rate_window

    @rate_window.setter
    def rate_window(self, value: float) -> None:
        self._state.change(rate_window=float(value))

    @property
    def superseded_token_code(self) -> int:
        """The Spark code for an access token replaced by a refresh (1020 or 1000)."""
        return self._state.settings.superseded_token_code

    @superseded_token_code.setter
    def superseded_token_code(self, value: int) -> None:
        self._state.change(superseded_token_code=int(value))

    @property
    def rate_limit_status(self) -> int:
        """The HTTP status of the rate limiter's code 1550 answers (429 or 503)."""
        return self._state.settings.rate_limit_status

    @rate_limit_status.setter
    def rate_limit_status(self, value: int) -> None:
        self._state.change(rate_limit_status=int(value))

    @property
    def replication_records(self) -> int:
        """How many listings the replication host holds."""
        return self._state.settings.replication_records

    @replication_records.setter
    def replication_records(self, value: int) -> None:
        self._state.change(replication_records=int(value))

    @property
    def replication_only(self) -> bool:
        """When true, data calls to the normal API answer 403 with code 1021."""
        return self._state.settings.replication_only

    @replication_only.setter
    def replication_only(self, value: bool) -> None:
        self._state.change(replication_only=bool(value))

    @property
    def openid_claims_in_id_token(self) -> bool:
        """Whether id_tokens carry the standard claims (else only the userinfo endpoint)."""
        return self._state.settings.openid_claims_in_id_token

    @openid_claims_in_id_token.setter
    def openid_claims_in_id_token(self, value: bool) -> None:
        self._state.change(openid_claims_in_id_token=bool(value))

    @property
    def openid_auth_methods(self) -> tuple[str, ...]:
        """How the OpenID token endpoint takes client credentials (``client_secret_post``,
        ``client_secret_basic``); a request that uses another is ``invalid_client``."""
        return self._state.settings.openid_auth_methods

    @openid_auth_methods.setter
    def openid_auth_methods(self, value: Iterable[str]) -> None:
        self._state.change(openid_auth_methods=tuple(value))

    # -- OpenID Connect ---------------------------------------------------------------

    @property
    def openid_configuration_url(self) -> str:
        """The discovery document's URL (``<platform>/.well-known/openid-configuration``)."""
        return f"{self.platform_url}/.well-known/openid-configuration"

    @property
    def signing_kid(self) -> str:
        """The ``kid`` of the key id_tokens are signed with now."""
        return self._state.signing_kid()

    def rotate_signing_key(self, *, keep_old: bool = True) -> str:
        """Sign id_tokens with a new key from now on, as a platform rotating its keys
        does; the JWKS lists the new key, and the old ones too unless ``keep_old`` is
        false. Returns the new ``kid``."""
        return self._state.rotate_signing_key(keep_old=keep_old)

    # -- control ----------------------------------------------------------------------

    def reset(self) -> None:
        """Forget all grants, codes, issued values, counters, recorded requests, faults,
        rate-limit windows and clients added with :meth:`register_client`; restore the
        constructor's settings. A request still in flight (one a test gave up on) finishes
        against the new state, but is neither recorded nor counted, nor takes a fault."""
        self._state.reset()

    def register_client(
        self, client_id: str, client_secret: str, redirect_uris: Iterable[str]
    ) -> None:
        """Register another client key (or replace one) until the next :meth:`reset`."""
        uris = tuple(redirect_uris)
        if not client_id or not client_secret or not uris:
            raise ValueError("a client needs an id, a secret and at least one redirect URI")
        self._state.register_client(Client(client_id, client_secret, uris))

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
        self._state.expire_all()

    def expire(self, access_token: str) -> None:
        """Expire one live access token.

        :raises KeyError: if it is not a live access token.
        """
        self._state.expire(access_token)

    def revoke_refresh_token(self, refresh_token: str) -> None:
        """Make a refresh token unusable (the access token keeps working until it expires).

        :raises KeyError: if it is not a live refresh token.
        """
        self._state.revoke_refresh_token(refresh_token)

    def revoke_grant(self, access_token: str) -> None:
        """Revoke the whole grant of an access token: both of its tokens stop working.

        :raises KeyError: if it is not a live access token.
        """
        self._state.revoke_grant(access_token)

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
        return self._state.issue_tokens(client_id or self.client_id, user_id, role, portal)

    def user_for(self, access_token: str) -> dict[str, Any]:
        """The account (as ``/v1/my/account`` shows it) a live access token belongs to.

        :raises KeyError: if it is not a live access token.
        """
        return data.account(self._state.user_id_for(access_token))

    def grant_for(self, access_token: str) -> GrantInfo:
        """What the platform knows about the grant of a live access token.

        :raises KeyError: if it is not a live access token.
        """
        return self._state.grant_for(access_token)

    def issued_values(self) -> set[str]:
        """Every code, access token and refresh token issued since the last :meth:`reset`,
        and the client secrets registered since: what must never show up in a log, a
        cookie or a page."""
        return self._state.issued_values()

    # -- faults -----------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        """Queue a :class:`Fault`; faults apply first-in first-out to matching requests."""
        self._state.add_fault(fault)

    def clear_faults(self) -> None:
        """Drop every queued fault."""
        self._state.clear_faults()

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

    # -- counters and records ---------------------------------------------------------

    @property
    def stats(self) -> Stats:
        """A snapshot of the counters (see :class:`Stats`)."""
        return self._state.stats()

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the list of every request served since the last :meth:`reset`."""
        return self._state.requests()

    def requests_for(self, route: str) -> list[RecordedRequest]:
        """The recorded requests of one route (``"authorize"``, ``"grant"``, ``"data"``,
        ``"revoke"`` or ``"other"``)."""
        return self._state.requests(route)

    @property
    def in_flight(self) -> int:
        """How many requests are being handled right now (not yet recorded)."""
        return self._state.in_flight

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no request is being handled, e.g. one a client gave up on during a
        ``"delay"`` fault, so its record and counters are final. Returns ``False`` if
        requests were still in flight after ``timeout`` seconds."""
        return self._state.wait_idle(timeout)
