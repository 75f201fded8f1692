"""The :class:`Spark` extension, the :data:`spark_api` proxy and :func:`spark_login_required`."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from flask import Flask, current_app, g, has_request_context, session
from flask_session.base import ServerSideSessionInterface
from werkzeug.exceptions import NotFound
from werkzeug.local import LocalProxy

from .client import SparkClient
from .config import SparkConfig, load_config, normalize_portal
from .errors import (
    ConfigurationError,
    NotSignedIn,
    PlatformUnavailable,
    RateLimited,
    SparkError,
    StoreUnavailable,
)
from .grant import GrantClient
from .pages import unauthorized, unavailable
from .sessions import guard_session_interface, require_session_store
from .store import CacheLibTokenStore, RedisTokenStore, TokenStore
from .tokens import GrantRef, TokenManager, session_owner
from .transport import Transport

PortalLoader = Callable[[], "str | None"]
F = TypeVar("F", bound=Callable[..., Any])


class SparkWarning(UserWarning):
    """A configuration that works but will hurt (such as ``SameSite=Strict``)."""


@dataclass
class SparkState:
    """Per-app state, kept in ``app.extensions["spark"]``."""

    extension: Spark
    config: SparkConfig
    transport: Transport
    grants: GrantClient
    tokens: TokenManager
    portal_loader: PortalLoader | None
    session_ttl: int


class Spark:
    """Sign in with Flexmls for a Flask app.

    ::

        app.config.update(SESSION_TYPE="redis", SPARK_CLIENT_ID="...",
                          SPARK_CLIENT_SECRET="...")
        Session(app)
        spark = Spark(app)          # or Spark() and later spark.init_app(app)

    :param url_prefix: where the ``spark`` blueprint (``/login``, ``/callback``,
        ``/logout``) is mounted; the app root by default.
    :param portal_loader: VOW apps with several portals: a function returning the current
        request's portal name (see :meth:`portal_loader`).
    :param token_store: where tokens live, for Flask-Session types other than ``redis``,
        ``filesystem`` and ``cachelib``.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        url_prefix: str | None = None,
        portal_loader: PortalLoader | None = None,
        token_store: TokenStore | None = None,
    ) -> None:
        self.url_prefix = url_prefix
        self._portal_loader = portal_loader
        self._token_store = token_store
        if app is not None:
            self.init_app(app)

    def portal_loader(self, loader: PortalLoader) -> PortalLoader:
        """Register the function that picks the VOW portal for the current request.

        It returns a portal name (any case) or ``None`` for the configured
        ``SPARK_PORTAL``. Register it before :meth:`init_app`, which checks that a VOW app
        can always find a portal::

            spark = Spark()

            @spark.portal_loader
            def portal_from_subdomain():
                return request.host.split(".")[0]

            spark.init_app(app)
        """
        self._portal_loader = loader
        return loader

    def init_app(self, app: Flask) -> None:
        """Validate the ``SPARK_`` config, register the blueprint and the error handlers.

        :raises ConfigurationError: a key is missing or malformed, or the app has no
            server-side session (Flask-Session).
        """
        config = load_config(app.config, has_portal_loader=self._portal_loader is not None)
        store = self._token_store or _store_for(app)
        guard_session_interface(app)
        if config.has_app_token and not config.redirect_uri:
            raise ConfigurationError(
                "SPARK_REDIRECT_URI",
                "is required with single-session keys (it is sent with every refresh)",
            )
        if app.config.get("SESSION_COOKIE_SAMESITE") == "Strict":
            warnings.warn(
                "SESSION_COOKIE_SAMESITE='Strict' drops the session cookie on the redirect "
                "back from Flexmls, so every sign-in fails; use 'Lax'.",
                SparkWarning,
                stacklevel=2,
            )
        transport = Transport(config.timeout, config.ca_certs, config.pool_size)
        grants = GrantClient(config, transport)
        app.extensions["spark"] = SparkState(
            extension=self,
            config=config,
            transport=transport,
            grants=grants,
            tokens=TokenManager(config, store, grants),
            portal_loader=self._portal_loader,
            session_ttl=max(1, int(app.permanent_session_lifetime.total_seconds())),
        )
        from .views import make_blueprint

        app.register_blueprint(make_blueprint(), url_prefix=self.url_prefix)
        _register_default_handler(app, NotSignedIn, lambda e: unauthorized())
        for error in (PlatformUnavailable, RateLimited, StoreUnavailable):
            _register_default_handler(app, error, unavailable)


def _register_default_handler(
    app: Flask, error: type[SparkError], handler: Callable[[Any], Any]
) -> None:
    """Register ``handler`` unless the app already handles ``error`` or one of its bases
    up to :class:`SparkError` itself (Flask would otherwise prefer ours, the more specific)."""
    registered = app.error_handler_spec.get(None, {}).get(None, {})
    bases = error.__mro__[: error.__mro__.index(SparkError) + 1]
    if not any(base in registered for base in bases):
        app.register_error_handler(error, handler)


def _store_for(app: Flask) -> TokenStore:
    interface: Any = app.session_interface
    if not isinstance(interface, ServerSideSessionInterface):
        raise ConfigurationError(
            "SESSION_TYPE",
            "Flask-Spark keeps tokens server-side: set SESSION_TYPE and call "
            "flask_session.Session(app) before Spark(app)",
        )
    client = getattr(interface, "client", None)
    if client is not None and type(client).__module__.startswith("redis"):
        return RedisTokenStore(client, interface.key_prefix)
    cache = getattr(interface, "cache", None)
    if cache is not None:
        return CacheLibTokenStore(cache)
    raise ConfigurationError(
        "SESSION_TYPE",
        "Flask-Spark stores tokens with 'redis', 'filesystem' or 'cachelib' sessions; "
        "for other types pass Spark(token_store=...)",
    )


def spark_state(app: Flask | None = None) -> SparkState:
    """The :class:`SparkState` of ``app`` (the current app by default)."""
    target = app or current_app
    try:
        return cast(SparkState, target.extensions["spark"])
    except KeyError:
        raise RuntimeError(
            "Flask-Spark is not set up on this app: call Spark(app) or spark.init_app(app)"
        ) from None


def current_scope(state: SparkState | None = None) -> tuple[str, str | None]:
    """The scope and VOW portal of the current request: ``("idx", None)``,
    ``("private", None)`` or ``("vow/<portal>", "<portal>")``.

    :raises NotFound: a VOW app found no valid portal for this request.
    """
    cached = g.get("_spark_scope")
    if cached is not None:
        return cast(tuple[str, "str | None"], cached)
    state = state or spark_state()
    config = state.config
    if config.role != "vow":
        result: tuple[str, str | None] = (config.role, None)
    else:
        portal = state.portal_loader() if state.portal_loader is not None else None
        if portal is None:
            portal = config.portal
        else:
            try:
                portal = normalize_portal(portal, "portal_loader")
            except ConfigurationError:
                raise NotFound("No such portal") from None
        if portal is None:
            raise NotFound("No such portal")
        result = (f"vow/{portal}", portal)
    g._spark_scope = result
    return result


def user_grant(state: SparkState, scope: str) -> GrantRef | None:
    """The current browser session's grant reference for ``scope``.

    :raises StoreUnavailable: the session store did not answer for this request.
    """
    require_session_store()
    sid = getattr(session, "sid", None)
    if not sid:
        return None
    return GrantRef(session_owner(sid), scope, state.session_ttl)


def _get_client() -> SparkClient:
    client = g.get("_spark_client")
    if client is None:
        state = spark_state()
        user = None
        if has_request_context():
            scope, _ = current_scope(state)
            user = user_grant(state, scope)
        client = SparkClient(
            current_app._get_current_object(),  # type: ignore[attr-defined]
            state.config,
            state.transport,
            state.tokens,
            user,
            state.tokens.app_ref(),
        )
        g._spark_client = client
    return cast(SparkClient, client)


def reset_client() -> None:
    """Forget this request's client (after a sign-in or sign-out changed the grant)."""
    g.pop("_spark_client", None)


#: The Spark API client of the current request: the signed-in user's grant for the
#: current portal, else the app-wide grant of single-session keys. Outside a request (CLI,
#: jobs) it is the app-wide grant, inside an app context.
spark_api: SparkClient = cast(
    SparkClient,
    LocalProxy(_get_client, unbound_message="spark_api needs an application context"),
)


def spark_login_required(view: F) -> F:
    """Let only users signed in with Flexmls (for the current portal) into ``view``.

    It raises :class:`~flask_spark.errors.NotSignedIn` for the others, which the default
    handler answers by sending pages to ``/login?next=<this page>`` and JSON requests a 401;
    an app's own handler for ``NotSignedIn`` takes over both.
    """

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not spark_api.authenticated:
            raise NotSignedIn()
        return view(*args, **kwargs)

    return cast(F, wrapped)


__all__ = [
    "Spark",
    "SparkState",
    "SparkWarning",
    "current_scope",
    "spark_api",
    "spark_login_required",
    "spark_state",
]
