"""Pending sign-ins: the OAuth ``state`` and what it stands for, kept in the browser's own
server-side session.

Each ``/login`` adds a record; a few may be pending at once (two tabs, a double click),
the oldest dropped past the cap. ``/callback`` removes the matching record before anything
else happens, so a state works once.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from collections.abc import MutableMapping
from typing import Any, Literal, TypedDict, cast

#: Session key of the pending sign-ins.
SESSION_KEY = "_spark_pending"
_STATE_RE = re.compile(r"[A-Za-z0-9_-]{20,128}")

Outcome = Literal["ok", "unknown", "expired"]


class PendingLogin(TypedDict):
    """One sign-in between ``/login`` and ``/callback``."""

    state: str
    next: str | None
    scope: str
    portal: str | None
    redirect_uri: str
    expires_at: float


def new_state() -> str:
    """256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def _pending(session: MutableMapping[str, Any]) -> list[PendingLogin]:
    value = session.get(SESSION_KEY)
    if not isinstance(value, list):
        return []
    return [
        cast(PendingLogin, item)
        for item in value
        if isinstance(item, dict) and isinstance(item.get("state"), str)
    ]


def add_pending(session: MutableMapping[str, Any], record: PendingLogin, max_pending: int) -> None:
    """Remember a sign-in; drop expired ones and the oldest past ``max_pending``."""
    now = time.time()
    items = [item for item in _pending(session) if item.get("expires_at", 0) > now]
    items.append(record)
    session[SESSION_KEY] = items[-max_pending:]


def pop_pending(
    session: MutableMapping[str, Any], state: str
) -> tuple[Outcome, PendingLogin | None]:
    """Find and remove the record of ``state`` (constant-time compare).

    :returns: ``("ok", record)``, ``("expired", record)`` (its ``next`` is still good for a
        fresh start) or ``("unknown", None)``.
    """
    items = _pending(session)
    if not items or not _STATE_RE.fullmatch(state):
        return "unknown", None
    match: PendingLogin | None = None
    rest: list[PendingLogin] = []
    for item in items:
        if match is None and hmac.compare_digest(item["state"].encode(), state.encode()):
            match = item
        else:
            rest.append(item)
    if match is None:
        return "unknown", None
    if rest:
        session[SESSION_KEY] = rest
    else:
        session.pop(SESSION_KEY, None)
    if not match.get("expires_at", 0) > time.time():
        return "expired", match
    return "ok", match
