"""What a grant store keeps, and the one small protocol every backend implements.

Three kinds of record, each under its own key, so no write ever spans two of them:

- a **grant**: the tokens of one Spark account for one app key and scope, with the account
  summary read at sign-in and the refresh *lease* (who refreshes, until when);
- a **binding**: a random id held by a browser session, pointing at one grant. Signing out
  deletes the binding, so a stale session that comes back points at nothing;
- a **pending sign-in**: what a ``state`` stands for between ``/login`` and ``/callback``.

Besides them, *markers*: names that exist for a while (a retired session id), and *rate
windows*: the calls an app key made lately, so every worker shares one rate budget.

Only :class:`~flask_spark.tokens.TokenManager` calls a store. Every method is atomic on its
own; the compare-and-set ones (:meth:`GrantStore.take_lease`,
:meth:`GrantStore.finish_refresh`) are what makes one refresh per expiry across threads,
processes and hosts. A backend that does not answer raises
:class:`~flask_spark.errors.StoreUnavailable`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Protocol, runtime_checkable

#: Seconds between two writes of a binding's (and its grant's) last use.
TOUCH_INTERVAL = 60.0


def digest(*parts: str) -> str:
    """A stable 32-hex-digit name for ``parts`` (no part can be read back from it)."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


def new_secret() -> str:
    """256 random bits, URL-safe: binding ids and refresh lease holders."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class GrantKey:
    """Whose grant: the app's key (``client_id``), the Spark account ``Id``, the scope
    (``"idx"``, ``"private"``, ``"vow/<portal>"``, or ``"app"`` for single-session keys)."""

    client_id: str = field(repr=False)
    account_id: str
    scope: str

    @cached_property
    def id(self) -> str:
        """The grant's storage name."""
        return digest(self.client_id, self.account_id, self.scope)


@dataclass(frozen=True)
class Grant:
    """One grant as stored. Tokens never appear in its ``repr``."""

    key: GrantKey
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    #: Unix time after which the access token is taken as expired (local clock).
    expires_at: float
    #: Unix time the current access token was received.
    obtained_at: float
    #: The redirect URI of the sign-in, sent again with each refresh.
    redirect_uri: str | None = None
    #: The ``/my/account`` result read at sign-in.
    account: dict[str, Any] = field(default_factory=dict, repr=False)
    #: Who holds the refresh lease, and until when (Unix time); ``None``/0 when free.
    lease_holder: str | None = field(default=None, repr=False)
    lease_until: float = 0.0
    created_at: float = 0.0
    updated_at: float = 0.0
    #: The latest use through any of its bindings (recorded at most once a minute).
    last_used_at: float = 0.0

    @property
    def ended(self) -> bool:
        """A tombstone: the platform refused these tokens for good."""
        return not self.access_token

    def with_tokens(self, tokens: Tokens, now: float) -> Grant:
        """This grant holding ``tokens``, its lease free."""
        return replace(
            self,
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            expires_at=tokens.expires_at,
            obtained_at=tokens.obtained_at,
            lease_holder=None,
            lease_until=0.0,
            updated_at=now,
        )


@dataclass(frozen=True)
class Tokens:
    """A token pair as the grant endpoint gave it."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: float
    obtained_at: float


@dataclass(frozen=True)
class Binding:
    """What a browser session's binding id stands for."""

    grant_id: str
    account_id: str
    scope: str
    created_at: float
    last_used_at: float


class ChangeWatch(Protocol):
    """How a process learns that a binding or grant may have changed, so that one it has
    read can be served again from its memory instead of the store.

    A store offers one through an optional ``changes()`` method (``None``, or no method:
    every request reads the store).
    """

    def version(self) -> tuple[int, int] | None:
        """A value that differs from every earlier one once any binding or grant may have
        changed, through any process; ``None`` when that cannot be told right now (for
        instance while the store does not answer)."""
        ...


@runtime_checkable
class GrantStore(Protocol):
    """Where grants, bindings, pending sign-ins and markers live.

    Times are Unix seconds passed in by the caller, so every process agrees on one clock
    per decision.
    """

    # -- grants ------------------------------------------------------------------------

    def get(self, key: GrantKey) -> Grant | None:
        """The grant, or ``None``."""
        ...

    def put(self, grant: Grant) -> Grant | None:
        """Create the grant or replace its tokens and account (a new sign-in), freeing its
        lease; returns the grant it replaced, whose tokens the caller revokes."""
        ...

    def add(self, grant: Grant) -> bool:
        """Create the grant unless one with its key exists; returns whether it did."""
        ...

    def take_lease(
        self, key: GrantKey, stale_access_token: str, holder: str, until: float, now: float
    ) -> tuple[bool, Grant | None]:
        """Compare-and-set: give ``holder`` the refresh lease until ``until`` if the grant
        still holds ``stale_access_token`` and its lease is free, expired or already
        ``holder``'s. Returns whether it did, and the grant as it is now."""
        ...

    def finish_refresh(self, key: GrantKey, stale_access_token: str, grant: Grant) -> bool:
        """Compare-and-set: store ``grant``'s tokens if the grant still holds
        ``stale_access_token`` (or already holds ``grant``'s, so a retry is harmless);
        free the lease if ``grant.lease_holder`` held it. Returns whether the grant now
        holds ``grant``'s tokens.

        :raises StoreUnavailable: also when the write may not survive a failover (too few
            replicas acknowledged it), so the caller keeps the tokens and tries again."""
        ...

    def release_lease(self, key: GrantKey, holder: str) -> None:
        """Free the lease if ``holder`` holds it."""
        ...

    def end(self, key: GrantKey, access_token: str) -> bool:
        """Compare-and-set: turn the grant into a tombstone (empty tokens) if it still
        holds ``access_token``. Returns whether it did."""
        ...

    def delete(self, key: GrantKey) -> Grant | None:
        """Delete the grant and every binding to it; returns what was deleted."""
        ...

    def grants(self, client_id: str) -> Iterator[Grant]:
        """Every grant of the app key ``client_id``, in no particular order."""
        ...

    # -- bindings ----------------------------------------------------------------------

    def bind(self, key: GrantKey, now: float, ttl: float) -> str | None:
        """A new binding id for the grant ``key``, living ``ttl`` seconds past its last
        use; ``None`` if the grant does not exist."""
        ...

    def resolve(self, binding_id: str, now: float, ttl: float) -> tuple[Binding, Grant] | None:
        """The binding and its grant in one round trip, or ``None`` if either is gone.
        When the recorded last use is older than :data:`TOUCH_INTERVAL`, it becomes
        ``now`` on both, and the binding lives ``ttl`` seconds from now."""
        ...

    def unbind(self, binding_id: str) -> None:
        """Delete one binding."""
        ...

    # -- pending sign-ins and markers --------------------------------------------------

    def put_pending(self, state: str, record: dict[str, Any], expires_at: float) -> None:
        """Remember a pending sign-in under its ``state`` until ``expires_at`` (which the
        caller sets past the sign-in's own expiry, so a late callback can be told apart
        from an unknown one)."""
        ...

    def take_pending(self, state: str, now: float) -> dict[str, Any] | None:
        """Remove and return the pending sign-in of ``state`` (exactly one caller gets
        it), or ``None`` when there is none or it was kept past ``expires_at``."""
        ...

    def mark(self, name: str, expires_at: float) -> None:
        """Make the marker ``name`` exist until ``expires_at``."""
        ...

    def marked(self, name: str, now: float) -> bool:
        """Whether the marker ``name`` exists."""
        ...

    # -- rate windows ------------------------------------------------------------------

    def spend(
        self, bucket: str, limit: int, window: float, now: float, count: int = 1
    ) -> tuple[int, float]:
        """Count up to ``count`` calls in ``bucket`` at ``now``, as many as fit under
        ``limit`` in the ``window`` seconds up to ``now`` (a call counted at ``t`` leaves
        the window at ``t + window``). Returns ``(counted, 0.0)`` when it counted at
        least one, else ``(0, seconds)``: the seconds until enough counted calls leave
        the window for one more (always more than 0). ``count`` is at most
        :data:`MAX_BATCH`."""
        ...

    def close(self) -> None:
        """Release connections the store opened itself."""
        ...


#: The most calls one :meth:`GrantStore.spend` counts (the rate budget's largest batch).
MAX_BATCH = 64


def binding_digest(binding_id: str) -> str:
    """How a binding id is stored: reading the store does not give live binding ids."""
    return hashlib.sha256(binding_id.encode()).hexdigest()


def state_digest(state: str) -> str:
    """How a pending sign-in's ``state`` is stored."""
    return hashlib.sha256(b"state\x00" + state.encode()).hexdigest()


def rate_bucket(client_id: str) -> str:
    """The rate window of the app key ``client_id``."""
    return digest("rate", client_id)


def marker_digest(name: str) -> str:
    """How a marker's name is stored."""
    return hashlib.sha256(b"marker\x00" + name.encode()).hexdigest()


__all__ = [
    "MAX_BATCH",
    "TOUCH_INTERVAL",
    "Binding",
    "ChangeWatch",
    "Grant",
    "GrantKey",
    "GrantStore",
    "Tokens",
    "binding_digest",
    "digest",
    "marker_digest",
    "new_secret",
    "rate_bucket",
    "state_digest",
]
