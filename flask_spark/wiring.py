"""How :meth:`flask_spark.Spark.init_app` builds one instance's parts from the app's
config: the validated settings, the grant store (sealed), the HTTP transport, the rate
budget, the platform's sign-in client and the token manager."""

from __future__ import annotations

import logging
import os
import warnings

from flask import Flask
from flask_session.base import ServerSideSessionInterface

from .config import PrefixedConfig, SparkConfig, load_config
from .errors import ConfigurationError, SparkWarning
from .grant import GrantClient
from .instance import Instance, Loaders
from .openid import OpenIDClient
from .rate_budget import RateBudget
from .sealing import SealedStore, Sealer
from .stores import GrantStore, store_from_url
from .tokens import TokenManager
from .transport import Transport

log = logging.getLogger("flask_spark")

#: File name of the embedded default grant store, in the app's instance folder.
DEFAULT_SQLITE_NAME = "spark-grants.sqlite3"
#: ``app.extensions`` key of the grant stores opened from URLs, shared by the instances.
STORES = "spark.stores"
#: ``app.extensions`` key of the app-wide warnings already given (once per app, however
#: many instances it has).
_WARNED = "spark.warned"
#: Keys of earlier builds that nothing reads any more, and what replaced them.
_GONE_KEYS = {
    "SPARK_REFRESH_LOCK_SECONDS": "SPARK_REFRESH_LEASE_SECONDS",
    "SPARK_MAX_PENDING_LOGINS": None,
}


def build_instance(
    app: Flask,
    *,
    name: str,
    prefix: str,
    url_prefix: str | None,
    loaders: Loaders,
    grant_store: GrantStore | None,
    extension: object,
) -> Instance:
    """Validate the app's config for one instance and build its parts.

    :raises ConfigurationError: a key is missing or malformed, or the app has no
        server-side session (Flask-Session).
    """
    view = PrefixedConfig(app.config, prefix)
    config = load_config(app.config, has_portal_loader=loaders.portal is not None, prefix=prefix)
    _require_server_side_sessions(app)
    if config.has_app_token and not config.personal_token and not config.redirect_uri:
        raise ConfigurationError(
            view.source_key("SPARK_REDIRECT_URI"),
            "is required with single-session keys (it is sent with every refresh)",
        )
    _warn_about(app, view)
    store = SealedStore(grant_store or _store_for(app, config), _sealer(app, config, view))
    transport = Transport(
        config.timeout, config.ca_certs, config.pool_size, config.max_response_bytes
    )
    budget = _budget(config, store)
    grants = (OpenIDClient if config.auth_flow == "openid" else GrantClient)(
        config, transport, budget
    )
    return Instance(
        name=name,
        config=config,
        transport=transport,
        grants=grants,
        tokens=TokenManager(config, store, grants),
        session_ttl=max(1, int(app.permanent_session_lifetime.total_seconds())),
        budget=budget,
        url_prefix=url_prefix,
        loaders=loaders,
        extension=extension,
    )


def _require_server_side_sessions(app: Flask) -> None:
    if not isinstance(app.session_interface, ServerSideSessionInterface):
        raise ConfigurationError(
            "SESSION_TYPE",
            "Flask-Spark binds sign-ins to server-side sessions: set SESSION_TYPE and call "
            "flask_session.Session(app) before Spark(app)",
        )


def _warn(message: str) -> None:
    # stacklevel: the caller of init_app (the app's code, or Spark(app) when the app is
    # given to the constructor).
    warnings.warn(message, SparkWarning, stacklevel=5)


def _first_time(app: Flask, what: str) -> bool:
    """Whether the app-wide warning ``what`` is given for the first time on ``app``."""
    warned: set[str] = app.extensions.setdefault(_WARNED, set())
    if what in warned:
        return False
    warned.add(what)
    return True


def _warn_about(app: Flask, view: PrefixedConfig) -> None:
    """Warn about settings that are ignored, that split the app's data, or that break
    every sign-in."""
    if app.config.get("SESSION_COOKIE_SAMESITE") == "Strict" and _first_time(app, "samesite"):
        _warn(
            "SESSION_COOKIE_SAMESITE='Strict' drops the session cookie on the redirect "
            "back from Flexmls, so every sign-in fails; use 'Lax'."
        )
    for key, successor in _GONE_KEYS.items():
        if key in view:
            instead = f"; use {view.source_key(successor)}" if successor else ""
            _warn(f"{view.source_key(key)} is no longer read{instead}.")
    redirect_uri = view.get("SPARK_REDIRECT_URI")
    if (
        # With single-session keys the redirect URI is only the one on record for them.
        view.get("SPARK_ACCESS_TOKEN") is None
        and isinstance(redirect_uri, str)
        and redirect_uri.lower().startswith("https://")
        and not app.config.get("SESSION_COOKIE_SECURE")
    ):
        _warn(
            f"{view.source_key('SPARK_REDIRECT_URI')} is https but SESSION_COOKIE_SECURE is "
            "off: the session cookie, which holds the sign-in, would also be sent over "
            "plain http. Set SESSION_COOKIE_SECURE = True."
        )
    client = app.config.get("SESSION_REDIS")
    if (
        app.config.get("SESSION_TYPE") == "redis"
        and type(client).__name__ == "RedisCluster"
        and view.get("SPARK_GRANT_STORE") is None
        and _first_time(app, "redis-cluster")
    ):
        _warn(
            "Flask-Session does not use a RedisCluster SESSION_REDIS (it falls back to a "
            "local Redis); set SPARK_GRANT_STORE='redis+cluster://...' for the grants and "
            "keep sessions in another store."
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
    if _first_time(app, "secret-key"):
        log.warning(
            "Tokens are encrypted at rest with a key derived from SECRET_KEY: changing "
            "SECRET_KEY without keeping the old one in SECRET_KEY_FALLBACKS signs everyone "
            "out. Set SPARK_TOKEN_KEYS to keep the two apart."
        )
    return Sealer([secret, *(app.config.get("SECRET_KEY_FALLBACKS") or [])])


def _budget(config: SparkConfig, store: SealedStore) -> RateBudget | None:
    """The app key's shared rate budget, counted in ``store``; ``None`` when
    ``SPARK_RATE_LIMIT`` is ``None`` or the store cannot count."""
    if config.rate_limit is None:
        return None
    if not callable(getattr(store.inner, "spend", None)):
        _warn(
            f"{type(store.inner).__name__} has no spend(): the shared rate budget is off "
            "(give the store spend() to share it, or set SPARK_RATE_LIMIT = None)"
        )
        return None
    return RateBudget(
        store, config.client_id, config.rate_limit, config.rate_window, config.max_retry_wait
    )


def _store_for(app: Flask, config: SparkConfig) -> GrantStore:
    """``SPARK_GRANT_STORE``; else Flask-Session's Redis client or SQLAlchemy engine; else
    SQLite in the instance folder. Instances of one app naming the same store share it
    (and its connections)."""
    opened: dict[str, GrantStore] = app.extensions.setdefault(STORES, {})
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


def opened_stores(app: Flask) -> dict[str, GrantStore]:
    """The grant stores :func:`build_instance` opened from the app's config, by URL."""
    stores: dict[str, GrantStore] = app.extensions.get(STORES, {})
    return stores
