"""The :class:`Spark` extension, the request proxies and :func:`spark_login_required`."""

from __future__ import annotations

import functools
import logging
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from flask import Flask, current_app, g, has_request_context, request
from flask_session.base import ServerSideSessionInterface
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.local import LocalProxy
from werkzeug.routing import Map, MapAdapter, RequestRedirect, Rule

from .account import SparkAccount
from .admin import GrantAdmin
from .cli import spark_command
from .client import SparkClient
from .config import (
    DEFAULT_INSTANCE,
    PrefixedConfig,
    SparkConfig,
    load_config,
    normalize_portal,
)
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
_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
#: ``app.extensions`` key of every instance's state, by name (the default's is also
#: ``app.extensions["spark"]``).
_INSTANCES = "spark.instances"
#: ``app.extensions`` key of the grant stores opened from URLs, shared by the instances.
_STORES = "spark.stores"


class SparkWarning(UserWarning):
    """A configuration that works but will hurt (such as ``SameSite=Strict``)."""


@dataclass
class SparkState:
    """Per-app state of one instance, kept in ``app.extensions["spark"]`` (the default
    instance) and ``app.extensions["spark.instances"][name]``."""

    extension: Spark
    config: SparkConfig
    transport: Transport
    grants: GrantClient
    tokens: TokenManager
    session_ttl: int
    #: The app key's shared rate budget; ``None`` with ``SPARK_RATE_LIMIT = None``.
    budget: RateBudget | None = None
    #: The instance's name, which is also its blueprint's.
    name: str = DEFAULT_INSTANCE
    #: Matches the paths below the instance's ``url_prefix`` (``None``: no prefix).
    paths: MapAdapter | None = None

    def __repr__(self) -> str:
        return (
            f"<SparkState {self.name!r} client_id={self.config.client_id!r} "
            f"store={self.tokens.store!r}>"
        )

    def slot(self, scope: str) -> str:
        """Where this instance's binding for ``scope`` is kept in a browser session: the
        scope itself for the default instance, ``<name>:<scope>`` for the others."""
        return scope if self.name == DEFAULT_INSTANCE else f"{self.name}:{scope}"

    def owns(self, slot: str) -> bool:
        """Whether a browser session's binding ``slot`` is this instance's."""
        if self.name == DEFAULT_INSTANCE:
            return ":" not in slot
        return slot.startswith(f"{self.name}:")

    def serves(self, path: str) -> bool:
        """Whether ``path`` (below the app root) lies under this instance's URL prefix."""
        if self.paths is None:
            return False
        try:
            self.paths.match(path)
        except RequestRedirect:
            return True
        except HTTPException:
            return False
        return True


class Spark:
    """Sign in with Flexmls for a Flask app.

    ::

        app.config.update(SESSION_TYPE="redis", SPARK_CLIENT_ID="...",
                          SPARK_CLIENT_SECRET="...")
        Session(app)
        spark = Spark(app)          # or Spark() and later spark.init_app(app)

    An app may hold several instances, each with its own key, role, blueprint and
    grants: the default ``Spark(app)`` beside, say, ``Spark(app, name="vow",
    url_prefix="/portal/<portal>")`` (see :doc:`instances`).

    :param name: the instance's name, also its blueprint's (``url_for("vow.login")``);
        lowercase letters, digits and ``_``. ``"spark"`` by default.
    :param config_prefix: where its keys are read: ``SPARK_`` for the default instance,
        ``SPARK_<NAME>_`` for the others (``SPARK_VOW_CLIENT_ID``...), which take the
        platform, store and sealing keys from ``SPARK_`` when their own are unset.
    :param url_prefix: where the blueprint (``/login``, ``/callback``, ``/logout``) is
        mounted; the app root by default. The app's views below it are served by this
        instance (:data:`spark_api`, :data:`spark_account`).
    :param portal_loader: VOW apps with several portals: a function returning the current
        request's portal name (see :meth:`portal_loader`).
    :param grant_store: where grants live, instead of the one ``SPARK_GRANT_STORE`` names
        (see :mod:`flask_spark.stores`).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        name: str = DEFAULT_INSTANCE,
        config_prefix: str | None = None,
        url_prefix: str | None = None,
        portal_loader: PortalLoader | None = None,
        grant_store: GrantStore | None = None,
    ) -> None:
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ValueError(
                "a Spark instance's name is 1-32 lowercase letters, digits or '_', "
                "starting with a letter"
            )
        self.name = name
        default_prefix = "SPARK_" if name == DEFAULT_INSTANCE else f"SPARK_{name.upper()}_"
        self.config_prefix = config_prefix or default_prefix
        self.url_prefix = url_prefix
        self._portal_loader = portal_loader
        self._account_loader: AccountLoader | None = None
        self._grant_store = grant_store
        if app is not None:
            self.init_app(app)

    def __repr__(self) -> str:
        return f"<Spark {self.name!r} url_prefix={self.url_prefix!r}>"

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
        instances: dict[str, SparkState] = app.extensions.setdefault(_INSTANCES, {})
        if self.name in instances:
            raise ConfigurationError(
                self.config_prefix + "CLIENT_ID",
                f"a Spark instance named {self.name!r} is already set up on this app "
                "(give each instance its own name)",
            )
        view = PrefixedConfig(app.config, self.config_prefix)
        config = load_config(
            app.config,
            has_portal_loader=self._portal_loader is not None,
            prefix=self.config_prefix,
        )
        _require_server_side_sessions(app)
        if config.has_app_token and not config.personal_token and not config.redirect_uri:
            raise ConfigurationError(
                view.source_key("SPARK_REDIRECT_URI"),
                "is required with single-session keys (it is sent with every refresh)",
            )
        if app.config.get("SESSION_COOKIE_SAMESITE") == "Strict":
            warnings.warn(
                "SESSION_COOKIE_SAMESITE='Strict' drops the session cookie on the redirect "
                "back from Flexmls, so every sign-in fails; use 'Lax'.",
                SparkWarning,
                stacklevel=2,
            )
        _warn_about(app, view)
        store = SealedStore(
            self._grant_store or _store_for(app, config), _sealer(app, config, view)
        )
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
        state = SparkState(
            extension=self,
            config=config,
            transport=transport,
            grants=grants,
            tokens=TokenManager(config, store, grants),
            session_ttl=max(1, int(app.permanent_session_lifetime.total_seconds())),
            budget=budget,
            name=self.name,
            paths=_prefix_matcher(self.url_prefix),
        )
        from .views import make_blueprint

        app.register_blueprint(make_blueprint(self.name), url_prefix=self.url_prefix)
        instances[self.name] = state
        if self.name == DEFAULT_INSTANCE:
            app.extensions["spark"] = state
        guard_session_interface(app, _session_retired)
        if spark_command.name not in app.cli.commands:
            app.cli.add_command(spark_command)
        # One handler for the root of our errors, so that an app's own handler for
        # SparkError, registered before or after this, wins, and one for a subclass, more
        # specific, too.
        if SparkError not in app.error_handler_spec.get(None, {}).get(None, {}):
            app.register_error_handler(SparkError, _default_handler)

    def _state(self) -> SparkState:
        return spark_state(name=self.name)

    # -- in a request, by name --------------------------------------------------------

    @property
    def api(self) -> SparkClient:
        """This instance's API client for the current request (what :data:`spark_api` is
        in the requests this instance serves)."""
        return _client_of(self._state())

    @property
    def account(self) -> SparkAccount | None:
        """The account signed in to this instance (and portal) in the current request."""
        return _account_of(self._state())

    @property
    def user(self) -> Any:
        """What :meth:`account_loader` made of :attr:`account`."""
        return _user_of(self._state())

    def login_required(self, view: F) -> F:
        """:func:`spark_login_required` for this instance, whichever instance serves the
        request."""
        return _login_required(view, self._state)

    # -- outside a request ---------------------------------------------------------------

    @property
    def grants(self) -> GrantAdmin:
        """The current app's stored grants of this instance: ``spark.grants.list()``,
        ``spark.grants.revoke(account_id)``."""
        return GrantAdmin(self._state())

    def client_for(self, account_id: str, scope: str | None = None) -> SparkClient:
        """The API client of ``account_id``'s stored grant, for jobs and commands (inside
        an app context). Refreshes are single flight with the web requests of the same
        account.

        :param scope: ``"idx"``, ``"private"`` or ``"vow/<portal>"``; by default the
            configured role's (and ``SPARK_PORTAL``'s).
        :raises ValueError: a VOW app without ``SPARK_PORTAL`` and no ``scope``.
        """
        state = self._state()
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


def _prefix_matcher(url_prefix: str | None) -> MapAdapter | None:
    """What :meth:`SparkState.serves` matches: ``url_prefix`` and every path below it."""
    if not url_prefix:
        return None
    prefix = url_prefix.rstrip("/")
    rules = [Rule(f"{prefix}/", endpoint="here"), Rule(f"{prefix}/<path:_below>", endpoint="here")]
    return Map(rules, strict_slashes=True).bind("localhost")


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


def _warn_about(app: Flask, view: PrefixedConfig) -> None:
    """Warn about settings that are ignored or that split the app's data."""
    for key, successor in _GONE_KEYS.items():
        if key in view:
            instead = f"; use {view.source_key(successor)}" if successor else ""
            warnings.warn(
                f"{view.source_key(key)} is no longer read{instead}.", SparkWarning, stacklevel=3
            )
    redirect_uri = view.get("SPARK_REDIRECT_URI")
    if (
        # With single-session keys the redirect URI is only the one on record for them.
        view.get("SPARK_ACCESS_TOKEN") is None
        and isinstance(redirect_uri, str)
        and redirect_uri.lower().startswith("https://")
        and not app.config.get("SESSION_COOKIE_SECURE")
    ):
        warnings.warn(
            f"{view.source_key('SPARK_REDIRECT_URI')} is https but SESSION_COOKIE_SECURE is "
            "off: the session "
            "cookie, which holds the sign-in, would also be sent over plain http. Set "
            "SESSION_COOKIE_SECURE = True.",
            SparkWarning,
            stacklevel=3,
        )
    client = app.config.get("SESSION_REDIS")
    if (
        app.config.get("SESSION_TYPE") == "redis"
        and type(client).__name__ == "RedisCluster"
        and view.get("SPARK_GRANT_STORE") is None
    ):
        warnings.warn(
            "Flask-Session does not use a RedisCluster SESSION_REDIS (it falls back to a "
            "local Redis); set SPARK_GRANT_STORE='redis+cluster://...' for the grants and "
            "keep sessions in another store.",
            SparkWarning,
            stacklevel=3,
        )


def _sealer(app: Flask, config: SparkConfig, view: PrefixedConfig) -> Sealer:
    """The tokens' sealer: :data:`SPARK_TOKEN_KEYS`, else keys derived from ``SECRET_KEY``
    and ``SECRET_KEY_FALLBACKS``."""
    if config.token_keys:
        return Sealer(config.token_keys)
    secret = app.config.get("SECRET_KEY")
    if not secret:
        raise ConfigurationError(
            view.source_key("SPARK_TOKEN_KEYS"),
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
    SQLite in the instance folder. Instances of one app naming the same store share it
    (and its connections)."""
    opened: dict[str, GrantStore] = app.extensions.setdefault(_STORES, {})
    where = config.grant_store or ""
    if where not in opened:
        opened[where] = _open_store(app, config)
    return opened[where]


def _open_store(app: Flask, config: SparkConfig) -> GrantStore:
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
    """Not signed in: to the sign-in page (or 401) of the instance the sign-in is
    missing for. Platform, rate limit or store down: a 503 page with ``Retry-After``.
    Anything else goes to the app's handler for a class above SparkError if it has one,
    else on as unhandled (Flask answers 500)."""
    if isinstance(error, NotSignedIn):
        return unauthorized(error.instance or serving_state().name)
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
    """Whether a sign-in or sign-out of any instance retired ``sid`` (each store asked
    once)."""
    asked: set[int] = set()
    for state in instances(app).values():
        inner = id(getattr(state.tokens.store, "inner", state.tokens.store))
        if inner in asked:
            continue
        asked.add(inner)
        if state.tokens.session_retired(sid):
            return True
    return False


def instances(app: Flask | None = None) -> dict[str, SparkState]:
    """Every instance's :class:`SparkState` on ``app`` (the current app), by name."""
    target = app or current_app
    return cast("dict[str, SparkState]", target.extensions.get(_INSTANCES, {}))


def spark_state(app: Flask | None = None, name: str | None = None) -> SparkState:
    """The :class:`SparkState` of instance ``name`` of ``app`` (the current app): the
    default instance's, or with ``name=None`` the only instance there is."""
    found = instances(app)
    if name is None:
        if DEFAULT_INSTANCE in found or len(found) != 1:
            name = DEFAULT_INSTANCE
        else:
            (name,) = found
    try:
        return found[name]
    except KeyError:
        if not found:
            message = (
                "Flask-Spark is not set up on this app: call Spark(app) or spark.init_app(app)"
            )
        else:
            message = f"no Spark instance named {name!r} on this app (there are {sorted(found)})"
        raise RuntimeError(message) from None


def serving_state() -> SparkState:
    """The instance that serves the current request: the one whose blueprint holds the
    view, else the one with the longest URL prefix over the path, else the default (or the
    only) instance. Outside a request, the default (or only) instance.

    :raises RuntimeError: several instances, no default, and none serves this request.
    """
    if not has_request_context():
        return spark_state()
    cached = g.get("_spark_serving")
    if cached is not None:
        return cast(SparkState, cached)
    found = instances()
    chosen: SparkState | None = None
    if len(found) == 1:
        (chosen,) = found.values()
    else:
        chosen = next((found[bp] for bp in request.blueprints if bp in found), None)
        if chosen is None:
            under = [state for state in found.values() if state.serves(request.path)]
            under.sort(key=lambda state: len(state.extension.url_prefix or ""), reverse=True)
            chosen = under[0] if under else found.get(DEFAULT_INSTANCE)
    if chosen is None:
        raise RuntimeError(
            "no Spark instance serves this request (and there is no default one): name "
            "one, as spark.api or spark.account"
        )
    g._spark_serving = chosen
    return chosen


def _request_cache(state: SparkState) -> dict[str, Any]:
    """What the current request has learnt about ``state``'s sign-in."""
    caches: dict[str, dict[str, Any]] = g.setdefault("_spark_requests", {})
    return caches.setdefault(state.name, {})


def current_scope(state: SparkState | None = None) -> tuple[str, str | None]:
    """The scope and VOW portal of the current request for ``state`` (the serving
    instance): ``("idx", None)``, ``("private", None)`` or ``("vow/<portal>", "<portal>")``.

    :raises NotFound: a VOW instance found no valid portal for this request.
    """
    state = state or serving_state()
    cache = _request_cache(state)
    cached = cache.get("scope")
    if cached is not None:
        return cast(tuple[str, "str | None"], cached)
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
    cache["scope"] = result
    return result


def current_grant(state: SparkState | None = None) -> Grant | None:
    """The grant the current browser session is bound to for ``state`` (the serving
    instance) and the current portal, resolved once per request (see
    :meth:`~flask_spark.tokens.TokenManager.resolve`).

    :raises StoreUnavailable: the session or grant store did not answer.
    """
    state = state or serving_state()
    cache = _request_cache(state)
    if "grant" not in cache:
        scope, _ = current_scope(state)
        require_session_store()
        binding = session_bindings().get(state.slot(scope))
        cache["grant"] = (
            None if binding is None else state.tokens.resolve(binding, state.session_ttl)
        )
    return cast("Grant | None", cache["grant"])


def forget_current() -> None:
    """Forget this request's grants and clients, of every instance (after a sign-in or
    sign-out changed them)."""
    for cache in g.get("_spark_requests", {}).values():
        scope = cache.get("scope")
        cache.clear()
        if scope is not None:
            cache["scope"] = scope


def _client(state: SparkState, loader: Callable[[], tuple[Grant | None, bool]]) -> SparkClient:
    return SparkClient(
        current_app._get_current_object(),  # type: ignore[attr-defined]
        state.config,
        state.transport,
        state.tokens,
        loader,
        state.budget,
        instance=state.name,
    )


def _request_grant(state: SparkState) -> tuple[Grant | None, bool]:
    """The signed-in user's grant for this portal, else the app-wide grant."""
    if has_request_context():
        user = current_grant(state)
        if user is not None:
            return user, True
    key: GrantKey | None = state.tokens.app_key
    return (None if key is None else state.tokens.get(key)), False


def _client_of(state: SparkState) -> SparkClient:
    """``state``'s client for this request (or app context), made once."""
    cache = _request_cache(state)
    client = cache.get("client")
    if client is None:
        client = cache["client"] = _client(state, lambda: _request_grant(state))
    return cast(SparkClient, client)


def _account_of(state: SparkState) -> SparkAccount | None:
    if not has_request_context():
        return None
    grant = current_grant(state)
    return None if grant is None else SparkAccount.from_grant(grant)


def _user_of(state: SparkState) -> Any:
    if not has_request_context():
        return None
    cache = _request_cache(state)
    if "user" not in cache:
        account = _account_of(state)
        loader = state.extension._account_loader
        cache["user"] = None if account is None or loader is None else loader(account)
    return cache["user"]


#: The Spark API client of the current request: the signed-in user's grant for the
#: instance serving the request and its portal, else the app-wide grant of single-session
#: keys. Outside a request (CLI, jobs) it is the app-wide grant, inside an app context.
spark_api: SparkClient = cast(
    SparkClient,
    LocalProxy(
        lambda: _client_of(serving_state()),
        unbound_message="spark_api needs an application context",
    ),
)

#: The Spark account signed in to the current portal (of the instance serving the
#: request), or ``None``: read from the stored grant, with no API call.
spark_account: SparkAccount | None = cast(
    "SparkAccount | None",
    LocalProxy(
        lambda: _account_of(serving_state()),
        unbound_message="spark_account needs an application context",
    ),
)

#: What :meth:`Spark.account_loader` made of :data:`spark_account` (``None`` without a
#: loader or a signed-in account).
spark_user: Any = LocalProxy(
    lambda: _user_of(serving_state()), unbound_message="spark_user needs an application context"
)


def _login_required(view: F, find: Callable[[], SparkState]) -> F:
    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        state = find()
        if not _client_of(state).authenticated:
            error = NotSignedIn()
            error.instance = state.name
            raise error
        return current_app.ensure_sync(view)(*args, **kwargs)

    return cast(F, wrapped)


def spark_login_required(view: F) -> F:
    """Let only users signed in with Flexmls (to the instance serving the request, for
    its current portal) into ``view``.

    It raises :class:`~flask_spark.errors.NotSignedIn` for the others, which the default
    handler answers by sending pages to ``/login?next=<this page>`` and JSON requests a 401;
    an app's own handler for ``NotSignedIn`` takes over both. ``view`` may be an ``async
    def`` (with Flask's ``async`` extra), as Flask runs it through ``ensure_sync``.
    :meth:`Spark.login_required` names an instance instead.
    """
    return _login_required(view, serving_state)


__all__ = [
    "Spark",
    "SparkState",
    "SparkWarning",
    "current_scope",
    "serving_state",
    "spark_account",
    "spark_api",
    "spark_login_required",
    "spark_state",
    "spark_user",
]
