"""Grant stores: where Flask-Spark keeps grants, bindings and pending sign-ins.

``SPARK_GRANT_STORE`` names one by URL (see :func:`store_from_url`); ``Spark(app,
grant_store=...)`` takes a store object. Every store implements
:class:`~flask_spark.stores.base.GrantStore`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import ConfigurationError
from .base import Binding, Grant, GrantKey, GrantStore, Tokens
from .memory import MemoryGrantStore

_SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mariadb")
_REDIS_SCHEMES = ("redis", "rediss", "redis+sentinel", "redis+cluster")


def _hosts(netloc: str, key: str) -> list[tuple[str, int]]:
    hosts = []
    for item in netloc.rpartition("@")[2].split(","):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigurationError(key, f"expected host:port pairs, got {item!r}")
        hosts.append((host.strip("[]"), int(port)))
    return hosts


def _credentials(netloc: str) -> dict[str, Any]:
    userinfo, at, _ = netloc.rpartition("@")
    if not at:
        return {}
    user, colon, password = userinfo.partition(":")
    found: dict[str, Any] = {}
    if user:
        found["username"] = unquote(user)
    if colon:
        found["password"] = unquote(password)
    return found


def _redis_store(url: str, key: str) -> GrantStore:
    try:
        import redis
        from redis.cluster import ClusterNode, RedisCluster
        from redis.sentinel import Sentinel
    except ImportError:
        raise ConfigurationError(
            key, "a Redis grant store needs the redis package: pip install 'Flask-Spark[redis]'"
        ) from None
    # One immediate retry on a dropped connection (a failover: the pool reconnects to the
    # new primary), rather than redis-py's default backoff, which holds a request for
    # seconds when a node is down. Every script of the store may safely run twice.
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from .redis import RedisGrantStore

    options: dict[str, Any] = {
        "socket_timeout": 2.0,
        "socket_connect_timeout": 1.0,
        "retry": Retry(NoBackoff(), 1),
    }
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    prefix = query.pop("prefix", "spark:")
    replicas_text = query.pop("replicas", None)
    scheme = parts.scheme
    client: Any
    if scheme == "redis+sentinel":
        path = [p for p in parts.path.split("/") if p]
        if not path:
            raise ConfigurationError(
                key, "name the Sentinel service: redis+sentinel://h:p/<service>"
            )
        service = path[0]
        db = int(path[1]) if len(path) > 1 and path[1].isdigit() else 0
        sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
            _hosts(parts.netloc, key),
            socket_timeout=2.0,
            sentinel_kwargs={"socket_timeout": 1.0},
        )
        client = sentinel.master_for(  # type: ignore[no-untyped-call, unused-ignore]
            service, db=db, **options, **_credentials(parts.netloc)
        )
        replicas = 1
    elif scheme == "redis+cluster":
        nodes = [
            ClusterNode(h, p)  # type: ignore[no-untyped-call, unused-ignore]
            for h, p in _hosts(parts.netloc, key)
        ]
        client = RedisCluster(
            startup_nodes=nodes,
            socket_timeout=2.0,
            socket_connect_timeout=1.0,
            **_credentials(parts.netloc),
        )
        replicas = 0
    else:
        plain = parts._replace(query="").geturl()
        client = redis.Redis.from_url(plain, **options)
        replicas = 0
    if replicas_text is not None:
        if not replicas_text.isdigit():
            raise ConfigurationError(key, "replicas= must be a whole number")
        replicas = int(replicas_text)
    try:
        return RedisGrantStore(client, prefix=prefix, replicas=replicas, owns_client=True)
    except ValueError as exc:
        raise ConfigurationError(key, str(exc)) from None


def store_from_url(url: str, key: str = "SPARK_GRANT_STORE") -> GrantStore:
    """The grant store a URL names.

    - ``sqlite:///<path>`` (a relative path is below the current folder), ``postgresql+psycopg://…``,
      ``mysql+pymysql://…``: :class:`~flask_spark.stores.sql.SQLGrantStore`;
    - ``redis://…``, ``rediss://…``, ``redis+sentinel://<host:port>[,…]/<service>[/<db>]``,
      ``redis+cluster://<host:port>[,…]``: :class:`~flask_spark.stores.redis.RedisGrantStore`
      (``?prefix=`` sets the key prefix, ``?replicas=`` how many replicas acknowledge a
      token write; Sentinel waits for 1 by default);
    - ``memory://``: :class:`~flask_spark.stores.memory.MemoryGrantStore`.

    :raises ConfigurationError: the URL names no known store or is malformed.
    """
    scheme = urlsplit(url).scheme
    base = scheme.partition("+")[0]
    if scheme in _REDIS_SCHEMES:
        return _redis_store(url, key)
    if base in _SQL_SCHEMES:
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        from .sql import SQLGrantStore

        try:
            return SQLGrantStore(url)
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise ConfigurationError(key, f"cannot open this database URL ({exc})") from None
    if scheme == "memory":
        return MemoryGrantStore()
    raise ConfigurationError(
        key,
        "must be a sqlite://, postgresql://, mysql://, redis://, rediss://, "
        "redis+sentinel://, redis+cluster:// or memory:// URL",
    )


__all__ = [
    "Binding",
    "Grant",
    "GrantKey",
    "GrantStore",
    "MemoryGrantStore",
    "Tokens",
    "store_from_url",
]
