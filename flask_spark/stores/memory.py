"""A grant store in this process's memory: for unit tests and one-process scripts.

Nothing survives the process, and other processes see nothing of it.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from .base import (
    TOUCH_INTERVAL,
    Binding,
    ChangeWatch,
    Grant,
    GrantKey,
    binding_digest,
    marker_digest,
    new_secret,
    state_digest,
)


class MemoryGrantStore:
    """:class:`~flask_spark.stores.base.GrantStore` in a few dicts under one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version = 0  # bumped by every change to a grant or binding
        self._grants: dict[str, Grant] = {}
        self._bindings: dict[str, tuple[float, Binding]] = {}
        self._pending: dict[str, tuple[float, dict[str, Any]]] = {}
        self._markers: dict[str, float] = {}
        self._rates: dict[str, list[float]] = {}

    def __repr__(self) -> str:
        return f"<MemoryGrantStore {len(self._grants)} grants>"

    def changes(self) -> ChangeWatch:
        """Exact: every change happens in this process, under the store's lock."""
        return self

    def version(self) -> tuple[int, int]:
        with self._lock:
            return 0, self._version

    def _changed(self) -> None:
        """Called under the lock by each change to a grant or binding."""
        self._version += 1

    def get(self, key: GrantKey) -> Grant | None:
        with self._lock:
            return self._grants.get(key.id)

    def put(self, grant: Grant) -> Grant | None:
        with self._lock:
            old = self._grants.get(grant.key.id)
            if old is not None:
                grant = replace(grant, created_at=old.created_at, last_used_at=old.last_used_at)
            self._grants[grant.key.id] = replace(grant, lease_holder=None, lease_until=0.0)
            self._changed()
            return old

    def add(self, grant: Grant) -> bool:
        with self._lock:
            if grant.key.id in self._grants:
                return False
            self._grants[grant.key.id] = grant
            self._changed()
            return True

    def take_lease(
        self, key: GrantKey, stale_access_token: str, holder: str, until: float, now: float
    ) -> tuple[bool, Grant | None]:
        with self._lock:
            grant = self._grants.get(key.id)
            if grant is None or grant.access_token != stale_access_token:
                return False, grant
            if grant.lease_holder not in (None, holder) and grant.lease_until > now:
                return False, grant
            grant = replace(grant, lease_holder=holder, lease_until=until)
            self._grants[key.id] = grant
            self._changed()
            return True, grant

    def finish_refresh(self, key: GrantKey, stale_access_token: str, grant: Grant) -> bool:
        with self._lock:
            current = self._grants.get(key.id)
            if current is None or current.access_token not in (
                stale_access_token,
                grant.access_token,
            ):
                return False
            holder, until = current.lease_holder, current.lease_until
            if holder == grant.lease_holder:
                holder, until = None, 0.0
            self._grants[key.id] = replace(
                current,
                access_token=grant.access_token,
                refresh_token=grant.refresh_token,
                expires_at=grant.expires_at,
                obtained_at=grant.obtained_at,
                updated_at=grant.updated_at,
                lease_holder=holder,
                lease_until=until,
            )
            self._changed()
            return True

    def release_lease(self, key: GrantKey, holder: str) -> None:
        with self._lock:
            grant = self._grants.get(key.id)
            if grant is not None and grant.lease_holder == holder:
                self._grants[key.id] = replace(grant, lease_holder=None, lease_until=0.0)
                self._changed()

    def end(self, key: GrantKey, access_token: str) -> bool:
        with self._lock:
            grant = self._grants.get(key.id)
            if grant is None or grant.access_token != access_token:
                return False
            self._grants[key.id] = replace(
                grant, access_token="", refresh_token="", lease_holder=None, lease_until=0.0
            )
            self._changed()
            return True

    def delete(self, key: GrantKey) -> Grant | None:
        with self._lock:
            grant = self._grants.pop(key.id, None)
            for name in [n for n, (_, b) in self._bindings.items() if b.grant_id == key.id]:
                del self._bindings[name]
            self._changed()
            return grant

    def grants(self, client_id: str) -> Iterator[Grant]:
        with self._lock:
            found = [g for g in self._grants.values() if g.key.client_id == client_id]
        return iter(found)

    def bind(self, key: GrantKey, now: float, ttl: float) -> str | None:
        binding_id = new_secret()
        with self._lock:
            if key.id not in self._grants:
                return None
            self._bindings[binding_digest(binding_id)] = (
                now + ttl,
                Binding(key.id, key.account_id, key.scope, now, now),
            )
            self._changed()
        return binding_id

    def resolve(self, binding_id: str, now: float, ttl: float) -> tuple[Binding, Grant] | None:
        name = binding_digest(binding_id)
        with self._lock:
            until, binding = self._bindings.get(name, (0.0, None))
            grant = None if binding is None else self._grants.get(binding.grant_id)
            if binding is None or grant is None or until <= now:
                return None
            if now - binding.last_used_at >= TOUCH_INTERVAL:
                binding = replace(binding, last_used_at=now)
                self._bindings[name] = (now + ttl, binding)
                grant = replace(grant, last_used_at=now)
                self._grants[binding.grant_id] = grant
                self._changed()
            return binding, grant

    def unbind(self, binding_id: str) -> None:
        with self._lock:
            self._bindings.pop(binding_digest(binding_id), None)
            self._changed()

    def put_pending(self, state: str, record: dict[str, Any], expires_at: float) -> None:
        with self._lock:
            self._pending[state_digest(state)] = (expires_at, dict(record))

    def take_pending(self, state: str, now: float) -> dict[str, Any] | None:
        with self._lock:
            item = self._pending.pop(state_digest(state), None)
            for name in [n for n, (at, _) in self._pending.items() if at <= now]:
                del self._pending[name]
        if item is None or item[0] <= now:
            return None
        return item[1]

    def mark(self, name: str, expires_at: float) -> None:
        with self._lock:
            self._markers[marker_digest(name)] = expires_at

    def marked(self, name: str, now: float) -> bool:
        with self._lock:
            at = self._markers.get(marker_digest(name))
            if at is not None and at <= now:
                del self._markers[marker_digest(name)]
                return False
            return at is not None

    def spend(
        self, bucket: str, limit: int, window: float, now: float, count: int = 1
    ) -> tuple[int, float]:
        with self._lock:
            times = self._rates.setdefault(bucket, [])
            del times[: bisect.bisect_right(times, now - window)]
            counted = min(count, limit - len(times))
            if counted > 0:
                for _ in range(counted):
                    bisect.insort(times, now)
                return counted, 0.0
            return 0, max(times[len(times) - limit] + window - now, 1e-3)

    def close(self) -> None:
        pass
