"""Grants and their refresh: one refresh per expiry, and no token ever lost.

:class:`TokenManager` is the only caller of the grant store. A refresh is single flight:

1. threads of one process queue on a per-grant lock; whoever comes second usually finds
   the work done;
2. across processes and hosts, the refresher takes the grant's **lease** with a
   compare-and-set on the store (only if the grant still holds the stale token and nobody
   else's lease is running), calls the platform, and stores the new pair with another
   compare-and-set. Others wait, never past the lease plus a second, then use the stored
   pair or take the lease over from a holder that died;
3. when the store does not take the new pair, this process keeps it in memory and retries
   the save in the background until it lands or the lease runs out.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from .config import SparkConfig
from .errors import PlatformUnavailable, ReauthenticationRequired, StoreUnavailable
from .grant import GrantClient, GrantError
from .stores.base import (
    TOUCH_INTERVAL,
    ChangeWatch,
    Grant,
    GrantKey,
    GrantStore,
    Tokens,
    digest,
    new_secret,
)

log = logging.getLogger("flask_spark")

#: Failed refreshes remembered per process (one per grant, the oldest dropped first).
FAILURE_MEMORY = 1024
#: Seconds a pending sign-in is kept past its expiry, to tell a late callback from a forged one.
PENDING_GRACE = 3600.0
#: First and longest pause between two looks at a grant another process is refreshing.
_POLL_FIRST, _POLL_MAX = 0.001, 0.005
#: Seconds a lease must outlast SPARK_TIMEOUT to need no extending while its holder
#: waits for the platform: the time from taking it to sending the call, and then some.
_LEASE_SLACK = 5.0


class GrantCache:
    """A short-lived, bounded, per-process memory of grants read by key (the app-wide
    grant, :meth:`~flask_spark.Spark.client_for`). Browser requests read their binding
    through :class:`BindingCache` instead, which follows the store's changes.

    Serving a stale grant is safe: a token another process replaced gets 1020 or 1000 from
    the platform, and the client then reads the store again and retries.
    """

    def __init__(self, ttl: float, size: int = 4096) -> None:
        self.ttl = ttl
        self.size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[float, Grant | None]] = OrderedDict()

    def get(self, key: GrantKey) -> tuple[bool, Grant | None]:
        """``(True, grant)`` when remembered and fresh, else ``(False, None)``."""
        if self.ttl <= 0:
            return False, None
        with self._lock:
            item = self._items.get(key.id)
            if item is None:
                return False, None
            if time.monotonic() - item[0] > self.ttl:
                del self._items[key.id]
                return False, None
            return True, item[1]

    def since(self, key: GrantKey, moment: float) -> Grant | None:
        """The grant remembered for ``key`` if it was put at ``moment`` (monotonic) or
        later, while fresh: what a refresh this thread queued behind left."""
        if self.ttl <= 0:
            return None
        with self._lock:
            item = self._items.get(key.id)
        if item is None or item[0] < moment or time.monotonic() - item[0] > self.ttl:
            return None
        return item[1]

    def put(self, key: GrantKey, grant: Grant | None) -> None:
        """Remember ``grant`` (``None``: no grant) for ``key``."""
        if self.ttl <= 0:
            return
        with self._lock:
            self._items[key.id] = (time.monotonic(), grant)
            self._items.move_to_end(key.id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


class BindingCache:
    """What browsers' bindings resolved to, kept per process while the store's
    :class:`~flask_spark.stores.base.ChangeWatch` says nothing changed since: a signed-in
    request then reads neither the store nor the sealed tokens.

    An entry holds the version it was read at (read *before* the store, so a change
    during the read makes it stale at once) and lives at most half of
    :data:`~flask_spark.stores.base.TOUCH_INTERVAL`, so a binding in use is still
    touched in the store on time. A sign-out, anywhere, changes the version: the next
    request of any browser of that binding reads the store again.
    """

    def __init__(self, size: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.max_age = TOUCH_INTERVAL / 2
        self._clock = clock
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[object, float, Grant | None]] = OrderedDict()

    def get(self, binding_id: str, version: object) -> tuple[bool, Grant | None]:
        """``(True, grant)`` (``None``: no grant) when remembered at ``version`` and
        young enough, else ``(False, None)``."""
        with self._lock:
            item = self._items.get(binding_id)
            if item is None:
                return False, None
            if item[0] != version or self._clock() - item[1] > self.max_age:
                del self._items[binding_id]
                return False, None
            return True, item[2]

    def put(self, binding_id: str, version: object, grant: Grant | None) -> None:
        with self._lock:
            self._items[binding_id] = (version, self._clock(), grant)
            self._items.move_to_end(binding_id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


class _KeyLocks:
    """One :class:`threading.Lock` per grant, dropped when nobody holds a reference."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: weakref.WeakValueDictionary[str, _Lock] = weakref.WeakValueDictionary()

    def get(self, name: str) -> _Lock:
        with self._guard:
            lock = self._locks.get(name)
            if lock is None:
                lock = _Lock()
                self._locks[name] = lock
            return lock

    def held(self, name: str) -> bool:
        """Whether a thread holds the lock of ``name`` now."""
        with self._guard:
            lock = self._locks.get(name)
        return lock is not None and lock.lock.locked()


class _Lock:
    """A weak-referenceable lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()


@dataclass(frozen=True)
class _Failure:
    at: float
    access_token: str
    error: PlatformUnavailable


@dataclass
class _Unsaved:
    """Fresh tokens the store has not taken yet."""

    stale_access_token: str
    grant: Grant
    until: float


class _LeaseKeeper:
    """Extends a refresh lease while its holder waits for the platform, so a slow answer
    never lets a second refresh in; a holder that dies stops extending it.

    Only with ``extend``: a lease that outlasts the refresh call's own deadline (the
    default, ``2 x SPARK_TIMEOUT + 5``) needs no extending, and no thread is started (a
    thread's start waits for it to run, which in a busy process costs the refresh a
    scheduling round)."""

    def __init__(
        self,
        store: GrantStore,
        key: GrantKey,
        stale: str,
        holder: str,
        seconds: float,
        until: float,
        *,
        extend: bool,
    ) -> None:
        self._store, self._key, self._stale, self._holder = store, key, stale, holder
        self._seconds = seconds
        self.until = until
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        if extend:
            self._thread = threading.Thread(
                target=self._run, name="flask-spark-lease", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(self._seconds / 3):
            now = time.time()
            try:
                won, _ = self._store.take_lease(
                    self._key, self._stale, self._holder, now + self._seconds, now
                )
            except StoreUnavailable:
                continue
            if not won:
                return
            self.until = now + self._seconds

    def stop(self) -> float:
        """Stop extending; returns when the lease now ends."""
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        return self.until


class TokenManager:
    """Reads, stores and refreshes the grants of one app."""

    def __init__(self, config: SparkConfig, store: GrantStore, grants: GrantClient) -> None:
        self.config = config
        self.store = store
        self.grants = grants
        self.lease_seconds = config.refresh_lease_seconds
        #: Whether a refresh must extend its lease: the call to the platform ends within
        #: SPARK_TIMEOUT (:mod:`~flask_spark.deadlines`), so only a lease shorter than
        #: that, with a margin, could run out under it.
        self.extend_leases = self.lease_seconds < config.timeout + _LEASE_SLACK
        #: The longest a request waits for another process's refresh.
        self.max_wait = max(self.lease_seconds, 2 * config.timeout) + 1.0
        self.cache = GrantCache(config.token_cache_seconds)
        self.bindings = BindingCache()
        changes = getattr(store, "changes", None)
        self._watch: ChangeWatch | None = None if changes is None else changes()
        # Bumped after each change this process makes, so its own changes are seen
        # before the store's watch reports them.
        self._changes = itertools.count()
        self._changed = next(self._changes)
        self._locks = _KeyLocks()
        self._binding_locks = _KeyLocks()
        self._state_lock = threading.Lock()
        # The last failed refresh of each grant in this process, shared with the threads
        # that were queued behind it instead of each calling the platform in turn.
        self._failures: OrderedDict[str, _Failure] = OrderedDict()
        self._unsaved: dict[str, _Unsaved] = {}
        self._app_key: GrantKey | None = None
        #: A personal access token's grant: never stored, never refreshed.
        self._personal: Grant | None = None
        if config.access_token and config.refresh_token:
            seed = digest(config.access_token, config.refresh_token)
            self._app_key = GrantKey(config.client_id, f"@app-{seed}", "app")
        elif config.access_token:
            self._app_key = GrantKey(
                config.client_id, f"@token-{digest(config.access_token)}", "app"
            )
            now = time.time()
            self._personal = Grant(
                key=self._app_key,
                access_token=config.access_token,
                refresh_token="",
                expires_at=math.inf,
                obtained_at=now,
                created_at=now,
                updated_at=now,
            )

    def __repr__(self) -> str:
        return f"<TokenManager store={self.store!r}>"

    @property
    def backing_store(self) -> GrantStore:
        """The store itself, under the sealing: what instances sharing a store share."""
        inner: GrantStore = getattr(self.store, "inner", self.store)
        return inner

    # -- keys ----------------------------------------------------------------------------

    def key(self, account_id: str, scope: str) -> GrantKey:
        """The key of ``account_id``'s grant in ``scope`` for this app's key."""
        return GrantKey(self.config.client_id, account_id, scope)

    def stored_grants(self) -> list[Grant]:
        """Every grant the store holds for this app's key (any scope, the app-wide one
        too)."""
        return list(self.store.grants(self.config.client_id))

    @property
    def app_key(self) -> GrantKey | None:
        """The app-wide grant of single-session keys or of a personal access token, when
        configured."""
        return self._app_key

    def is_personal(self, grant: Grant) -> bool:
        """Whether ``grant`` is the personal access token's (nothing to refresh)."""
        return self._personal is not None and grant.key == self._personal.key

    # -- reading -------------------------------------------------------------------------

    def resolve(self, binding_id: str, ttl: float) -> Grant | None:
        """The grant a browser's binding points at; ``None`` when the binding or the
        grant is gone (signed out, revoked, expired unused). Served from
        :attr:`bindings` while the store's watch says nothing changed, else read from
        the store."""
        version = self._version()
        if version is None:
            found = self.store.resolve(binding_id, time.time(), ttl)
            return None if found is None else self._newest(found[1])
        hit, grant = self.bindings.get(binding_id, version)
        if not hit:
            # One thread of the process reads a binding at a time: the requests of a
            # browser that all missed at once (a change just reported) take what the
            # first one read, instead of each reading the store and unsealing.
            entry = self._binding_locks.get(binding_id)  # held: the lock lives while used
            with entry.lock:
                hit, grant = self.bindings.get(binding_id, version)
                if not hit:
                    found = self.store.resolve(binding_id, time.time(), ttl)
                    grant = None if found is None else found[1]
                    self.bindings.put(binding_id, version, grant)
        return None if grant is None else self._newest(grant)

    def _version(self) -> tuple[object, int] | None:
        """The store's version and this process's own changes; ``None`` when the store
        cannot tell (then bindings are read from the store)."""
        if self._watch is None:
            return None
        version = self._watch.version()
        return None if version is None else (version, self._changed)

    def _note_change(self) -> None:
        """Called after each change this process makes to a grant or binding."""
        self._changed = next(self._changes)

    def get(self, key: GrantKey, *, fresh: bool = False) -> Grant | None:
        """The grant of ``key`` (possibly remembered for ``SPARK_TOKEN_CACHE_SECONDS``).

        The app-wide grant is seeded from the configured pair on first use.
        """
        if self._personal is not None and key == self._personal.key:
            return self._personal
        hit, grant = (False, None) if fresh else self.cache.get(key)
        if not hit:
            grant = self.store.get(key)
            if grant is None and key == self._app_key:
                grant = self._seed_app_grant(key)
            grant = None if grant is None else self._newest(grant)
            self.cache.put(key, grant)
        return grant

    def _newest(self, grant: Grant) -> Grant:
        """``grant``, or the fresh tokens this process holds for it but could not save."""
        if not self._unsaved:
            return grant
        unsaved = self._unsaved.get(grant.key.id)
        if unsaved is not None and unsaved.stale_access_token == grant.access_token:
            return unsaved.grant
        return grant

    def _seed_app_grant(self, key: GrantKey) -> Grant | None:
        assert self.config.access_token
        assert self.config.refresh_token
        now = time.time()
        self.store.add(
            Grant(
                key=key,
                access_token=self.config.access_token,
                refresh_token=self.config.refresh_token,
                # Unknown expiry: trust it until the platform says 1020.
                expires_at=now + 86400,
                obtained_at=now,
                redirect_uri=self.config.redirect_uri,
                created_at=now,
                updated_at=now,
            )
        )
        return self.store.get(key)

    def refreshing(self, grant: Grant) -> bool:
        """Whether a refresh of ``grant`` is under way: in this process, or in another
        whose lease the record (as read) shows."""
        return self._locks.held(grant.key.id) or grant.lease_until > time.time()

    def is_due(self, grant: Grant, now: float | None = None) -> bool:
        """Whether the access token should be refreshed before use.

        The leeway never exceeds half the token's life, so a short-lived token is not
        refreshed on every call.
        """
        now = time.time() if now is None else now
        life = max(0.0, grant.expires_at - grant.obtained_at)
        return now >= grant.expires_at - min(self.config.token_leeway, life / 2)

    # -- sign-in and sign-out ------------------------------------------------------------

    def sign_in(
        self, key: GrantKey, tokens: Tokens, redirect_uri: str, account: dict[str, Any]
    ) -> Grant:
        """Store a fresh sign-in as ``key``'s grant, replacing (and revoking at the
        platform) the tokens it held before."""
        now = time.time()
        grant = Grant(
            key=key,
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            expires_at=tokens.expires_at,
            obtained_at=tokens.obtained_at,
            redirect_uri=redirect_uri,
            account=account,
            created_at=now,
            updated_at=now,
            last_used_at=now,
        )
        try:
            replaced = self.store.put(grant)
        finally:
            self._note_change()
        self._forget_unsaved(key)
        self.cache.put(key, grant)
        if (
            replaced is not None
            and replaced.access_token
            and replaced.access_token != grant.access_token
            and replaced.refresh_token != grant.refresh_token
            and not self.grants.revoke(replaced.access_token, replaced.refresh_token)
        ):
            log.warning("Flexmls did not confirm revoking the grant a new sign-in replaced")
        return grant

    def bind(self, key: GrantKey, ttl: float) -> str:
        """A new binding id for a browser session.

        :raises StoreUnavailable: the store did not answer, or the grant is gone.
        """
        binding_id = self.store.bind(key, time.time(), ttl)
        if binding_id is None:
            raise StoreUnavailable("The grant disappeared before it could be bound")
        return binding_id

    def unbind(self, binding_id: str) -> None:
        """Forget one browser's binding; the grant stays for the account's others."""
        try:
            self.store.unbind(binding_id)
        finally:
            self._note_change()

    def end(self, key: GrantKey) -> tuple[Grant | None, bool]:
        """End the grant for every browser and job: delete it with all its bindings and
        revoke it at the platform (best effort). Returns what was deleted and whether the
        platform confirmed the revocation."""
        try:
            grant = self.store.delete(key)
        finally:
            self._note_change()
        self._forget_unsaved(key)
        self.cache.put(key, None)
        if grant is None or not grant.access_token:
            return grant, True
        return grant, self.grants.revoke(grant.access_token, grant.refresh_token)

    def discard(self, grant: Grant) -> None:
        """The platform refused ``grant``'s token as unknown (revoked at Flexmls): the grant
        is over, unless the store already holds another token. The app-wide grant keeps
        its record: only a new configured pair can replace it."""
        if grant.key == self._app_key:
            return
        current = self.store.get(grant.key)
        if (
            current is not None
            and current.access_token == grant.access_token
            and current.lease_until <= time.time()  # not while a refresh is under way
        ):
            self.store.delete(grant.key)
            self._note_change()
            current = None
        self.cache.put(grant.key, current)

    # -- pending sign-ins and retired sessions -------------------------------------------

    def put_pending(self, state: str, record: dict[str, Any]) -> None:
        """Remember a sign-in between ``/login`` and ``/callback``."""
        self.store.put_pending(state, record, float(record["expires_at"]) + PENDING_GRACE)

    def take_pending(self, state: str) -> dict[str, Any] | None:
        """The pending sign-in of ``state``, which no one else will get."""
        return self.store.take_pending(state, time.time())

    def retire_session(self, sid: str, ttl: float) -> None:
        """Record that a browser session id was rotated away or signed out, so a request
        that started before cannot write it back or send its cookie again."""
        self.store.mark(f"sid\x00{sid}", time.time() + ttl)

    def session_retired(self, sid: str) -> bool:
        """Whether :meth:`retire_session` was called for ``sid``."""
        return self.store.marked(f"sid\x00{sid}", time.time())

    # -- refresh -------------------------------------------------------------------------

    def refresh(self, stale: Grant) -> tuple[Grant, bool]:
        """Replace ``stale``'s tokens with fresh ones: single flight across threads,
        processes and hosts.

        :returns: the current grant, and whether this call refreshed it at the platform
            (``False`` when another request already had).
        :raises ReauthenticationRequired: the platform refused the refresh token.
        :raises PlatformUnavailable: timeout, 5xx or garbage; the tokens are kept.
        :raises StoreUnavailable: the store did not answer, or another refresh outlived
            its lease.
        """
        key = stale.key
        queued_at = time.monotonic()
        local = self._locks.get(key.id)
        if not local.lock.acquire(timeout=self.max_wait):
            raise StoreUnavailable("Timed out waiting for the token refresh")
        try:
            # Queued behind a refresh of this process: its tokens are in memory.
            known = self.cache.since(key, queued_at)
            if known is not None and not known.ended and known.access_token != stale.access_token:
                return known, False
            newest = self._newest(stale)
            if newest is not stale:  # this process holds its successor, not saved yet
                return newest, False
            if self._failure_since(stale, queued_at) is not None:
                # The refresh this call queued behind failed: its answer is this call's,
                # unless the store has new tokens meanwhile.
                current = self._current(key)
                if current.access_token != stale.access_token:
                    return current, False
                self._raise_failure_since(stale, queued_at)
            # No read first: taking the lease answers with the stored grant, whose new
            # tokens (another process refreshed) are used instead of refreshing again.
            try:
                result = self._refresh_leased(stale)
            except PlatformUnavailable as exc:
                with self._state_lock:
                    self._failures[key.id] = _Failure(time.monotonic(), stale.access_token, exc)
                    self._failures.move_to_end(key.id)
                    while len(self._failures) > FAILURE_MEMORY:
                        self._failures.popitem(last=False)
                raise
            with self._state_lock:
                self._failures.pop(key.id, None)
            return result
        finally:
            local.lock.release()

    def settled(self, grant: Grant) -> Grant:
        """``grant`` as it is once the refresh under way (:meth:`refreshing`) is over:
        waits for this process's refresh and for another process's lease, and never
        refreshes itself (the refresh under way may be of tokens newer than ``grant``'s).

        :raises PlatformUnavailable: the refresh waited for failed (its answer, shared).
        :raises ReauthenticationRequired: the grant has ended.
        :raises StoreUnavailable: the store did not answer, or the refresh outlived its
            lease.
        """
        key = grant.key
        queued_at = time.monotonic()
        local = self._locks.get(key.id)
        # One thread of the process follows the lease at a time, holding the key's lock:
        # the others queue on it and then find the new tokens in memory, instead of
        # every waiting thread polling the store (which, in a burst, starves the CPU the
        # refresh itself needs).
        if not local.lock.acquire(timeout=self.max_wait):
            raise StoreUnavailable("Timed out waiting for the token refresh")
        try:
            self._raise_failure_since(grant, queued_at)
            known = self.cache.since(key, queued_at)
            if known is not None and not known.ended and known.access_token != grant.access_token:
                return known
            pause = _POLL_FIRST
            while True:
                current = self._current(key)
                now = time.time()
                if current.access_token != grant.access_token or current.lease_until <= now:
                    return current
                pause = self._follow_lease(current, now, queued_at, pause)
        finally:
            local.lock.release()

    def _failure_since(self, grant: Grant, since: float) -> _Failure | None:
        """The failure of this process's refresh of ``grant``'s tokens, if one ended after
        ``since`` (monotonic): it failed while the caller waited for it."""
        with self._state_lock:
            failure = self._failures.get(grant.key.id)
        if (
            failure is not None
            and failure.access_token == grant.access_token
            and failure.at >= since
        ):
            return failure
        return None

    def _raise_failure_since(self, grant: Grant, since: float) -> None:
        """Raise :meth:`_failure_since`'s failure, if any: its answer is shared.

        :raises PlatformUnavailable: that failure.
        """
        failure = self._failure_since(grant, since)
        if failure is not None:
            raise PlatformUnavailable(str(failure.error), retry_after=failure.error.retry_after)

    def _follow_lease(self, found: Grant, now: float, since: float, pause: float) -> float:
        """Wait ``pause`` for the holder of ``found``'s lease (it extends it while the
        platform answers): never past a second after the lease ends, nor past
        :attr:`max_wait` from ``since`` (monotonic). Returns the next pause.

        :raises StoreUnavailable: that time has passed.
        """
        deadline = min(
            time.monotonic() + max(0.0, found.lease_until - now) + 1.0, since + self.max_wait
        )
        if time.monotonic() >= deadline:
            raise StoreUnavailable("Timed out waiting for another process's token refresh")
        time.sleep(pause)
        return min(pause * 2, _POLL_MAX)

    def _current(self, key: GrantKey) -> Grant:
        """The stored grant (or its unsaved successor).

        :raises ReauthenticationRequired: there is none, or it has ended.
        """
        grant = self.store.get(key)
        grant = None if grant is None else self._newest(grant)
        self.cache.put(key, grant)
        if grant is None or grant.ended:
            raise ReauthenticationRequired(self._ended_message(key))
        return grant

    def _ended_message(self, key: GrantKey) -> str:
        if key == self._app_key:
            return "The single-session tokens were refused; configure a new pair"
        return "The Flexmls sign-in has ended; sign in again"

    def _refresh_leased(self, grant: Grant) -> tuple[Grant, bool]:
        """Take the lease of ``grant``'s tokens (or wait for its holder), then refresh at
        the platform."""
        key = grant.key
        stale = grant.access_token
        holder = new_secret()
        waited_since = time.monotonic()
        pause = _POLL_FIRST
        while True:
            now = time.time()
            won, found = self.store.take_lease(key, stale, holder, now + self.lease_seconds, now)
            if found is None or found.ended:
                self.cache.put(key, found)
                raise ReauthenticationRequired(self._ended_message(key))
            if found.access_token != stale:
                found = self._newest(found)
                self.cache.put(key, found)
                return found, False
            if won:
                break
            pause = self._follow_lease(found, now, waited_since, pause)
        keeper = _LeaseKeeper(
            self.store,
            key,
            stale,
            holder,
            self.lease_seconds,
            now + self.lease_seconds,
            extend=self.extend_leases,
        )
        try:
            tokens = self.grants.refresh(
                found.refresh_token, found.redirect_uri or self.config.redirect_uri or ""
            )
        except GrantError as exc:
            keeper.stop()
            if not exc.ends_grant:
                self._release(key, holder)
                raise PlatformUnavailable(
                    f"The platform did not refresh the token ({exc.error})"
                ) from None
            return self._refused(found), False
        except PlatformUnavailable:
            keeper.stop()
            self._release(key, holder)
            raise
        lease_until = keeper.stop()
        fresh = replace(found.with_tokens(tokens, time.time()), lease_holder=holder)
        self._save(key, stale, fresh, lease_until)
        fresh = replace(fresh, lease_holder=None, lease_until=0.0)
        self.cache.put(key, fresh)
        return fresh, True

    def _release(self, key: GrantKey, holder: str) -> None:
        with contextlib.suppress(StoreUnavailable):  # else the lease runs out by itself
            self.store.release_lease(key, holder)

    def _refused(self, current: Grant) -> Grant:
        """The platform refused the refresh token: unless another writer has already
        replaced it, the grant is over."""
        key = current.key
        again = self.store.get(key)
        if again is not None and again.access_token not in ("", current.access_token):
            self.cache.put(key, again)
            return again
        if key == self._app_key:
            self.store.end(key, current.access_token)
            self._note_change()
            self.cache.put(key, self.store.get(key))
        else:
            self.store.delete(key)
            self._note_change()
            self.cache.put(key, None)
        raise ReauthenticationRequired(self._ended_message(key))

    # -- saving rotated tokens -----------------------------------------------------------

    def _save(self, key: GrantKey, stale: str, fresh: Grant, until: float) -> None:
        """Store the rotated pair; if the store does not answer, keep it in memory and
        retry in the background until it lands or the lease runs out."""
        try:
            stored = self.store.finish_refresh(key, stale, fresh)
        except StoreUnavailable:
            self._keep_unsaved(
                key, _Unsaved(stale, replace(fresh, lease_holder=None), until), fresh
            )
            return
        finally:
            self._note_change()
        if not stored:
            log.warning(
                "A refreshed grant was replaced meanwhile (a new sign-in); kept the newer one"
            )

    def _keep_unsaved(self, key: GrantKey, unsaved: _Unsaved, fresh: Grant) -> None:
        with self._state_lock:
            self._unsaved[key.id] = unsaved
        log.warning("The grant store did not take refreshed tokens; retrying in the background")
        thread = threading.Thread(
            target=self._retry_save,
            args=(key, unsaved, fresh),
            name="flask-spark-save",
            daemon=True,
        )
        thread.start()

    def _retry_save(self, key: GrantKey, unsaved: _Unsaved, fresh: Grant) -> None:
        pause = 0.05
        while time.time() < unsaved.until:
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
            try:
                self.store.finish_refresh(key, unsaved.stale_access_token, fresh)
            except StoreUnavailable:
                continue
            self._forget_unsaved(key, unsaved)
            self._note_change()
            log.info("Refreshed tokens saved after a store outage")
            return
        self._forget_unsaved(key, unsaved)
        log.error("Refreshed tokens could not be confirmed saved before the lease ran out")

    def _forget_unsaved(self, key: GrantKey, only: _Unsaved | None = None) -> None:
        with self._state_lock:
            if only is None or self._unsaved.get(key.id) is only:
                self._unsaved.pop(key.id, None)
