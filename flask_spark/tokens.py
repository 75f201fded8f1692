"""Grants and their refresh: single flight per grant, and no lost update.

A :class:`GrantRef` says where one grant's tokens live. :class:`TokenManager` reads them,
and refreshes them so that, however many threads, workers and hosts find the same expired
token at once, exactly one refresh reaches the platform: each takes the grant's lock,
re-reads the record, and only calls the platform if nobody changed it meanwhile.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from .config import SparkConfig
from .errors import GrantError, PlatformUnavailable, ReauthenticationRequired
from .grant import GrantClient, TokenRecord
from .store import TokenStore

#: Failed refreshes remembered per process (one per grant, the oldest dropped first).
FAILURE_MEMORY = 1024


class RecordCache:
    """A short-lived, bounded, per-process memory of token records.

    It saves a store round trip on most requests. Serving a stale record is safe: a token
    another process has replaced gets 1020 or 1000 from the platform, and the client then
    re-reads the store (under the grant's lock for a refresh) and retries once. Every write
    this process makes updates it; ``ttl`` bounds how long another process's sign-out of one
    portal can go unseen here. Every sign-in rotates the session id, so a remembered
    "not signed in" never hides a new sign-in.
    """

    def __init__(self, ttl: float, size: int = 4096) -> None:
        self.ttl = ttl
        self.size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[str, str], tuple[float, TokenRecord | None]] = OrderedDict()

    def get(self, ref: GrantRef) -> tuple[bool, TokenRecord | None]:
        """``(True, record)`` when remembered and fresh, else ``(False, None)``."""
        if self.ttl <= 0:
            return False, None
        key = (ref.owner, ref.scope)
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return False, None
            if time.monotonic() - item[0] > self.ttl:
                del self._items[key]
                return False, None
            return True, item[1]

    def put(self, ref: GrantRef, record: TokenRecord | None) -> None:
        """Remember ``record`` (``None``: no grant) for ``ref``."""
        if self.ttl <= 0:
            return
        key = (ref.owner, ref.scope)
        with self._lock:
            self._items[key] = (time.monotonic(), record)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def forget_owner(self, owner: str) -> None:
        """Drop everything remembered for ``owner``."""
        with self._lock:
            for key in [k for k in self._items if k[0] == owner]:
                del self._items[key]


@dataclass(frozen=True)
class GrantRef:
    """Where one grant's record lives.

    :param owner: ``"session:<sid>"`` or ``"app:<fingerprint>"``.
    :param scope: ``"idx"``, ``"private"`` or ``"vow/<portal>"``.
    :param ttl: seconds the stored record lives (``None`` for the app-wide grant).
    """

    owner: str
    scope: str
    ttl: int | None

    @property
    def is_app(self) -> bool:
        """Whether this is the app-wide grant of single-session keys."""
        return self.owner.startswith("app:")


def session_owner(sid: str) -> str:
    """The owner name of a browser session's grants."""
    return f"session:{sid}"


def _fingerprint(*values: str) -> str:
    return hashlib.sha256("\x00".join(values).encode()).hexdigest()[:32]


class TokenManager:
    """Loads, stores and refreshes token records for one app."""

    def __init__(self, config: SparkConfig, store: TokenStore, grants: GrantClient) -> None:
        self.config = config
        self.store = store
        self.grants = grants
        # The holder extends the lock while it works; the lifetime only matters if the
        # holder dies, and waiters give up after the longest a refresh can take.
        self.lock_ttl = config.refresh_lock_seconds
        self.lock_wait = max(self.lock_ttl, config.timeout * 2) * 2
        self.cache = RecordCache(config.token_cache_seconds)
        # The last failed refresh of each grant in this process, shared with the threads
        # that were queued behind it instead of each calling the platform in turn.
        self._failures: dict[tuple[str, str], tuple[float, str, PlatformUnavailable]] = {}
        self._app_seed: str | None = None
        self._app_ref: GrantRef | None = None
        if config.access_token:
            self._app_seed = _fingerprint(config.access_token, config.refresh_token or "")
            self._app_ref = GrantRef(f"app:{_fingerprint(config.client_id)}", "app", None)

    # -- the app-wide grant of single-session keys ------------------------------------

    def app_ref(self) -> GrantRef | None:
        """The app-wide grant, when single-session keys are configured."""
        return self._app_ref

    def _seed_app_grant(self, ref: GrantRef) -> TokenRecord:
        """Start (or restart) the app grant from the configured pair, under its lock."""
        assert self.config.access_token
        assert self.config.refresh_token
        assert self._app_seed
        with self.store.lock(ref.owner, ref.scope, self.lock_ttl, self.lock_wait):
            again = self.store.load(ref.owner, ref.scope)
            if again is not None and again.get("seed") == self._app_seed:
                return again
            record = TokenRecord(
                access_token=self.config.access_token,
                refresh_token=self.config.refresh_token,
                # Unknown expiry: trust it until the platform says 1020.
                expires_at=time.time() + 86400,
                obtained_at=time.time(),
                seed=self._app_seed,
            )
            if self.config.redirect_uri:
                record["redirect_uri"] = self.config.redirect_uri
            self.store.save(ref.owner, ref.scope, record, None)
            return record

    # -- reading ---------------------------------------------------------------------

    def load(self, ref: GrantRef, *, fresh: bool = False) -> TokenRecord | None:
        """The grant's current record; ``None`` when there is none.

        :param fresh: read the store even if this process remembers the record.
        :raises ReauthenticationRequired: the app-wide grant was refused by the platform
            and the configured pair has not been replaced since.
        """
        hit, record = (False, None) if fresh else self.cache.get(ref)
        if not hit:
            record = self.store.load(ref.owner, ref.scope, touch=ref.ttl)
            if ref.is_app and (record is None or record.get("seed") != self._app_seed):
                record = self._seed_app_grant(ref)
            self.cache.put(ref, record)
        if record is not None and not record["access_token"]:
            raise ReauthenticationRequired(
                "The single-session tokens were refused; configure a new pair"
            )
        return record

    def is_due(self, record: TokenRecord, now: float | None = None) -> bool:
        """Whether the access token should be refreshed before use.

        The leeway never exceeds half the token's life, so a short-lived token is not
        refreshed on every call.
        """
        now = time.time() if now is None else now
        life = max(0.0, record["expires_at"] - record["obtained_at"])
        return now >= record["expires_at"] - min(self.config.token_leeway, life / 2)

    # -- writing ---------------------------------------------------------------------

    def store_new(self, ref: GrantRef, record: TokenRecord) -> None:
        """Keep the tokens of a fresh sign-in."""
        with self.store.lock(ref.owner, ref.scope, self.lock_ttl, self.lock_wait):
            self.store.save(ref.owner, ref.scope, record, ref.ttl)
            self.cache.put(ref, record)

    def rotate_owner(self, old_owner: str, new_owner: str, *, keep: bool = True) -> None:
        """Move (or, with ``keep=False``, drop) a session's records on session id rotation."""
        with self.store.lock(old_owner, "*", self.lock_ttl, self.lock_wait):
            if keep:
                self.store.move(old_owner, new_owner)
            else:
                self.store.delete(old_owner)
            self.cache.forget_owner(old_owner)
            self.cache.forget_owner(new_owner)

    def forget(self, ref: GrantRef) -> list[str]:
        """Delete the grant's record; returns the scopes the owner still holds."""
        with self.store.lock(ref.owner, ref.scope, self.lock_ttl, self.lock_wait):
            self.store.delete(ref.owner, ref.scope)
            self.cache.put(ref, None)
            return self.store.scopes(ref.owner)

    def discard(self, ref: GrantRef, rejected: TokenRecord) -> None:
        """The platform refused ``rejected`` as unknown: forget it, unless the store
        already holds another token. The app-wide grant keeps its record: only a new
        configured pair can replace it."""
        if ref.is_app:
            return
        with self.store.lock(ref.owner, ref.scope, self.lock_ttl, self.lock_wait):
            current = self.store.load(ref.owner, ref.scope)
            if current is not None and current["access_token"] == rejected["access_token"]:
                self.store.delete(ref.owner, ref.scope)
                current = None
            self.cache.put(ref, current)

    def refresh(self, ref: GrantRef, stale: TokenRecord) -> tuple[TokenRecord, bool]:
        """Replace ``stale`` with fresh tokens: single flight across threads and processes.

        :returns: the current record, and whether this call refreshed it at the platform
            (``False`` when another request already had).
        :raises ReauthenticationRequired: the platform refused the refresh token.
        :raises PlatformUnavailable: timeout, 5xx or garbage; the tokens are kept.
        """
        queued_at = time.monotonic()
        with self.store.thread_lock(ref.owner, ref.scope, self.lock_wait):
            # Threads of this process that waited here usually find the work done.
            current = self.store.load(ref.owner, ref.scope)
            if current is not None and current["access_token"] not in ("", stale["access_token"]):
                self.cache.put(ref, current)
                return current, False
            key = (ref.owner, ref.scope)
            failure = self._failures.get(key)
            if failure is not None:
                at, token, error = failure
                if token == stale["access_token"] and at >= queued_at:
                    # It failed while this thread waited for it: share the answer.
                    raise PlatformUnavailable(str(error), retry_after=error.retry_after)
            try:
                with self.store.process_lock(ref.owner, ref.scope, self.lock_ttl, self.lock_wait):
                    result = self._refresh_locked(ref, stale)
            except PlatformUnavailable as exc:
                self._failures[key] = (time.monotonic(), stale["access_token"], exc)
                while len(self._failures) > FAILURE_MEMORY:  # oldest first
                    del self._failures[next(iter(self._failures))]
                raise
            self._failures.pop(key, None)
            return result

    def _refresh_locked(self, ref: GrantRef, stale: TokenRecord) -> tuple[TokenRecord, bool]:
        """:meth:`refresh` once both locks are held: re-read, then call if still stale."""
        current = self.store.load(ref.owner, ref.scope)
        self.cache.put(ref, current)
        if current is None or not current["access_token"]:
            raise ReauthenticationRequired()
        if current["access_token"] != stale["access_token"]:
            return current, False
        redirect_uri = current.get("redirect_uri") or self.config.redirect_uri or ""
        try:
            fresh = self.grants.refresh(current["refresh_token"], redirect_uri)
        except GrantError as exc:
            if not exc.ends_grant:
                raise PlatformUnavailable(
                    f"The platform did not refresh the token ({exc.error})"
                ) from None
            return self._refused(ref, current), False
        for key in ("redirect_uri", "seed"):
            if key in current:
                fresh[key] = current[key]
        self.store.save(ref.owner, ref.scope, fresh, ref.ttl)
        self.cache.put(ref, fresh)
        return fresh, True

    def _refused(self, ref: GrantRef, current: TokenRecord) -> TokenRecord:
        """The platform refused the refresh token: unless another writer has already
        replaced it, the grant is over."""
        again = self.store.load(ref.owner, ref.scope)
        if again is not None and again["access_token"] != current["access_token"]:
            self.cache.put(ref, again)
            return again
        if ref.is_app:
            tombstone = TokenRecord(
                access_token="", refresh_token="", expires_at=0.0, obtained_at=time.time()
            )
            if "seed" in current:
                tombstone["seed"] = current["seed"]
            self.store.save(ref.owner, ref.scope, tombstone, None)
            self.cache.put(ref, tombstone)
        else:
            self.store.delete(ref.owner, ref.scope)
            self.cache.put(ref, None)
        raise ReauthenticationRequired()
