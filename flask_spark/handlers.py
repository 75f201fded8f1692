"""What Flask-Spark registers on an app besides its blueprints: the default answer to its
errors, and the check that keeps retired session ids from being written back."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app

from .errors import NotSignedIn, PlatformUnavailable, RateLimited, SparkError, StoreUnavailable
from .pages import unauthorized, unavailable
from .registry import instances, serving_instance
from .sessions import guard_session_interface


def install(app: Flask) -> None:
    """Register the error handler and guard the session interface, once per app."""
    guard_session_interface(app, session_retired)
    # One handler for the root of our errors, so that an app's own handler for
    # SparkError, registered before or after this, wins, and one for a subclass, more
    # specific, too.
    if SparkError not in app.error_handler_spec.get(None, {}).get(None, {}):
        app.register_error_handler(SparkError, default_handler)


def default_handler(error: SparkError) -> Any:
    """Not signed in: to the sign-in page (or 401) of the instance the sign-in is
    missing for. Platform, rate limit or store down: a 503 page with ``Retry-After``.
    Anything else goes to the app's handler for a class above SparkError if it has one,
    else on as unhandled (Flask answers 500)."""
    if isinstance(error, NotSignedIn):
        return unauthorized(error.instance or serving_instance().name)
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


def session_retired(app: Flask, sid: str) -> bool:
    """Whether a sign-in or sign-out of any instance retired ``sid`` (each store asked
    once)."""
    asked: set[int] = set()
    for instance in instances(app).values():
        inner = id(instance.tokens.backing_store)
        if inner in asked:
            continue
        asked.add(inner)
        if instance.tokens.session_retired(sid):
            return True
    return False
