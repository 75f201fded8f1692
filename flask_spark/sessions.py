"""Flask-Session, guarded: a store outage is a 503, and a stale session never comes back.

Flask opens the session before any view or error handler runs, so a store outage there
would be an unhandled 500. :func:`guard_session_interface` wraps the app's Flask-Session
interface:

- when the session store does not answer, the request goes on with an empty session
  marked as *degraded*, which is never saved (it would overwrite the real one), and every
  Flask-Spark view or ``spark_api`` use raises :class:`~flask_spark.errors.StoreUnavailable`,
  answered with 503 and ``Retry-After``;
- Flask-Session writes the whole session back at the end of every request. A request that
  started before a sign-in rotated the session id would write the old session back and
  send its cookie again, undoing the sign-in. Rotated ids are *retired* in the grant
  store, and a session opened while one of its sign-ins was unfinished (the only kind a
  sign-in can rotate under a running request) is neither saved nor sent once its id is
  retired. A sign-out needs no such check: the session it leaves behind, if written back,
  points at a binding that no longer exists.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Request, g, session
from werkzeug.wrappers import Response

from .errors import StoreUnavailable

log = logging.getLogger("flask_spark")

#: Session key of what Flask-Spark keeps in a browser session (see :class:`BrowserData`).
#: Nothing in it is a token.
SESSION_KEY = "_spark"
#: How many earlier session ids are remembered for the pending sign-ins of other tabs.
MAX_PREVIOUS_SIDS = 4
#: How many unfinished sign-ins of one browser are remembered.
MAX_PENDING_LOGINS = 16

_DEGRADED = "_spark_store_down"
_CHECK = "_spark_check_retired"

#: Tells whether a session id was retired (by a sign-in or sign-out elsewhere).
RetiredCheck = Callable[[Flask, str], bool]


def store_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a session store raises when it does not answer."""
    errors: list[type[BaseException]] = [OSError]
    try:
        from redis.exceptions import RedisClusterException, RedisError
    except ImportError:  # pragma: no cover - redis is optional
        pass
    else:
        errors += [RedisError, RedisClusterException]
    try:
        from sqlalchemy.exc import SQLAlchemyError
    except ImportError:  # pragma: no cover
        pass
    else:
        errors.append(SQLAlchemyError)
    return tuple(errors)


def owned_here(sid: str) -> None:
    """This request retired ``sid`` itself (a sign-out) or made it (a rotation): its own
    save of it goes through without a look at the store."""
    g.setdefault("_spark_owned_sids", set()).add(sid)


def guard_session_interface(app: Flask, is_retired: RetiredCheck) -> None:
    """Wrap ``app.session_interface`` so store errors degrade instead of failing, and
    sessions of retired ids are not written back."""
    interface: Any = app.session_interface
    if getattr(interface, "_spark_guarded", False):
        return
    errors = store_errors()
    open_session = interface.open_session
    save_session = interface.save_session

    def guarded_open(app: Flask, request: Request) -> Any:
        try:
            opened = open_session(app, request)
        except errors as exc:
            log.warning(
                "Session store unavailable (%s); request served degraded", type(exc).__name__
            )
            degraded = interface.session_class(sid=None)
            setattr(degraded, _DEGRADED, True)
            return degraded
        # Only a session loaded with a sign-in under way can have its id rotated by that
        # sign-in while this request runs (a sign-out needs no check: its binding is gone).
        setattr(opened, _CHECK, bool(opened) and bool(BrowserData.of(opened).logins))
        return opened

    def guarded_save(app: Flask, session: Any, response: Response) -> None:
        if getattr(session, _DEGRADED, False):
            return
        sid = getattr(session, "sid", None)
        if getattr(session, _CHECK, False) and sid and sid not in g.get("_spark_owned_sids", ()):
            try:
                stale = is_retired(app, sid)
            except StoreUnavailable:
                log.warning("Grant store unavailable; session not saved")
                return
            if stale:
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


def _live(items: Any, now: float) -> list[Any]:
    """The ``[..., until]`` items (or bare ``until`` numbers) of a list still in force."""
    if not isinstance(items, list):
        return []
    found = []
    for item in items:
        until = item[-1] if isinstance(item, list) and item else item
        if isinstance(until, int | float) and not isinstance(until, bool) and until > now:
            found.append(item)
    return found


@dataclass
class BrowserData:
    """What Flask-Spark keeps in one browser session (:data:`SESSION_KEY`).

    :ivar bindings: ``{scope: binding id}``.
    :ivar previous: ``[[sid, until], ...]``: ids this session had before its latest
        rotations, under which sign-ins started in its other tabs are still filed.
    :ivar logins: the expiry times of the sign-ins this browser has started and not
        finished. While there are any, a sign-in may rotate the session id under a request
        in flight, so each save of the session first checks that its id was not retired.
    """

    bindings: dict[str, str] = field(default_factory=dict)
    previous: list[list[Any]] = field(default_factory=list)
    logins: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, data: Any, now: float | None = None) -> BrowserData:
        """Read (and prune) the data of a session mapping."""
        now = time.time() if now is None else now
        value = data.get(SESSION_KEY) if hasattr(data, "get") else None
        if not isinstance(value, dict):
            return cls()
        bindings = _bindings(value)
        previous = [
            item
            for item in _live(value.get("p"), now)
            if isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
        ]
        return cls(bindings, previous, [float(t) for t in _live(value.get("l"), now)])

    def save(self) -> None:
        """Write it into the current session."""
        session[SESSION_KEY] = {
            "b": dict(self.bindings),
            "p": self.previous[-MAX_PREVIOUS_SIDS:],
            "l": self.logins[-MAX_PENDING_LOGINS:],
        }


def _bindings(value: dict[str, Any]) -> dict[str, str]:
    """The well-formed bindings of a session's :data:`SESSION_KEY` value."""
    raw = value.get("b")
    if not isinstance(raw, dict):
        return {}
    return {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)}


def browser_data() -> BrowserData:
    """The current session's :class:`BrowserData`."""
    return BrowserData.of(session)


def session_bindings() -> dict[str, str]:
    """The browser session's bindings, ``{scope: binding id}`` (a copy); read on every
    signed-in request, so without the rest of :class:`BrowserData`."""
    value = session.get(SESSION_KEY)
    return _bindings(value) if isinstance(value, dict) else {}
