"""What a request knows of its sign-in: its scope and portal, its grant, its API client,
account and user, each resolved at most once per request; the proxies
:data:`spark_api`, :data:`spark_account` and :data:`spark_user`; and
:func:`spark_login_required`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import current_app, g, has_request_context
from werkzeug.exceptions import NotFound
from werkzeug.local import LocalProxy

from .account import SparkAccount
from .client import GrantLoader, SparkClient
from .config import normalize_portal
from .errors import ConfigurationError, NotSignedIn
from .instance import Instance
from .registry import serving_instance
from .sessions import require_session_store, session_bindings
from .stores.base import Grant, GrantKey

F = TypeVar("F", bound=Callable[..., Any])


def _request_cache(instance: Instance) -> dict[str, Any]:
    """What the current request has learnt about ``instance``'s sign-in."""
    caches: dict[str, dict[str, Any]] = g.setdefault("_spark_requests", {})
    return caches.setdefault(instance.name, {})


def current_scope(instance: Instance | None = None) -> tuple[str, str | None]:
    """The scope and VOW portal of the current request for ``instance`` (the serving
    one): ``("idx", None)``, ``("private", None)`` or ``("vow/<portal>", "<portal>")``.

    :raises NotFound: a VOW instance found no valid portal for this request.
    """
    instance = instance or serving_instance()
    cache = _request_cache(instance)
    cached = cache.get("scope")
    if cached is None:
        cached = cache["scope"] = _scope_of(instance)
    return cast(tuple[str, "str | None"], cached)


def _scope_of(instance: Instance) -> tuple[str, str | None]:
    config = instance.config
    if config.role != "vow":
        return config.role, None
    loader = instance.loaders.portal
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
    return f"vow/{portal}", portal


def current_grant(instance: Instance | None = None) -> Grant | None:
    """The grant the current browser session is bound to for ``instance`` (the serving
    one) and the current portal, resolved once per request (see
    :meth:`~flask_spark.tokens.TokenManager.resolve`).

    :raises StoreUnavailable: the session or grant store did not answer.
    """
    instance = instance or serving_instance()
    cache = _request_cache(instance)
    if "grant" not in cache:
        scope, _ = current_scope(instance)
        require_session_store()
        binding = session_bindings().get(instance.slot(scope))
        cache["grant"] = (
            None if binding is None else instance.tokens.resolve(binding, instance.session_ttl)
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


def new_client(instance: Instance, loader: GrantLoader) -> SparkClient:
    """A client of ``instance`` with the grant ``loader`` finds; its signals are sent by
    the current app."""
    return SparkClient(instance, loader, current_app._get_current_object())  # type: ignore[attr-defined]


def _request_grant(instance: Instance) -> tuple[Grant | None, bool]:
    """The signed-in user's grant for this portal, else the app-wide grant."""
    if has_request_context():
        user = current_grant(instance)
        if user is not None:
            return user, True
    key: GrantKey | None = instance.tokens.app_key
    return (None if key is None else instance.tokens.get(key)), False


def client_of(instance: Instance) -> SparkClient:
    """``instance``'s client for this request (or app context), made once."""
    cache = _request_cache(instance)
    client = cache.get("client")
    if client is None:
        client = cache["client"] = new_client(instance, lambda: _request_grant(instance))
    return cast(SparkClient, client)


def account_of(instance: Instance) -> SparkAccount | None:
    """The account signed in to ``instance`` in this request."""
    if not has_request_context():
        return None
    grant = current_grant(instance)
    return None if grant is None else SparkAccount.from_grant(grant)


def user_of(instance: Instance) -> Any:
    """What ``instance``'s account loader made of :func:`account_of`, once per request."""
    if not has_request_context():
        return None
    cache = _request_cache(instance)
    if "user" not in cache:
        account = account_of(instance)
        loader = instance.loaders.account
        cache["user"] = None if account is None or loader is None else loader(account)
    return cache["user"]


#: The Spark API client of the current request: the signed-in user's grant for the
#: instance serving the request and its portal, else the app-wide grant of single-session
#: keys. Outside a request (CLI, jobs) it is the app-wide grant, inside an app context.
spark_api: SparkClient = cast(
    SparkClient,
    LocalProxy(
        lambda: client_of(serving_instance()),
        unbound_message="spark_api needs an application context",
    ),
)

#: The Spark account signed in to the current portal (of the instance serving the
#: request), or ``None``: read from the stored grant, with no API call.
spark_account: SparkAccount | None = cast(
    "SparkAccount | None",
    LocalProxy(
        lambda: account_of(serving_instance()),
        unbound_message="spark_account needs an application context",
    ),
)

#: What :meth:`Spark.account_loader` made of :data:`spark_account` (``None`` without a
#: loader or a signed-in account).
spark_user: Any = LocalProxy(
    lambda: user_of(serving_instance()),
    unbound_message="spark_user needs an application context",
)


def require_sign_in(view: F, find: Callable[[], Instance]) -> F:
    """``view``, let in only when the instance ``find`` returns has a signed-in user."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        instance = find()
        if not client_of(instance).authenticated:
            error = NotSignedIn()
            error.instance = instance.name
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
    return require_sign_in(view, serving_instance)


__all__ = [
    "account_of",
    "client_of",
    "current_grant",
    "current_scope",
    "forget_current",
    "new_client",
    "require_sign_in",
    "spark_account",
    "spark_api",
    "spark_login_required",
    "spark_user",
    "user_of",
]
