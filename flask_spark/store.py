"""Server-side token storage beside the Flask-Session data, and the per-grant lock.

A token record lives under its own key, never inside the session blob: Flask-Session rewrites
the whole session at the end of every request, and a slow request would otherwise write an
old, rotated-away refresh token back over a fresh one. Only the sign-in, the refresh and the
sign-out write these keys, each under the grant's lock.

An *owner* is what the tokens belong to: ``"session:<sid>"`` for a browser session or
``"app:<fingerprint>"`` for single-session keys. A *scope* names the sign-in inside it
(``"idx"``, ``"private"`` or ``"vow/<portal>"``), so one browser can be signed in to several
portals without their tokens ever crossing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

from .errors import StoreUnavailable
from .grant import TokenRecord

if TYPE_CHECKING:
    from cachelib import BaseCache
    from redis import Redis

_FIELDS = ("access_token", "refresh_token", "expires_at", "obtained_at")


def _decode(value: Any) -> TokenRecord | None:
    """A stored record, or ``None`` for anything that is not a complete one."""
    if isinstance(value, bytes | str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, dict) or not all(k in value for k in _FIELDS):
        return None
    if not isinstance(value["access_token"], str) or not isinstance(value["refresh_token"], str):
        return None
    return cast(TokenRecord, dict(value))


@contextlib.contextmanager
def _answering(
    errors: type[BaseException] | tuple[type[BaseException], ...], what: str = "store"
) -> Iterator[None]:
    """Turn a backend's own errors into :class:`StoreUnavailable` (no details that could
    name a key)."""
    try:
        yield
    except errors as exc:
        raise StoreUnavailable(f"Token {what} unavailable ({type(exc).__name__})") from None


class _ThreadLocks:
    """One :class:`threading.Lock` per name, dropped when nobody holds a reference."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()

    def get(self, name: str) -> Any:
        with self._guard:
            lock = self._locks.get(name)
            if lock is None:
                lock = _NamedLock()
                self._locks[name] = lock
            return lock


class _NamedLock:
    """A weak-referenceable lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()


class TokenStore(ABC):
    """Where token records live. Subclass it to keep tokens in another backend.

    :meth:`save`, :meth:`delete` and :meth:`move` are called while holding :meth:`lock`
    for the owner and scope concerned.
    """

    def __init__(self) -> None:
        self._thread_locks = _ThreadLocks()

    @abstractmethod
    def load(self, owner: str, scope: str, touch: int | None = None) -> TokenRecord | None:
        """The record of ``scope`` for ``owner``, or ``None``.

        :param touch: also give the owner's records this many more seconds of life, as the
            session they belong to is kept alive by use (a backend may ignore it).
        """

    @abstractmethod
    def save(self, owner: str, scope: str, record: TokenRecord, ttl: int | None) -> None:
        """Write the record; ``ttl`` seconds of life (``None``: no expiry)."""

    @abstractmethod
    def delete(self, owner: str, scope: str | None = None) -> None:
        """Remove one scope's record, or every record of ``owner`` when ``scope`` is None."""

    @abstractmethod
    def scopes(self, owner: str) -> list[str]:
        """The scopes ``owner`` holds records for."""

    @abstractmethod
    def move(self, old_owner: str, new_owner: str) -> None:
        """Give every record of ``old_owner`` to ``new_owner`` (session id rotation)."""

    @abstractmethod
    def claim(self, name: str, ttl: int) -> bool:
        """Record ``name`` as used for ``ttl`` seconds; ``False`` if it already was.
        Atomic across processes: exactly one caller wins."""

    @abstractmethod
    def _cross_process_lock(
        self, name: str, ttl: float, wait: float
    ) -> contextlib.AbstractContextManager[None]:
        """A lock shared with the other processes (and hosts) that use this store."""

    def lock_name(self, owner: str, scope: str) -> str:
        """The lock that guards ``owner``'s ``scope``: one per owner, so that moving a
        session's records on id rotation waits for a refresh of any of its portals (a
        refresh finishing after the move would write under the old owner)."""
        return owner

    @contextlib.contextmanager
    def thread_lock(self, owner: str, scope: str, wait: float) -> Iterator[None]:
        """Hold the grant's lock among this process's threads only.

        :raises StoreUnavailable: it could not be taken within ``wait`` seconds.
        """
        local = self._thread_locks.get(self.lock_name(owner, scope))
        if not local.lock.acquire(timeout=wait):
            raise StoreUnavailable("Timed out waiting for the token refresh lock")
        try:
            yield
        finally:
            local.lock.release()

    @contextlib.contextmanager
    def process_lock(self, owner: str, scope: str, ttl: float, wait: float) -> Iterator[None]:
        """Hold the grant's lock across processes (and hosts); take :meth:`thread_lock`
        first."""
        with self._cross_process_lock(self.lock_name(owner, scope), ttl, wait):
            yield

    @contextlib.contextmanager
    def lock(self, owner: str, scope: str, ttl: float, wait: float) -> Iterator[None]:
        """Hold the grant's lock: first among this process's threads, then across processes.

        :param ttl: how long the cross-process lock outlives a holder that died.
        :param wait: how long to wait for it before giving up.
        :raises StoreUnavailable: the lock could not be taken in time or the store is down.
        """
        with self.thread_lock(owner, scope, wait), self.process_lock(owner, scope, ttl, wait):
            yield


class RedisTokenStore(TokenStore):
    """Records in one Redis hash per owner (a field per scope); a Redis lock per owner.

    The lock is ``SET NX PX`` with a random token, released by compare-and-delete, and
    extended while its holder is still working so that a slow platform never lets a
    second refresh in.
    """

    def __init__(self, client: Redis, key_prefix: str = "session:") -> None:
        from redis.exceptions import RedisError

        super().__init__()
        self.client = client
        self.key_prefix = key_prefix
        self._errors = RedisError

    def _key(self, owner: str) -> str:
        return f"{self.key_prefix}spark:{owner}"

    def load(self, owner: str, scope: str, touch: int | None = None) -> TokenRecord | None:
        key = self._key(owner)
        with _answering(self._errors):
            if touch is None:
                value = self.client.hget(key, scope)
            else:  # one round trip; EXPIRE on a missing key does nothing
                pipe = self.client.pipeline(transaction=False)
                pipe.hget(key, scope)
                pipe.expire(key, touch)
                value = pipe.execute()[0]
        return None if value is None else _decode(value)

    def save(self, owner: str, scope: str, record: TokenRecord, ttl: int | None) -> None:
        key = self._key(owner)
        with _answering(self._errors):
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(key, scope, json.dumps(record))
            if ttl is None:
                pipe.persist(key)
            else:
                pipe.expire(key, ttl)
            pipe.execute()

    def delete(self, owner: str, scope: str | None = None) -> None:
        with _answering(self._errors):
            if scope is None:
                self.client.delete(self._key(owner))
            else:
                self.client.hdel(self._key(owner), scope)

    def claim(self, name: str, ttl: int) -> bool:
        with _answering(self._errors):
            return bool(self.client.set(f"{self.key_prefix}spark-used:{name}", 1, nx=True, ex=ttl))

    def scopes(self, owner: str) -> list[str]:
        with _answering(self._errors):
            keys = self.client.hkeys(self._key(owner))
        return [k.decode() if isinstance(k, bytes) else str(k) for k in keys]

    def move(self, old_owner: str, new_owner: str) -> None:
        from redis.exceptions import ResponseError

        with _answering(self._errors):
            try:
                self.client.rename(self._key(old_owner), self._key(new_owner))
            except ResponseError as exc:
                if "no such key" not in str(exc).lower():
                    raise StoreUnavailable(f"Token store refused the move ({exc})") from None

    @contextlib.contextmanager
    def _cross_process_lock(self, name: str, ttl: float, wait: float) -> Iterator[None]:
        from redis.exceptions import LockError

        lock = self.client.lock(
            f"{self.key_prefix}spark-lock:{name}",
            timeout=ttl,
            sleep=0.01,
            blocking_timeout=wait,
            thread_local=False,
        )
        with _answering(self._errors, "lock"):
            acquired = lock.acquire()
        if not acquired:
            raise StoreUnavailable("Timed out waiting for the token refresh lock")
        done = threading.Event()

        def keep_alive() -> None:
            while not done.wait(ttl / 3):
                try:
                    lock.extend(ttl, replace_ttl=True)
                except (LockError, self._errors):
                    return

        watcher = threading.Thread(target=keep_alive, name="flask-spark-lock", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            done.set()
            watcher.join()
            with contextlib.suppress(LockError, self._errors):
                lock.release()


class CacheLibTokenStore(TokenStore):
    """Records in a cachelib cache (Flask-Session's ``filesystem`` and ``cachelib`` types).

    Each owner's records are one cache entry; the lock is per owner and is a file lock
    (``fcntl``) in ``lock_dir`` on top of the thread lock, so threads and processes of one
    host take turns. Several hosts need :class:`RedisTokenStore`.
    """

    _STRIPES = 64

    def __init__(self, cache: BaseCache, lock_dir: str | None = None) -> None:
        super().__init__()
        self.cache = cache
        # Beside the cache, not in it: FileSystemCache prunes whatever its folder holds.
        cache_dir = str(getattr(cache, "_path", "") or "")
        tag = hashlib.sha256(os.path.abspath(cache_dir).encode()).hexdigest()[:16]
        self.lock_dir = lock_dir or os.path.join(tempfile.gettempdir(), f"flask-spark-locks-{tag}")

    def _key(self, owner: str) -> str:
        return f"spark:{owner}"

    def _read(self, owner: str) -> tuple[dict[str, Any], float | None]:
        """The owner's records and the Unix time the entry expires (``None``: never)."""
        with _answering(OSError):
            value = self.cache.get(self._key(owner))
        if not isinstance(value, dict) or not isinstance(value.get("records"), dict):
            return {}, None
        expires = value.get("expires")
        return value["records"], expires if isinstance(expires, float) else None

    def _write(self, owner: str, records: dict[str, Any], expires: float | None) -> None:
        with _answering(OSError):
            if not records:
                self.cache.delete(self._key(owner))
                return
            timeout = 0 if expires is None else max(1, math.ceil(expires - time.time()))
            ok = self.cache.set(
                self._key(owner), {"records": records, "expires": expires}, timeout=timeout
            )
        if not ok:
            raise StoreUnavailable("Token store refused the write")

    def load(self, owner: str, scope: str, touch: int | None = None) -> TokenRecord | None:
        # Not touched: rewriting the entry outside the lock could undo a refresh. Records
        # live PERMANENT_SESSION_LIFETIME past their last sign-in or refresh.
        return _decode(self._read(owner)[0].get(scope))

    def save(self, owner: str, scope: str, record: TokenRecord, ttl: int | None) -> None:
        records, _ = self._read(owner)
        records[scope] = dict(record)
        self._write(owner, records, None if ttl is None else time.time() + ttl)

    def delete(self, owner: str, scope: str | None = None) -> None:
        records, expires = self._read(owner)
        if scope is None:
            records = {}
        elif records.pop(scope, None) is None:
            return
        self._write(owner, records, expires)

    def scopes(self, owner: str) -> list[str]:
        return list(self._read(owner)[0])

    def claim(self, name: str, ttl: int) -> bool:
        key = f"spark-used:{name}"
        with self.lock(key, "", ttl=ttl, wait=10.0), _answering(OSError):
            return bool(self.cache.add(key, 1, timeout=ttl))

    def move(self, old_owner: str, new_owner: str) -> None:
        records, expires = self._read(old_owner)
        if records:
            self._write(new_owner, records, expires)
            self._write(old_owner, {}, None)

    @contextlib.contextmanager
    def _cross_process_lock(self, name: str, ttl: float, wait: float) -> Iterator[None]:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: threads of one process only
            yield
            return
        stripe = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % self._STRIPES
        with _answering(OSError, "lock"):
            os.makedirs(self.lock_dir, exist_ok=True)
            handle = open(os.path.join(self.lock_dir, f"{stripe:02d}.lock"), "a+b")  # noqa: SIM115
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise StoreUnavailable(
                            "Timed out waiting for the token refresh lock"
                        ) from None
                    time.sleep(0.005)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        finally:
            handle.close()
