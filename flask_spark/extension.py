"""The :class:`Spark` extension, the request proxies and :func:`spark_login_required`."""

from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from flask import Flask, current_app, g, has_request_context
from flask_session.base import ServerSideSessionInterface
from werkzeug.exceptions import NotFound
from werkzeug.local import LocalProxy

from .account import SparkAccount
from .admin import GrantAdmin
from .cli import spark_command
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
from .openid import OpenIDClient
from .pages import unauthorized, unavailable
from .rate_budget import RateBudget
from .sealing import SealedStore, Sealer
from .sessions import guard_session_interface, require_session_store, session_bindings
from .stores import GrantStore, store_from_url
from .stores.base import Grant, GrantKey
from .tokens import TokenManager
from .transport import Transport

log = logging.getLogger("flask_spark")

PortalLoader = Callable[[], "str | None"]
AccountLoader = Callable[[SparkAccount], Any]
F = TypeVar("F", bound=Callable[..., Any])

#: File name of the embedded default grant store, in the app's instance folder.
DEFAULT_SQLITE_NAME = "spark-grants.sqlite3"


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
    session_ttl: int
    #: The app key's shared rate budget; ``None`` with ``SPARK_RATE_LIMIT = None``.
    budget: RateBudget | None = None

    def __repr__(self) -> str:
        return f"<SparkState client_id={self.config.client_id!r} store={self.tokens.store!r}>"


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
    :param grant_store: where grants live, instead of the one ``SPARK_GRANT_STORE`` names
        (see :mod:`flask_spark.stores`).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        url_prefix: str | None = None,
        portal_loader: PortalLoader | None = None,
        grant_store: GrantStore | None = None,
    ) -> None:
        self.url_prefix = url_prefix
        self._portal_loader = portal_loader
        self._account_loader: AccountLoader | None = None
        self._grant_store = grant_store
        if app is not None:
            self.init_app(app)

    def __repr__(self) -> str:
        return f"<Spark url_prefix={self.url_prefix!r}>"

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

    def account_loader(self, loader: AccountLoader) -> AccountLoader:
        """Register the function that maps the signed-in :class:`SparkAccount` to the
        app's own user object, served as :data:`~flask_spark.spark_user`::

            @spark.account_loader
            def load_user(account):
                return User.query.filter_by(spark_id=account.id).one_or_none()
        """
        self._account_loader = loader
        return loader

    def init_app(self, app: Flask) -> None:
        """Validate the ``SPARK_`` config, open the grant store, register the blueprint,
        the error handlers and the ``flask spark`` commands.

        :raises ConfigurationError: a key is missing or malformed, or the app has no
            server-side session (Flask-Session).
        """
        config = load_config(app.config, has_portal_loader=self._portal_loader is not None)
        _require_server_side_sessions(app)
        if config.has_app_token and not config.personal_token and not config.redirect_uri:
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
        _warn_about(app)
        store = SealedStore(self._grant_store or _store_for(app, config), _sealer(app, config))
        transport = Transport(
            config.timeout, config.ca_certs, config.pool_size, config.max_response_bytes
        )
        budget = None
        if config.rate_limit is not None and not callable(getattr(store.inner, "spend", None)):
            warnings.warn(
                f"{type(store.inner).__name__} has no spend(): the shared rate budget is off "
                "(give the store spend() to share it, or set SPARK_RATE_LIMIT = None)",
                SparkWarning,
                stacklevel=2,
            )
        elif config.rate_limit is not None:
            budget = RateBudget(
                store,
                config.client_id,
                config.rate_limit,
                config.rate_window,
                config.max_retry_wait,
            )
        grants = (OpenIDClient if config.auth_flow == "openid" else GrantClient)(
            config, transport, budget
        )
        app.extensions["spark"] = SparkState(
            extension=self,
            config=config,
            transport=transport,
            grants=grants,
            tokens=TokenManager(config, store, grants),
            session_ttl=max(1, int(app.permanent_session_lifetime.total_seconds())),
            budget=budget,
        )
        guard_session_interface(app, _session_retired)
        from .views import make_blueprint

        app.register_blueprint(make_blueprint(), url_prefix=self.url_prefix)
        app.cli.add_command(spark_command)
        # One handler for the root of our errors, so that an app's own handler for
        # SparkError, registered before or after this, wins, and one for a subclass, more
        # specific, too.
        if SparkError not in app.error_handler_spec.get(None, {}).get(None, {}):
            app.register_error_handler(SparkError, _default_handler)

    # -- outside a request ---------------------------------------------------------------

    @property
    def grants(self) -> GrantAdmin:
        """The current app's stored grants: ``spark.grants.list()``,
        ``spark.grants.revoke(account_id)``."""
        return GrantAdmin(spark_state())

    def client_for(self, account_id: str, scope: str | None = None) -> SparkClient:
        """The API client of ``account_id``'s stored grant, for jobs and commands (inside
        an app context). Refreshes are single flight with the web requests of the same
        account.

        :param scope: ``"idx"``, ``"private"`` or ``"vow/<portal>"``; by default the
            configured role's (and ``SPARK_PORTAL``'s).
        :raises ValueError: a VOW app without ``SPARK_PORTAL`` and no ``scope``.
        """
        state = spark_state()
        key = state.tokens.key(account_id, scope or default_scope(state.config))
        return _client(state, lambda: (state.tokens.get(key), True))


def default_scope(config: SparkConfig) -> str:
    """The scope of the configured role: ``idx``, ``private`` or ``vow/<SPARK_PORTAL>``.

    :raises ValueError: a VOW app without ``SPARK_PORTAL``.
    """
    if config.role != "vow":
        return config.role
    if config.portal is None:
        raise ValueError('name the scope ("vow/<portal>"): SPARK_PORTAL is not set')
    return f"vow/{config.portal}"


def _require_server_side_sessions(app: Flask) -> None:
    if not isinstance(app.session_interface, ServerSideSessionInterface):
        raise ConfigurationError(
            "SESSION_TYPE",
            "Flask-Spark binds sign-ins to server-side sessions: set SESSION_TYPE and call "
            "flask_session.Session(app) before Spark(app)",
        )


#: Keys of earlier builds that nothing reads any more, and what replaced them.
_GONE_KEYS = {
    "SPARK_REFRESH_LOCK_SECONDS": "SPARK_REFRESH_LEASE_SECONDS",
    "SPARK_MAX_PENDING_LOGINS": None,
}


def _warn_about(app: Flask) -> None:
    """Warn about settings that are ignored or that split the app's data."""
    for key, successor in _GONE_KEYS.items():
        if key in app.config:
            instead = f"; use {successor}" if successor else ""
            warnings.warn(f"{key} is no longer read{instead}.", SparkWarning, stacklevel=3)
    redirect_uri = app.config.get("SPARK_REDIRECT_URI")
    if (
        # With single-session keys the redirect URI is only the one on record for them.
        app.config.get("SPARK_ACCESS_TOKEN") is None
        and isinstance(redirect_uri, str)
        and redirect_uri.lower().startswith("https://")
        and not app.config.get("SESSION_COOKIE_SECURE")
    ):
        warnings.warn(
            "SPARK_REDIRECT_URI is https but SESSION_COOKIE_SECURE is off: the session "
            "cookie, which holds the sign-in, would also be sent over plain http. Set "
            "SESSION_COOKIE_SECURE = True.",
            SparkWarning,
            stacklevel=3,
        )
    client = app.config.get("SESSION_REDIS")
    if (
        app.config.get("SESSION_TYPE") == "redis"
        and type(client).__name__ == "RedisCluster"
        and app.config.get("SPARK_GRANT_STORE") is None
    ):
        warnings.warn(
            "Flask-Session does not use a RedisCluster SESSION_REDIS (it falls back to a "
            "local Redis); set SPARK_GRANT_STORE='redis+cluster://...' for the grants and "
            "keep sessions in another store.",
            SparkWarning,
            stacklevel=3,
        )


def _sealer(app: Flask, config: SparkConfig) -> Sealer:
    """The tokens' sealer: :data:`SPARK_TOKEN_KEYS`, else keys derived from ``SECRET_KEY``
    and ``SECRET_KEY_FALLBACKS``."""
    if config.token_keys:
        return Sealer(config.token_keys)
    secret = app.config.get("SECRET_KEY")
    if not secret:
        raise ConfigurationError(
            "SPARK_TOKEN_KEYS",
            "is required when SECRET_KEY is not set (tokens are encrypted at rest with it)",
        )
    log.warning(
        "Tokens are encrypted at rest with a key derived from SECRET_KEY: changing "
        "SECRET_KEY without keeping the old one in SECRET_KEY_FALLBACKS signs everyone out. "
        "Set SPARK_TOKEN_KEYS to keep the two apart."
    )
    return Sealer([secret, *(app.config.get("SECRET_KEY_FALLBACKS") or [])])


def _store_for(app: Flask, config: SparkConfig) -> GrantStore:
    """``SPARK_GRANT_STORE``; else Flask-Session's Redis client or SQLAlchemy engine; else
    SQLite in the instance folder."""
    if config.grant_store is not None:
        return store_from_url(config.grant_store)
    session_type = app.config.get("SESSION_TYPE")
    if session_type == "redis" and app.config.get("SESSION_REDIS") is not None:
        from .stores.redis import RedisGrantStore

        return RedisGrantStore(app.config["SESSION_REDIS"])
    if session_type == "sqlalchemy" and app.config.get("SESSION_SQLALCHEMY") is not None:
        from .stores.sql import SQLGrantStore

        with app.app_context():
            engine = app.config["SESSION_SQLALCHEMY"].engine
        return SQLGrantStore(engine)
    from .stores.sql import SQLGrantStore

    return SQLGrantStore(f"sqlite:///{os.path.join(app.instance_path, DEFAULT_SQLITE_NAME)}")


def _default_handler(error: SparkError) -> Any:
    """Not signed in: to the sign-in page (or 401). Platform, rate limit or store down:
    a 503 page with ``Retry-After``. Anything else goes to the app's handler for a class
    above SparkError if it has one, else on as unhandled (Flask answers 500)."""
    if isinstance(error, NotSignedIn):
        return unauthorized()
    if isinstance(error, PlatformUnavailable | RateLimited | StoreUnavailable):
        return unavailable(error)
    # What Flask would have picked without this handler: the app's own for a class above
    # SparkError (such as Exception), else none (a 500).
    handlers = current_app.error_handler_spec.get(None, {}).get(None, {})
    mro = type(error).__mro__
    for cls in mro[mro.index(SparkError) + 1 :]:
        handler = handlers.get(cls)
        if handler is not None:
            return current_app.ensure_sync(handler)(error)
    raise error


def _session_retired(app: Flask, sid: str) -> bool:
    return spark_state(app).tokens.session_retired(sid)


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
        loader = state.extension._portal_loader
        portal = loader() if loader is not None else None
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


def current_grant(state: SparkState | None = None) -> Grant | None:
    """The grant the current browser session is bound to for the current portal, read
    fresh from the store once per request.

    :raises StoreUnavailable: the session or grant store did not answer.
    """
    cache: dict[str, Grant | None] = g.setdefault("_spark_grants", {})
    state = state or spark_state()
    scope, _ = current_scope(state)
    if scope not in cache:
        require_session_store()
        binding = session_bindings().get(scope)
        cache[scope] = (
            None if binding is None else state.tokens.resolve(binding, state.session_ttl)
        )
    return cache[scope]


def forget_current() -> None:
    """Forget this request's grant and client (after a sign-in or sign-out changed them)."""
    g.pop("_spark_grants", None)
    g.pop("_spark_client", None)
    g.pop("_spark_user", None)


def _client(state: SparkState, loader: Callable[[], tuple[Grant | None, bool]]) -> SparkClient:
    return SparkClient(
        current_app._get_current_object(),  # type: ignore[attr-defined]
        state.config,
        state.transport,
        state.tokens,
        loader,
        state.budget,
    )


def _request_grant(state: SparkState) -> tuple[Grant | None, bool]:
    """The signed-in user's grant for this portal, else the app-wide grant."""
    if has_request_context():
        user = current_grant(state)
        if user is not None:
            return user, True
    key: GrantKey | None = state.tokens.app_key
    return (None if key is None else state.tokens.get(key)), False


def _get_client() -> SparkClient:
    client = g.get("_spark_client")
    if client is None:
        state = spark_state()
        client = _client(state, lambda: _request_grant(state))
        g._spark_client = client
    return cast(SparkClient, client)


def _get_account() -> SparkAccount | None:
    if not has_request_context():
        return None
    grant = current_grant()
    return None if grant is None else SparkAccount.from_grant(grant)


def _get_user() -> Any:
    if "_spark_user" not in g:
        account = _get_account()
        loader = spark_state().extension._account_loader
        g._spark_user = None if account is None or loader is None else loader(account)
    return g._spark_user


#: The Spark API client of the current request: the signed-in user's grant for the
#: current portal, else the app-wide grant of single-session keys. Outside a request (CLI,
#: jobs) it is the app-wide grant, inside an app context.
spark_api: SparkClient = cast(
    SparkClient,
    LocalProxy(_get_client, unbound_message="spark_api needs an application context"),
)

#: The Spark account signed in to the current portal, or ``None``: read from the stored
#: grant, with no API call.
spark_account: SparkAccount | None = cast(
    "SparkAccount | None",
    LocalProxy(_get_account, unbound_message="spark_account needs an application context"),
)

#: What :meth:`Spark.account_loader` made of :data:`spark_account` (``None`` without a
#: loader or a signed-in account).
spark_user: Any = LocalProxy(_get_user, unbound_message="spark_user needs an application context")


def spark_login_required(view: F) -> F:
    """Let only users signed in with Flexmls (for the current portal) into ``view``.

    It raises :class:`~flask_spark.errors.NotSignedIn` for the others, which the default
    handler answers by sending pages to ``/login?next=<this page>`` and JSON requests a 401;
    an app's own handler for ``NotSignedIn`` takes over both. ``view`` may be an ``async
    def`` (with Flask's ``async`` extra), as Flask runs it through ``ensure_sync``.
    """

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not spark_api.authenticated:
            raise NotSignedIn()
        return current_app.ensure_sync(view)(*args, **kwargs)

    return cast(F, wrapped)


__all__ = [
    "Spark",
    "SparkState",
    "SparkWarning",
    "current_scope",
    "spark_account",
    "spark_api",
    "spark_login_required",
    "spark_state",
    "spark_user",
]
