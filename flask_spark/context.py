"""Where an app keeps its instances and which one serves a request; what a request knows
of its sign-in: its scope and portal, its grant, its API client, account and user, each
resolved at most once per request; the proxies :data:`spark_api`, :data:`spark_account`
and :data:`spark_user`; and :func:`spark_login_required`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Flask, current_app, g, has_request_context, request
from werkzeug.exceptions import NotFound
from werkzeug.local import LocalProxy

from .account import SparkAccount
from .client import GrantLoader, SparkClient
from .config import DEFAULT_INSTANCE, normalize_portal
from .errors import ConfigurationError, NotSignedIn
from .instance import Instance
from .sessions import require_session_store, session_bindings
from .stores.base import Grant, GrantKey

F = TypeVar("F", bound=Callable[..., Any])

#: ``app.extensions`` key of every instance, by name (the default one's is also
#: ``app.extensions["spark"]``).
INSTANCES = "spark.instances"


def instances(app: Flask | None = None) -> dict[str, Instance]:
    """Every instance on ``app`` (the current app), by name."""
    target = app or current_app
    return cast("dict[str, Instance]", target.extensions.get(INSTANCES, {}))


def add_instance(app: Flask, instance: Instance) -> None:
    """Keep ``instance`` on ``app`` (the default one also as ``app.extensions["spark"]``)."""
    app.extensions.setdefault(INSTANCES, {})[instance.name] = instance
    if instance.name == DEFAULT_INSTANCE:
        app.extensions["spark"] = instance


def instance_named(app: Flask | None = None, name: str | None = None) -> Instance:
    """Instance ``name`` of ``app`` (the current app): the default one, or with
    ``name=None`` the only one there is.

    :raises RuntimeError: there is no such instance.
    """
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


def serving_instance() -> Instance:
    """The instance that serves the current request: the one whose blueprint holds the
    view, else the one with the longest URL prefix over the path, else the default (or the
    only) instance. Outside a request, the default (or only) instance.

    :raises RuntimeError: several instances, no default, and none serves this request.
    """
    if not has_request_context():
        return instance_named()
    cached = g.get("_spark_serving")
    if cached is not None:
        return cast(Instance, cached)
    found = instances()
    chosen: Instance | None = None
    if len(found) == 1:
        (chosen,) = found.values()
    else:
        chosen = next((found[bp] for bp in request.blueprints if bp in found), None)
        if chosen is None:
            under = [instance for instance in found.values() if instance.serves(request.path)]
            under.sort(key=lambda instance: len(instance.url_prefix or ""), reverse=True)
            chosen = under[0] if under else found.get(DEFAULT_INSTANCE)
    if chosen is None:
        raise RuntimeError(
            "no Spark instance serves this request (and there is no default one): name "
            "one, as spark.api or spark.account"
        )
    g._spark_serving = chosen
    return chosen


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


def login_required(view: F, find: Callable[[], Instance]) -> F:
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
    return login_required(view, serving_instance)


__all__ = [
    "current_grant",
    "current_scope",
    "forget_current",
    "spark_account",
    "spark_api",
    "spark_login_required",
    "spark_user",
]
