"""Keeps a session store outage a 503, never a 500.

Flask opens the session before any view or error handler runs, so a Redis outage there
would be an unhandled 500. :func:`guard_session_interface` wraps the app's Flask-Session
interface: when the store does not answer, the request goes on with an empty session
marked as *degraded*, which is never saved (it would overwrite the real one), and every
Flask-Spark view or ``spark_api`` use raises :class:`~flask_spark.errors.StoreUnavailable`,
answered with 503 and ``Retry-After``. When the store is back, the next request is served
as usual: nothing needs restarting.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Request, session
from werkzeug.wrappers import Response

from .errors import StoreUnavailable

log = logging.getLogger("flask_spark")

_DEGRADED = "_spark_store_down"


def store_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a session or token store raises when it does not answer."""
    errors: list[type[BaseException]] = [OSError]
    try:
        from redis.exceptions import RedisError
    except ImportError:  # pragma: no cover - redis is optional
        pass
    else:
        errors.append(RedisError)
    return tuple(errors)


def guard_session_interface(app: Flask) -> None:
    """Wrap ``app.session_interface`` so store errors degrade instead of failing."""
    interface: Any = app.session_interface
    if getattr(interface, "_spark_guarded", False):
        return
    errors = store_errors()
    open_session = interface.open_session
    save_session = interface.save_session

    def guarded_open(app: Flask, request: Request) -> Any:
        try:
            return open_session(app, request)
        except errors as exc:
            log.warning(
                "Session store unavailable (%s); request served degraded", type(exc).__name__
            )
            degraded = interface.session_class(sid=None)
            setattr(degraded, _DEGRADED, True)
            return degraded

    def guarded_save(app: Flask, session: Any, response: Response) -> None:
        if getattr(session, _DEGRADED, False):
            return
        try:
            save_session(app, session, response)
        except errors as exc:
            log.warning("Session store unavailable (%s); session not saved", type(exc).__name__)

    interface.open_session = guarded_open
    interface.save_session = guarded_save
    interface._spark_guarded = True


def require_session_store() -> None:
    """Raise :class:`StoreUnavailable` if this request's session could not be opened."""
    if getattr(session, _DEGRADED, False):
        raise StoreUnavailable("The session store did not answer")
