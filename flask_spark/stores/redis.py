"""Grants in Redis: standalone, Sentinel or Cluster, with no command that spans hash slots.

Keys (``spark:`` prefix by default; ``<g>`` is the grant's id, in braces so that a grant,
its bindings and their index share one Cluster hash slot)::

    spark:g:{<g>}            hash: the grant (tokens, expiry, account JSON, lease)
    spark:b:{<g>}:<sha256>   hash: one binding (created, last used, expiry), expiring unused
    spark:bs:{<g>}           set: the grant's bindings, so ending a grant ends them all
    spark:p:<sha256>         string: a pending sign-in (JSON, with its keep time), expiring
    spark:m:<sha256>         string: a marker (its expiry), expiring
    spark:r:<bucket>         sorted set: the calls of one app key in its rate window
                             (scored by time), expiring one window after the latest

Expiry is decided by the ``now`` the caller passes, as in every store, against the time
kept in the value; Redis's own key expiry only clears old keys away.

Every compare-and-set is one Lua script on one slot. Reads are scripts too, flagged as
writing (``#!lua``), so a node demoted to replica by a failover refuses them instead of
answering from a dataset it is about to replace. Where the store has replicas
(``replicas=1``, the default behind Sentinel), each write of tokens or of a lease is
followed by ``WAIT`` on the same connection, so a failover keeps what was acknowledged; a
write no replica acknowledged in time is kept on the primary and logged.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..errors import StoreUnavailable
from .base import (
    TOUCH_INTERVAL,
    Binding,
    Grant,
    GrantKey,
    binding_digest,
    marker_digest,
    new_secret,
    state_digest,
)
from .watch import RedisWatch

if TYPE_CHECKING:
    from redis import Redis
    from redis.cluster import RedisCluster

log = logging.getLogger("flask_spark")

#: Milliseconds a write waits for its replicas to acknowledge it.
WAIT_TIMEOUT_MS = 500

_TAKE_LEASE = """#!lua
local at = redis.call('HGET', KEYS[1], 'access_token')
if not at then return {0} end
local won = 0
if at == ARGV[1] then
  local h = redis.call('HGET', KEYS[1], 'lease_holder')
  local u = tonumber(redis.call('HGET', KEYS[1], 'lease_until') or '0') or 0
  if (not h) or h == '' or h == ARGV[2] or u <= tonumber(ARGV[4]) then
    redis.call('HSET', KEYS[1], 'lease_holder', ARGV[2], 'lease_until', ARGV[3])
    won = 1
  end
end
return {won, redis.call('HGETALL', KEYS[1])}
"""

_FINISH = """#!lua
local at = redis.call('HGET', KEYS[1], 'access_token')
if at ~= ARGV[1] and at ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], 'access_token', ARGV[3], 'refresh_token', ARGV[4],
  'expires_at', ARGV[5], 'obtained_at', ARGV[6], 'updated_at', ARGV[7])
if redis.call('HGET', KEYS[1], 'lease_holder') == ARGV[2] then
  redis.call('HSET', KEYS[1], 'lease_holder', '', 'lease_until', '0')
end
return 1
"""

_RELEASE = """#!lua
if redis.call('HGET', KEYS[1], 'lease_holder') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'lease_holder', '', 'lease_until', '0')
end
return 1
"""

_END = """#!lua
if redis.call('HGET', KEYS[1], 'access_token') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'access_token', '', 'refresh_token', '',
  'lease_holder', '', 'lease_until', '0')
return 1
"""

_PUT = """#!lua
local old = redis.call('HGETALL', KEYS[1])
redis.call('HSETNX', KEYS[1], 'created_at', ARGV[1])
redis.call('HSETNX', KEYS[1], 'last_used_at', ARGV[2])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
return old
"""

_ADD = """#!lua
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

_DELETE = """#!lua
local old = redis.call('HGETALL', KEYS[1])
for _, member in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  redis.call('DEL', ARGV[1] .. member)
end
redis.call('DEL', KEYS[1], KEYS[2])
return old
"""

_BIND = """#!lua
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for _, member in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  if redis.call('EXISTS', ARGV[5] .. member) == 0 then
    redis.call('SREM', KEYS[3], member)
  end
end
redis.call('HSET', KEYS[2], 'created_at', ARGV[2], 'last_used_at', ARGV[2], 'expires_at', ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[1])
return 1
"""

_RESOLVE = """#!lua
local b = redis.call('HMGET', KEYS[1], 'created_at', 'last_used_at', 'expires_at')
if not b[1] then return false end
local expires = tonumber(b[3])
if expires and expires <= tonumber(ARGV[1]) then return false end
local g = redis.call('HGETALL', KEYS[2])
if #g == 0 then return false end
local used = b[2]
if tonumber(ARGV[1]) - (tonumber(used) or 0) >= tonumber(ARGV[2]) then
  used = ARGV[1]
  redis.call('HSET', KEYS[1], 'last_used_at', used, 'expires_at', ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('HSET', KEYS[2], 'last_used_at', used)
  for i = 1, #g, 2 do
    if g[i] == 'last_used_at' then g[i + 1] = used end
  end
end
return cjson.encode({b[1], used, g})
"""

_GET = """#!lua
return cjson.encode(redis.call('HGETALL', KEYS[1]))
"""

_EXISTS = """#!lua
return redis.call('EXISTS', KEYS[1])
"""

_UNBIND = """#!lua
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return 1
"""

# The calls counted in the window, oldest first: drop those that left it, count this one
# if there is room, else answer the time of the one whose leaving makes room.
_SPEND = """#!lua
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local counted = redis.call('ZCARD', KEYS[1])
local limit = tonumber(ARGV[2])
local room = math.min(limit - counted, tonumber(ARGV[6]))
if room > 0 then
  for i = 1, room do
    redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4] .. ':' .. i)
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return room
end
return redis.call('ZRANGE', KEYS[1], counted - limit, counted - limit, 'WITHSCORES')[2]
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class RedisGrantStore:
    """:class:`~flask_spark.stores.base.GrantStore` in Redis.

    :param client: a ``redis.Redis`` (standalone, or a Sentinel's ``master_for``) or a
        ``redis.cluster.RedisCluster``.
    :param prefix: the keys' prefix (no braces).
    :param replicas: how many replicas must acknowledge a write of tokens or of a lease
        (``WAIT``); 0 to not wait. Not used with Cluster.
    :param owns_client: close the client with :meth:`close`.
    """

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        prefix: str = "spark:",
        replicas: int = 0,
        owns_client: bool = False,
    ) -> None:
        from redis.cluster import RedisCluster as Cluster
        from redis.exceptions import RedisClusterException, RedisError
        from redis.sentinel import SentinelConnectionPool

        if "{" in prefix or "}" in prefix:
            raise ValueError("the key prefix must not contain braces")
        self.client = client
        self.prefix = prefix
        self.cluster = type(client).__name__ == "RedisCluster"
        self.replicas = 0 if self.cluster else replicas
        self._owns = owns_client
        self._errors: tuple[type[BaseException], ...] = (RedisError, RedisClusterException)
        register = client.register_script
        self._take_lease = register(_TAKE_LEASE)
        self._finish = register(_FINISH)
        self._release = register(_RELEASE)
        self._end = register(_END)
        self._put = register(_PUT)
        self._add = register(_ADD)
        self._delete = register(_DELETE)
        self._bind = register(_BIND)
        self._resolve = register(_RESOLVE)
        self._unbind = register(_UNBIND)
        self._get = register(_GET)
        self._exists = register(_EXISTS)
        self._spend = register(_SPEND)
        self._watch: RedisWatch | None = None
        if not isinstance(client, Cluster) and not isinstance(
            client.connection_pool, SentinelConnectionPool
        ):
            self._watch = RedisWatch(client, [f"{prefix}g:", f"{prefix}b:"])

    def changes(self) -> RedisWatch | None:
        """Client tracking of the grant and binding keys on a standalone Redis; ``None``
        behind Sentinel or on a Cluster, whose readers go to Redis on each request."""
        return self._watch

    def __repr__(self) -> str:
        kind = "cluster" if self.cluster else "standalone"
        return f"<RedisGrantStore {kind} prefix={self.prefix!r} replicas={self.replicas}>"

    # -- plumbing ------------------------------------------------------------------------

    @contextmanager
    def _answering(self) -> Iterator[None]:
        try:
            yield
        except self._errors as exc:
            raise StoreUnavailable(f"Grant store unavailable ({type(exc).__name__})") from None

    def _grant_key(self, grant_id: str) -> str:
        return f"{self.prefix}g:{{{grant_id}}}"

    def _binding_set(self, grant_id: str) -> str:
        return f"{self.prefix}bs:{{{grant_id}}}"

    def _binding_prefix(self, grant_id: str) -> str:
        return f"{self.prefix}b:{{{grant_id}}}:"

    def _run(
        self,
        script: Any,
        keys: list[str],
        args: list[Any],
        *,
        durable: bool,
        must_replicate: bool = False,
    ) -> Any:
        """Run a script; with ``durable`` and replicas, wait for them on the same
        connection (``WAIT`` counts that connection's writes). Too few acknowledgements
        raise :class:`StoreUnavailable` with ``must_replicate``, else are logged."""
        with self._answering():
            if not durable or not self.replicas:
                return script(keys=keys, args=args)
            pipe = self.client.pipeline(transaction=False)
            script(keys=keys, args=args, client=pipe)
            pipe.execute_command("WAIT", self.replicas, WAIT_TIMEOUT_MS)
            result, acked = pipe.execute()
        if int(acked) < self.replicas and must_replicate:
            raise StoreUnavailable("Grant store replicas did not acknowledge the write")
        if int(acked) < self.replicas:
            # Written to the primary all the same: go on, degraded, rather than fail every
            # sign-in and refresh while a replica is down.
            log.warning(
                "Grant store: %d of %d replicas acknowledged a write", int(acked), self.replicas
            )
        return result

    @staticmethod
    def _fields(flat: list[Any]) -> dict[str, str]:
        items = flat if all(type(v) is str for v in flat) else [_text(v) for v in flat]
        return dict(zip(items[::2], items[1::2], strict=True))

    @staticmethod
    def _grant(fields: dict[str, str]) -> Grant | None:
        if "access_token" not in fields or "account_id" not in fields:
            return None
        try:
            account = json.loads(fields.get("account") or "{}")
        except ValueError:
            account = {}
        return Grant(
            key=GrantKey(fields.get("client_id", ""), fields["account_id"], fields["scope"]),
            access_token=fields["access_token"],
            refresh_token=fields.get("refresh_token", ""),
            expires_at=float(fields.get("expires_at") or 0),
            obtained_at=float(fields.get("obtained_at") or 0),
            redirect_uri=fields.get("redirect_uri") or None,
            account=account if isinstance(account, dict) else {},
            lease_holder=fields.get("lease_holder") or None,
            lease_until=float(fields.get("lease_until") or 0),
            created_at=float(fields.get("created_at") or 0),
            updated_at=float(fields.get("updated_at") or 0),
            last_used_at=float(fields.get("last_used_at") or 0),
        )

    # -- grants --------------------------------------------------------------------------

    def get(self, key: GrantKey) -> Grant | None:
        flat = self._run(self._get, [self._grant_key(key.id)], [], durable=False)
        found = json.loads(flat)  # Lua's cjson writes an empty table as {}
        return self._grant(self._fields(found if isinstance(found, list) else []))

    @staticmethod
    def _put_fields(grant: Grant) -> dict[str, str]:
        k = grant.key
        return {
            "client_id": k.client_id,
            "account_id": k.account_id,
            "scope": k.scope,
            "access_token": grant.access_token,
            "refresh_token": grant.refresh_token,
            "expires_at": repr(grant.expires_at),
            "obtained_at": repr(grant.obtained_at),
            "redirect_uri": grant.redirect_uri or "",
            "account": json.dumps(grant.account),
            "lease_holder": "",
            "lease_until": "0",
            "updated_at": repr(grant.updated_at),
        }

    def add(self, grant: Grant) -> bool:
        fields = self._put_fields(grant)
        fields["created_at"] = repr(grant.created_at)
        fields["last_used_at"] = repr(grant.last_used_at)
        args = [item for pair in fields.items() for item in pair]
        return bool(int(self._run(self._add, [self._grant_key(grant.key.id)], args, durable=True)))

    def put(self, grant: Grant) -> Grant | None:
        fields = self._put_fields(grant)
        args = [repr(grant.created_at), repr(grant.last_used_at)]
        args += [item for pair in fields.items() for item in pair]
        old = self._run(self._put, [self._grant_key(grant.key.id)], args, durable=True)
        return self._grant(self._fields(old))

    def take_lease(
        self, key: GrantKey, stale_access_token: str, holder: str, until: float, now: float
    ) -> tuple[bool, Grant | None]:
        result = self._run(
            self._take_lease,
            [self._grant_key(key.id)],
            [stale_access_token, holder, repr(until), repr(now)],
            durable=True,
        )
        won = bool(int(result[0]))
        grant = self._grant(self._fields(result[1])) if len(result) > 1 else None
        return won, grant

    def finish_refresh(self, key: GrantKey, stale_access_token: str, grant: Grant) -> bool:
        args = [
            stale_access_token,
            grant.lease_holder or "",
            grant.access_token,
            grant.refresh_token,
            repr(grant.expires_at),
            repr(grant.obtained_at),
            repr(grant.updated_at),
        ]
        stored = self._run(
            self._finish, [self._grant_key(key.id)], args, durable=True, must_replicate=True
        )
        return bool(int(stored))

    def release_lease(self, key: GrantKey, holder: str) -> None:
        self._run(self._release, [self._grant_key(key.id)], [holder], durable=False)

    def end(self, key: GrantKey, access_token: str) -> bool:
        return bool(
            int(self._run(self._end, [self._grant_key(key.id)], [access_token], durable=True))
        )

    def delete(self, key: GrantKey) -> Grant | None:
        old = self._run(
            self._delete,
            [self._grant_key(key.id), self._binding_set(key.id)],
            [self._binding_prefix(key.id)],
            durable=True,
        )
        return self._grant(self._fields(old))

    def grants(self, client_id: str) -> Iterator[Grant]:
        found: list[Grant] = []
        with self._answering():
            for name in self.client.scan_iter(match=f"{self.prefix}g:*", count=500):
                flat = self.client.hgetall(name)
                grant = self._grant({_text(k): _text(v) for k, v in flat.items()})
                if grant is not None and grant.key.client_id == client_id:
                    found.append(grant)
        return iter(found)

    # -- bindings ------------------------------------------------------------------------

    def bind(self, key: GrantKey, now: float, ttl: float) -> str | None:
        binding_id = f"{key.id}.{new_secret()}"
        name = binding_digest(binding_id)
        made = self._run(
            self._bind,
            [
                self._grant_key(key.id),
                self._binding_prefix(key.id) + name,
                self._binding_set(key.id),
            ],
            [name, repr(now), _ms(ttl), repr(now + ttl), self._binding_prefix(key.id)],
            durable=False,
        )
        return binding_id if int(made) else None

    def resolve(self, binding_id: str, now: float, ttl: float) -> tuple[Binding, Grant] | None:
        grant_id, dot, _ = binding_id.partition(".")
        if not dot or len(grant_id) != 32 or not grant_id.isalnum():
            return None
        result = self._run(
            self._resolve,
            [
                self._binding_prefix(grant_id) + binding_digest(binding_id),
                self._grant_key(grant_id),
            ],
            [repr(now), repr(TOUCH_INTERVAL), _ms(ttl), repr(now + ttl)],
            durable=False,
        )
        if not result:
            return None
        # One JSON string: far cheaper for redis-py to read than a nested reply.
        result = json.loads(result)
        grant = self._grant(self._fields(result[2]))
        if grant is None:
            return None
        binding = Binding(
            grant_id,
            grant.key.account_id,
            grant.key.scope,
            float(_text(result[0])),
            float(_text(result[1])),
        )
        return binding, grant

    def unbind(self, binding_id: str) -> None:
        grant_id, dot, _ = binding_id.partition(".")
        if not dot:
            return
        name = binding_digest(binding_id)
        self._run(
            self._unbind,
            [self._binding_prefix(grant_id) + name, self._binding_set(grant_id)],
            [name],
            durable=False,
        )

    # -- pending sign-ins and markers ----------------------------------------------------

    # Pending sign-ins and markers keep their expiry in the value: the caller's ``now``
    # decides, as in every other store; the key's own expiry (from this host's clock)
    # only clears them away.

    def put_pending(self, state: str, record: dict[str, Any], expires_at: float) -> None:
        with self._answering():
            self.client.set(
                f"{self.prefix}p:{state_digest(state)}",
                json.dumps({"keep_until": expires_at, "record": record}),
                px=_ms(expires_at - time.time()),
            )

    def take_pending(self, state: str, now: float) -> dict[str, Any] | None:
        with self._answering():
            value = self.client.getdel(f"{self.prefix}p:{state_digest(state)}")
        if value is None:
            return None
        try:
            kept = json.loads(value)
            keep_until = float(kept["keep_until"])
            record = kept["record"]
        except (ValueError, TypeError, KeyError):
            return None
        if keep_until <= now:
            return None
        return record if isinstance(record, dict) else None

    def mark(self, name: str, expires_at: float) -> None:
        with self._answering():
            self.client.set(
                f"{self.prefix}m:{marker_digest(name)}",
                repr(expires_at),
                px=_ms(expires_at - time.time()),
            )

    def marked(self, name: str, now: float) -> bool:
        with self._answering():
            value = self.client.get(f"{self.prefix}m:{marker_digest(name)}")
        if value is None:
            return False
        try:
            return float(_text(value)) > now
        except ValueError:
            return True

    # -- rate windows ------------------------------------------------------------------

    def spend(
        self, bucket: str, limit: int, window: float, now: float, count: int = 1
    ) -> tuple[int, float]:
        # Not waited for by replicas: a failover may forget a few counted calls, which the
        # platform's own 429 then covers.
        answer = self._run(
            self._spend,
            [f"{self.prefix}r:{bucket}"],
            [
                repr(now - window),
                limit,
                repr(now),
                f"{now!r}:{new_secret()[:8]}",
                _ms(window),
                count,
            ],
            durable=False,
        )
        if isinstance(answer, int):  # how many were counted
            return answer, 0.0
        return 0, max(float(_text(answer)) + window - now, 1e-3)

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
        if self._owns:
            self.client.close()
